"""The runner: every run of every dock in a worker thread, with its controls, cancel and failures.

:class:`EngineRunner` is the one worker wiring of the plugin: the engine widgets, the
training widget, "apply to a folder" and reading a checkpoint all run through it. It knows
no layer, form or image. A widget gives :meth:`~EngineRunner.start` a function that starts
a generator from a :class:`~napari_unsupseg.core.base.engine.RunControl`; the runner calls
it in the worker thread and, on the main thread, owns what every run shares:

- the **busy state**: its :class:`RunView` (the widget's run controls) is told when a run
  starts and when it has ended (``set_busy``), and what the run is doing (``set_status``);
- the **two-press cancel** (:meth:`~EngineRunner.cancel`): the first press (and the activity
  dock's cancel, which calls the worker's ``quit``) asks the engine to finish with what it
  has, a second press abandons the run (it ends at its next step and keeps nothing);
- **failures** in words: an exception in the worker, or in the widget's own handling of a
  preview or a result, is one sentence in the status line and a napari notification
  (:func:`~._failures.show_failure`), never a traceback dialog;
- **disposal**: :meth:`~EngineRunner.dispose` abandons the run and refuses new ones (the
  dock's :class:`~._dock.DockLifetime` disposes of every runner of a dock that goes away).

What a run leaves goes to the callbacks given to :meth:`~EngineRunner.start` for that run
(``on_progress``, ``on_preview``, ``on_result``), so a widget keeps no run state of its own;
observers of every run connect to three signals:

- ``progressed(Progress)``: every event the engine yields;
- ``previewed(Progress)``: events carrying a preview, at most one every
  ``preview_interval`` seconds, or less often when showing one is slow (see
  :data:`PREVIEW_SHARE`; the engine computes a preview only when the control says one
  is due, and the newest waiting one is shown when the interval is up); none once the
  run is asked to stop;
- ``ended(str, object)``: once the view is idle again: ``"done"`` with the generator's
  return value, ``"stopped"`` with it when the run was asked to finish early (a finished
  result, not the last preview), ``"abandoned"`` with ``None``, or ``"failed"`` with the
  exception.

:func:`call_in_worker` runs a plain function (reading a file) through the same runner.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QObject, Qt, QTimer, Signal

from ..core.base.engine import Progress, RunControl
from ._failures import show_failure

logger = logging.getLogger(__name__)

#: Showing a preview costs the main thread its write and then a redraw of the window
#: (with software OpenGL, several times the write); on a machine with few cores that
#: time is taken from the engine. The interval between previews grows so that showing
#: them (write and redraw, measured at each preview) takes at most this share of the run.
PREVIEW_SHARE = 0.1
#: napari's activity dock redraws the whole window for each update of its progress bar
#: (it processes events there): it is told the step at most this often, in seconds.
ACTIVITY_INTERVAL = 1.0

#: A function, run in the worker thread, that starts the run's generator.
StartRun = Callable[[RunControl], Generator[Progress, None, Any]]
#: What a run left, for the widget: ``(outcome, value)`` with outcome "done" or "stopped".
OnResult = Callable[[str, Any], None]


class RunView(Protocol):
    """What a runner drives: a widget's run controls (a widget adds its own to them)."""

    def set_busy(self, busy: bool, succeeded: bool = False) -> None:
        """A run starts (busy) or has ended (``succeeded``: whether it left a result)."""

    def set_status(self, text: str) -> None:
        """One line saying what the run is doing."""


@dataclass(frozen=True)
class RunTexts:
    """What the status line says when Cancel is pressed and when a run is abandoned."""

    stopping: str = "Stopping: finishing the result so far..."
    abandoning: str = "Abandoning the run..."
    abandoned: str = "Abandoned; nothing more was written."


@dataclass
class Failure:
    """A run that raised: the exception and its traceback text (for the log)."""

    error: BaseException
    details: str


class _FinishingWorker(GeneratorWorker):
    """A generator worker whose first ``quit()`` asks the engine to finish early.

    napari's activity dock cancels a worker through ``quit``; the first press then
    gives a finished result like the widget's Cancel, a second one abandons the run.
    """

    control: RunControl | None = None

    def quit(self) -> None:
        control = self.control
        if control is not None and not control.stop_requested:
            control.request_stop()
            return
        super().quit()


@dataclass
class _Run:
    """The state of the run under way (the runner holds at most one)."""

    worker: _FinishingWorker
    control: RunControl
    what: str
    preview_interval: float | None
    on_progress: Callable[[Progress], None] | None
    on_preview: Callable[[Progress], None] | None
    on_result: OnResult | None
    returned: tuple[str, Any] | None = None
    pending: Progress | None = None
    last_shown: float = -math.inf
    last_activity: float = -math.inf
    previews_shown: int = 0
    #: The interval the run asked for; ``preview_interval`` is the one in force.
    base_interval: float | None = None


class EngineRunner(QObject):
    """Runs one generator at a time in a worker thread; see the module docstring.

    ``view``: the run controls it keeps busy and writes the status to (``None``: a run
    nobody watches, such as reading a file); ``what``: how a failure begins ("Training
    failed: ..."); ``texts``: the status lines of cancel and abandon.
    """

    progressed = Signal(object)
    previewed = Signal(object)
    ended = Signal(str, object)

    def __init__(
        self,
        parent: QObject | None = None,
        preview_interval: float | None = 0.25,
        *,
        view: RunView | None = None,
        what: str = "Segmentation",
        texts: RunTexts = RunTexts(),
    ) -> None:
        super().__init__(parent)
        self.preview_interval = preview_interval
        self.view = view
        self.what = what
        self.texts = texts
        self._run: _Run | None = None
        self._started = time.perf_counter()
        self._disposed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        # A coarse timer (Qt's default) may fire 5% early: previews would come more often
        # than their pace allows.
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._flush_preview)

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def worker(self) -> GeneratorWorker | None:
        """The running worker (``None`` when idle)."""
        return None if self._run is None else self._run.worker

    @property
    def stopping(self) -> bool:
        return self._run is not None and self._run.control.stop_requested

    @property
    def elapsed(self) -> float:
        """Seconds since the current (or last) run started."""
        return time.perf_counter() - self._started

    def start(
        self,
        start_run: StartRun,
        description: str,
        preview_interval: float | None = ...,  # type: ignore[assignment]
        *,
        status: str = "",
        what: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_preview: Callable[[Progress], None] | None = None,
        on_result: OnResult | None = None,
    ) -> None:
        """Start a run (refused while one is running; nothing once disposed of).

        ``preview_interval``: seconds between previews for this run (``None``: no previews;
        default: the runner's); ``status``: the line shown while it starts; ``what``: how
        its failure begins (default: the runner's). The callbacks are this run's: every
        event, each preview shown, and ``(outcome, value)`` when it left a value; one that
        raises is shown as the run's failure.
        """
        if self._run is not None:
            raise RuntimeError("a run is already under way")
        if self._disposed:
            return
        interval = self.preview_interval if preview_interval is ... else preview_interval
        control = RunControl(interval)

        # The worker may outlive the run (napari's activity dock keeps it): hand the run's
        # inputs over in a box emptied at the start, so nothing keeps an image alive.
        box = [start_run]

        def work() -> Generator[Progress, None, Any]:
            try:
                value = yield from box.pop()(control)
            except Exception as exc:  # noqa: BLE001 - failures are values, shown in words
                return Failure(exc, traceback.format_exc())
            return value

        work.__qualname__ = work.__name__ = description
        worker = create_worker(
            work,
            _progress={"total": 0, "desc": description},
            _start_thread=False,
            _worker_class=_FinishingWorker,
        )
        worker.control = control
        run = _Run(worker, control, what or self.what, interval, on_progress, on_preview,
                   on_result, base_interval=interval)
        # Each worker reaches only its own run, and only while that run lasts: an event
        # still queued when its run ended (a quick run, a busy window) is dropped, so the
        # final message stays and a later run never shows an earlier one's events. A weak
        # reference: the worker may outlive the run, its callbacks must not.
        this = weakref.ref(run)
        worker.yielded.connect(lambda event: self._on_yielded(this(), event))
        worker.returned.connect(lambda value: self._on_returned(this(), value))
        worker.errored.connect(lambda exc: self._on_errored(this(), exc))
        worker.finished.connect(lambda: self._on_finished(this()))
        self._run = run
        self._started = time.perf_counter()
        if self.view is not None:
            self.view.set_busy(True)
        if status:
            self._set_status(status)
        worker.start()

    def cancel(self) -> str:
        """The Cancel button: the first press finishes early with a finished result, the
        second abandons the run; the status line says which. Returns what it did:
        "stopping", "abandoning" or "" (nothing was running)."""
        if self._run is None:
            return ""
        done = "abandoning" if self.stopping else "stopping"
        if done == "stopping":
            self.stop()
        else:
            self.abandon()
        self._set_status(getattr(self.texts, done))
        return done

    def stop(self) -> None:
        """Ask the engine to finish early with a finished result."""
        if self._run is not None:
            self._run.control.request_stop()

    def abandon(self) -> None:
        """End the run at its next step and keep nothing."""
        if self._run is not None:
            self.stop()
            self._run.worker.quit()

    def dispose(self) -> None:
        """Abandon the run and start no other (the dock is going away)."""
        self._disposed = True
        self.abandon()

    def fail(self, exc: BaseException, what: str | None = None) -> None:
        """Show a failure in words: a run refused before it started (its inputs), or work
        of the widget's own (saving a file). ``what``: default, the runner's."""
        show_failure(exc, self._set_status, what or self.what)

    def _set_status(self, text: str) -> None:
        if self.view is not None:
            self.view.set_status(text)

    # ------------------------------------------------------------------ worker handlers

    def _current(self, run: _Run | None) -> bool:
        return run is not None and run is self._run

    def _on_yielded(self, run: _Run | None, event: Progress) -> None:
        if run is None or not self._current(run):
            return
        self.progressed.emit(event)
        if run.on_progress is not None:
            run.on_progress(event)
        if event.preview is not None and not run.control.stop_requested:
            # Previews can queue up while the main thread is busy: show the newest, on time.
            run.pending = event
            wait = run.last_shown + (run.preview_interval or 0.0) - time.monotonic()
            if wait <= 0:
                self._flush_preview()
            elif not self._timer.isActive():
                self._timer.start(int(wait * 1000) + 1)
        # Last, and only while the run lasts: napari's activity bar processes events, in
        # which the run may end (nothing of this event may reach the widget after that).
        if self._run is run:
            self._update_activity_bar(run, event)

    def _flush_preview(self) -> None:
        run = self._run
        if run is None or run.pending is None or run.control.stop_requested:
            return
        event, run.pending = run.pending, None
        started = time.monotonic()
        run.last_shown = started
        self.previewed.emit(event)
        if run.on_preview is None or self._run is not run:
            return
        try:
            run.on_preview(event)
        except Exception as exc:  # noqa: BLE001 - never leave an exception in a Qt slot
            self.fail(exc, run.what)
            self.abandon()
            return
        run.previews_shown += 1
        if run.previews_shown == 1:
            return  # the first one adds the layer, a cost paid once: not a measure
        # Paced on the write at once (events queued meanwhile must not bring the next one),
        # then on write and redraw: the redraw the write asked for comes after this slot;
        # a zero-time timer runs before it, one started from that timer after it.
        self._pace_previews(run, time.monotonic() - started)
        QTimer.singleShot(0, lambda: QTimer.singleShot(
            0, lambda: self._pace_previews(run, time.monotonic() - started)))

    def _pace_previews(self, run: _Run, spent: float) -> None:
        """Space previews so that showing them (``spent`` seconds: write and redraw) takes at
        most PREVIEW_SHARE of the run; the engine is told too, so it stops computing
        previews nobody will see."""
        if run is not self._run or run.base_interval is None:
            return
        interval = max(run.base_interval, spent / PREVIEW_SHARE)
        run.preview_interval = interval
        run.control.preview_interval = interval

    @staticmethod
    def _update_activity_bar(run: _Run, event: Progress) -> None:
        pbar = getattr(run.worker, "pbar", None)
        if pbar is None or event.total <= 0:
            return
        now = time.monotonic()
        if now - run.last_activity < ACTIVITY_INTERVAL and event.step < event.total:
            return
        run.last_activity = now
        if pbar.total != event.total:
            pbar.total = event.total
        if event.step > pbar.n:
            pbar.update(event.step - pbar.n)

    def _on_returned(self, run: _Run | None, value: Any) -> None:
        if run is None or not self._current(run):
            return
        if isinstance(value, Failure):
            logger.error("a run failed:\n%s", value.details)
            run.returned = ("failed", value.error)
        else:
            run.returned = ("stopped" if self.stopping else "done", value)

    def _on_errored(self, run: _Run | None, exc: BaseException) -> None:
        if run is not None and self._current(run):
            run.returned = ("failed", exc)  # a last resort: work() returns failures

    def _on_finished(self, run: _Run | None) -> None:
        if run is None or not self._current(run):
            return
        self._run = None
        self._timer.stop()
        outcome, value = run.returned or ("abandoned", None)
        if outcome == "failed":
            show_failure(value, self._set_status, run.what)
        elif outcome == "abandoned":
            self._set_status(self.texts.abandoned)
        elif run.on_result is not None:
            try:
                run.on_result(outcome, value)
            except Exception as exc:  # noqa: BLE001 - never leave an exception in a Qt slot
                outcome, value = "failed", exc
                show_failure(exc, self._set_status, run.what)
        if self.view is not None:
            self.view.set_busy(False, succeeded=outcome in ("done", "stopped"))
        self.ended.emit(outcome, value)


def call_in_worker(function: Callable[..., Any], *args: Any) -> StartRun:
    """A run of ``function(*args)`` for :meth:`EngineRunner.start`: a generator that yields
    nothing and returns the function's value (work that has no steps, such as reading a
    file, goes through the same runner as the engines)."""

    def run(control: RunControl) -> Generator[Progress, None, Any]:
        return function(*args)
        yield  # pragma: no cover - makes this function a generator

    return run
