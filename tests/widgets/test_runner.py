"""The one worker wiring every dock uses: two-press cancel, busy state of the view, plain-function
runs, failures as one sentence, disposal. The docks' own smoke tests are in test_run_users.py."""

from __future__ import annotations

import time

import pytest
from _gui import error_messages

from napari_unsupseg.core.base.engine import Progress, Result
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.widgets._failures import show_failure
from napari_unsupseg.widgets._runner import EngineRunner, RunTexts, call_in_worker

pytestmark = pytest.mark.gui


def _slow(control):
    for step in range(1, 500):
        time.sleep(0.01)
        yield Progress(step, 500)
        if control.stop_requested:
            return Result(labels=None, metadata={"steps": step})
    return Result(labels=None, metadata={"steps": 500})


def test_first_cancel_finishes_with_a_result(qtbot):
    runner = EngineRunner()
    assert runner.cancel() == ""  # nothing running: nothing done
    runner.start(_slow, "slow")
    with qtbot.waitSignal(runner.progressed, timeout=5_000):
        pass
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        assert runner.cancel() == "stopping"
    outcome, result = ended.args
    assert outcome == "stopped" and result.metadata["steps"] < 500
    assert not runner.running


def _stubborn(control):
    """An engine slow to finish: it goes on after a stop is asked for."""
    for step in range(1, 1000):
        time.sleep(0.01)
        yield Progress(step, 1000)
    return Result(labels=None, metadata={})


def test_second_cancel_abandons(qtbot):
    runner = EngineRunner()
    runner.start(_stubborn, "stubborn")
    with qtbot.waitSignal(runner.progressed, timeout=5_000):
        pass
    assert runner.cancel() == "stopping" and runner.running
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        assert runner.cancel() == "abandoning"
    assert ended.args == ["abandoned", None]


def test_a_plain_function_runs_through_the_runner(qtbot):
    runner = EngineRunner(preview_interval=None)
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        runner.start(call_in_worker(lambda a, b: a + b, 2, 3), "add")
    assert ended.args == ["done", 5]


def test_a_failure_is_one_sentence_and_a_notification(qtbot, make_napari_viewer):
    make_napari_viewer()
    shown = []
    show_failure(InputError("The image is empty."), shown.append)
    show_failure(RuntimeError("boom"), shown.append, "Training")
    assert shown == ["Failed: The image is empty.", "Failed: Training failed: boom"]
    assert {"The image is empty.", "Training failed: boom"} <= set(error_messages())


class _View:
    """The run controls as the runner sees them: what it was told, in order."""

    def __init__(self):
        self.busy: list[tuple[bool, bool]] = []
        self.statuses: list[str] = []

    def set_busy(self, busy, succeeded=False):
        self.busy.append((busy, succeeded))

    def set_status(self, text):
        self.statuses.append(text)


def _previewing(control):
    for step in range(1, 1000):
        time.sleep(0.01)
        yield Progress(step, 1000, preview=step)
        if control.stop_requested:
            return Result(labels=None, metadata={"steps": step})
    return Result(labels=None, metadata={"steps": 1000})


def test_the_view_is_busy_during_a_run_and_a_stopped_run_hands_over_its_result(qtbot):
    view, results, progress, previews = _View(), [], [], []

    def keep(outcome, value):
        results.append((outcome, value, list(view.busy)))

    runner = EngineRunner(preview_interval=0.05, view=view)
    runner.start(_previewing, "previews", status="Working...", on_progress=progress.append,
                 on_preview=previews.append, on_result=keep)
    assert view.busy == [(True, False)] and view.statuses == ["Working..."]
    qtbot.waitUntil(lambda: len(previews) >= 1, timeout=5_000)
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        assert runner.cancel() == "stopping"
        shown = len(previews)
    assert ended.args[0] == "stopped"
    assert view.statuses[-1] == RunTexts().stopping
    # The result is handed over while the view is still busy, then the view is idle.
    [(outcome, value, busy_then)] = results
    assert outcome == "stopped" and value is ended.args[1] and busy_then == [(True, False)]
    assert view.busy == [(True, False), (False, True)]
    assert len(progress) >= shown and len(previews) == shown  # no preview once stopping


def test_slow_previews_are_spaced_to_a_share_of_the_run(qtbot):
    """A preview that takes long to show is shown less often, and the engine is told so
    (it stops computing previews nobody will see); a quick one keeps the interval."""
    from napari_unsupseg.widgets._runner import PREVIEW_SHARE

    controls, previews = [], []

    def engine(control):
        controls.append(control)
        return (yield from _previewing(control))

    def slow_show(event):
        previews.append(event.step)
        time.sleep(0.03)  # a large layer written into a busy window

    runner = EngineRunner(preview_interval=0.0)
    started = time.monotonic()
    runner.start(engine, "previews", on_preview=slow_show)
    qtbot.wait(2_000)
    with qtbot.waitSignal(runner.ended, timeout=10_000):
        runner.cancel()
    elapsed = time.monotonic() - started
    interval = controls[0].preview_interval
    assert interval >= 0.03 / PREVIEW_SHARE
    # At most one every 0.3 s after the first three: the first adds the layer and sets no
    # pace, the second's cost is measured once its window is drawn, by when a third may be
    # on its way. Without spacing, one every 40 ms.
    assert 2 <= len(previews) <= elapsed / (0.03 / PREVIEW_SHARE) + 3

    quick = []
    runner.start(engine, "previews", preview_interval=0.05, on_preview=quick.append)
    qtbot.wait(500)
    with qtbot.waitSignal(runner.ended, timeout=10_000):
        runner.cancel()
    assert controls[1].preview_interval < 0.1 and len(quick) >= 3


def test_two_presses_abandon_and_say_so(qtbot):
    view, results = _View(), []
    texts = RunTexts(stopping="keeping the best", abandoned="nothing kept")
    runner = EngineRunner(view=view, texts=texts)
    runner.start(_stubborn, "stubborn", on_result=lambda *args: results.append(args))
    with qtbot.waitSignal(runner.progressed, timeout=5_000):
        pass
    runner.cancel()
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        assert runner.cancel() == "abandoning"
    assert ended.args == ["abandoned", None] and not results
    assert view.statuses == ["keeping the best", texts.abandoning, "nothing kept"]
    assert view.busy == [(True, False), (False, False)]


def _failing(control):
    yield Progress(1, 2)
    raise RuntimeError("out of memory")


def test_a_failure_in_the_worker_is_a_notification_and_the_view_ends_idle(
    qtbot, make_napari_viewer
):
    make_napari_viewer()
    view, results = _View(), []
    runner = EngineRunner(view=view, what="Training")
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        runner.start(_failing, "failing", on_result=lambda *args: results.append(args))
    outcome, error = ended.args
    assert outcome == "failed" and isinstance(error, RuntimeError) and not results
    assert view.statuses[-1] == "Failed: Training failed: out of memory"
    assert error_messages() == ["Training failed: out of memory"]
    assert view.busy[-1] == (False, False) and not runner.running


def test_a_result_that_cannot_be_written_is_a_failure_in_words(qtbot, make_napari_viewer):
    make_napari_viewer()
    view = _View()
    runner = EngineRunner(view=view)

    def write(outcome, value):
        raise ValueError("the layer is gone")

    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        runner.start(call_in_worker(lambda: 1), "one", what="Applying the model",
                     on_result=write)
    assert ended.args[0] == "failed" and isinstance(ended.args[1], ValueError)
    assert error_messages() == ["Applying the model failed: the layer is gone"]
    assert view.busy[-1] == (False, False)


def test_a_preview_that_cannot_be_shown_abandons_the_run_in_words(qtbot, make_napari_viewer):
    make_napari_viewer()
    runner = EngineRunner(preview_interval=0.0, view=_View())

    def show(event):
        raise ValueError("bad preview")

    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        runner.start(_previewing, "previews", on_preview=show)
    assert ended.args == ["abandoned", None]
    assert error_messages() == ["Segmentation failed: bad preview"]


def test_a_refused_run_is_shown_like_a_failure(make_napari_viewer):
    make_napari_viewer()
    view = _View()
    EngineRunner(view=view).fail(InputError("Choose an image layer."))
    assert view.statuses == ["Failed: Choose an image layer."] and view.busy == []
    assert error_messages() == ["Choose an image layer."]


def test_a_disposed_runner_abandons_its_run_and_starts_no_other(qtbot):
    view = _View()
    runner = EngineRunner(view=view)
    runner.start(_stubborn, "stubborn")
    with qtbot.waitSignal(runner.ended, timeout=10_000) as ended:
        runner.dispose()
    assert ended.args == ["abandoned", None]
    runner.start(_stubborn, "again")
    assert not runner.running and view.busy == [(True, False), (False, False)]


def _quick(control):
    yield Progress(1, 1, message="plane 1/1")
    return Result(labels=None, metadata={})


def test_a_late_event_of_an_ended_run_reaches_no_one(qtbot):
    """Events a busy window delivers after their run ended neither write over the final
    message nor count as the next run's; the old worker cannot end the new run."""
    view, events, workers = _View(), [], []
    runner = EngineRunner(view=view)
    runner.progressed.connect(events.append)
    runner.progressed.connect(lambda _event: workers.append(runner.worker))
    with qtbot.waitSignal(runner.ended, timeout=10_000):
        runner.start(_quick, "quick", on_result=lambda *_: view.set_status("Done: 1 label"))
    assert view.statuses[-1] == "Done: 1 label" and len(events) == 1
    old = workers[0]
    late = Progress(1, 1, message="late")
    old.yielded.emit(late)  # the run is over: its message stays
    qtbot.wait(50)
    assert view.statuses[-1] == "Done: 1 label" and late not in events

    later = []
    runner.start(_slow, "slow", on_progress=later.append)
    new = runner.worker
    with qtbot.waitSignal(runner.progressed, timeout=5_000):
        pass
    old.yielded.emit(late)
    old.finished.emit()
    qtbot.wait(50)
    assert late not in events and late not in later
    assert runner.running and runner.worker is new
    with qtbot.waitSignal(runner.ended, timeout=10_000):
        runner.abandon()
