"""The one worker wiring every dock uses: two-press cancel, plain-function runs, failures as
one sentence."""

from __future__ import annotations

import time

import pytest
from _gui import error_messages

from napari_unsupseg.core.base.engine import Progress, Result
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.widgets._runner import EngineRunner, call_in_worker, show_failure

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
