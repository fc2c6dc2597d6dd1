"""The runner: one engine run in a worker thread, with previews, stop and abandon.

:class:`EngineRunner` owns the worker and nothing else: it knows no layer, form or
image. A widget gives it a function that starts a generator from a
:class:`~napari_unsupseg.core.base.engine.RunControl`; the runner calls it in the worker
thread and reports back on the main thread through three signals:

- ``progressed(Progress)``: every event the engine yields;
- ``previewed(Progress)``: events carrying a preview, at most one every
  ``preview_interval`` seconds (the engine computes a preview only when the control
  says one is due, and the newest waiting one is shown when the interval is up);
- ``ended(str, object)``: ``"done"`` with the generator's return value,
  ``"stopped"`` with it when the run was asked to finish early (a finished result,
  not the last preview), ``"abandoned"`` with ``None``, or ``"failed"`` with the
  exception. Failures come back as values, so napari shows no traceback dialog.

:meth:`cancel` is every Cancel button's rule: the first press (and the activity dock's
cancel, which calls the worker's ``quit``) asks the engine to finish with what it has
(:meth:`stop`), a second press abandons it (:meth:`abandon`: the run ends at its next step
and keeps nothing; also when the dock is closed). :func:`call_in_worker` runs a plain
function (reading a file) through the same runner, and :func:`show_failure` is how every
widget shows a failed run: one sentence as a napari notification, never a traceback.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QTimer, Signal

from ..core.base.engine import Progress, RunControl
from ..core.base.errors import InputError

logger = logging.getLogger(__name__)

#: What the status line says when Cancel is pressed (see :meth:`EngineRunner.cancel`).
CANCEL_STATUS = {"stopping": "Stopping: finishing the result so far...",
                 "abandoning": "Abandoning the run..."}

#: A function, run in the worker thread, that starts the run's generator.
StartRun = Callable[[RunControl], Generator[Progress, None, Any]]


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


class EngineRunner(QObject):
    """Runs one engine at a time in a worker thread; see the module docstring."""

    progressed = Signal(object)
    previewed = Signal(object)
    ended = Signal(str, object)

    def __init__(self, parent: QObject | None = None, preview_interval: float | None = 0.25):
        super().__init__(parent)
        self.preview_interval = preview_interval
        self._worker: _FinishingWorker | None = None
        self._control: RunControl | None = None
        self._pending: Progress | None = None
        self._last_shown = -math.inf
        self._returned: tuple[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush_preview)

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def worker(self) -> GeneratorWorker | None:
        """The running worker (``None`` when idle)."""
        return self._worker

    @property
    def stopping(self) -> bool:
        return self._control is not None and self._control.stop_requested

    def start(
        self,
        start_run: StartRun,
        description: str,
        preview_interval: float | None = ...,  # type: ignore[assignment]
    ) -> None:
        """Start a run (refused while one is running). ``preview_interval``: seconds
        between previews for this run (``None``: no previews; default: the runner's)."""
        if self._worker is not None:
            raise RuntimeError("a run is already under way")
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
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker, self._control = worker, control
        self._pending, self._last_shown, self._returned = None, -math.inf, None
        worker.start()

    def cancel(self) -> str:
        """The Cancel button: the first press finishes early with a finished result, the
        second abandons the run. Returns what it did: "stopping", "abandoning" or ""
        (nothing was running)."""
        if self._worker is None:
            return ""
        if self.stopping:
            self.abandon()
            return "abandoning"
        self.stop()
        return "stopping"

    def stop(self) -> None:
        """Ask the engine to finish early with a finished result."""
        if self._control is not None:
            self._control.request_stop()

    def abandon(self) -> None:
        """End the run at its next step and keep nothing."""
        if self._worker is not None:
            self.stop()
            self._worker.quit()

    # ------------------------------------------------------------------ worker handlers

    def _on_yielded(self, event: Progress) -> None:
        self._update_activity_bar(event)
        self.progressed.emit(event)
        if event.preview is None or self._worker is None:
            return
        # Previews can queue up while the main thread is busy: show the newest, on time.
        self._pending = event
        wait = self._last_shown + (self.preview_interval or 0.0) - time.monotonic()
        if wait <= 0:
            self._flush_preview()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def _flush_preview(self) -> None:
        event, self._pending = self._pending, None
        if event is None or self._worker is None:
            return
        self._last_shown = time.monotonic()
        self.previewed.emit(event)

    def _update_activity_bar(self, event: Progress) -> None:
        pbar = getattr(self._worker, "pbar", None)
        if pbar is None or event.total <= 0:
            return
        if pbar.total != event.total:
            pbar.total = event.total
        if event.step > pbar.n:
            pbar.update(event.step - pbar.n)

    def _on_returned(self, value: Any) -> None:
        if isinstance(value, Failure):
            logger.error("a run failed:\n%s", value.details)
            self._returned = ("failed", value.error)
        else:
            self._returned = ("stopped" if self.stopping else "done", value)

    def _on_errored(self, exc: BaseException) -> None:
        self._returned = ("failed", exc)  # a last resort: work() returns failures

    def _on_finished(self) -> None:
        self._timer.stop()
        outcome, value = self._returned or ("abandoned", None)
        self._worker = self._control = self._pending = None
        self._returned = None
        self.ended.emit(outcome, value)


def call_in_worker(function: Callable[..., Any], *args: Any) -> StartRun:
    """A run of ``function(*args)`` for :meth:`EngineRunner.start`: a generator that yields
    nothing and returns the function's value (work that has no steps, such as reading a
    file, goes through the same runner as the engines)."""

    def run(control: RunControl) -> Generator[Progress, None, Any]:
        return function(*args)
        yield  # pragma: no cover - makes this function a generator

    return run


def error_message(exc: BaseException, what: str = "Segmentation") -> str:
    """The plain-words message for an exception: InputError as is, else '<what> failed'."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"{what} failed: {text}"


def show_failure(exc: BaseException, set_status: Callable[[str], None],
                 what: str = "Segmentation") -> None:
    """Show a failed run in plain words: the widget's status line and a napari
    notification (main thread); anything but an InputError is logged with its traceback."""
    if not isinstance(exc, InputError):
        logger.error("%s failed", what, exc_info=exc)
    message = error_message(exc, what)
    set_status(f"Failed: {message}")
    show_error(message)
