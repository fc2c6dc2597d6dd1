""""Apply to a folder": the engine widget's current parameters over a folder of images.

The same code as ``napari-unsupseg batch`` (:mod:`napari_unsupseg.core.batch`, on
dask.distributed): outputs mirror the input names in the output folder, files already
written are skipped (press again to resume), and a file that fails is named in the
summary while the rest carry on. It runs in a worker thread; the window stays usable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from magicgui import widgets
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..core.base.errors import InputError
from ._form import chosen_path

logger = logging.getLogger(__name__)


class _Progress(QObject):
    """Carries 'file k of n done' from the worker thread to the main thread."""

    advanced = Signal(int, int)


class FolderApply:
    """The controls and the run of "apply to a folder" for one engine widget.

    ``engine``: the batch engine's name (``"backprop"``, ``"predict"``, ...);
    ``read_params``: reads the widget's parameters on the main thread (may raise
    ``InputError``).
    """

    def __init__(self, engine: str, read_params: Callable[[], Any]) -> None:
        self.engine = engine
        self.read_params = read_params
        self.source = widgets.FileEdit(label="input folder", mode="d",
                                       tooltip="Every image in this folder (and below) is read.")
        self.target = widgets.FileEdit(label="output folder", mode="d",
                                       tooltip="Labels are written here, named after the inputs.")
        self.workers = widgets.SpinBox(label="workers", value=2, min=1, max=64,
                                       tooltip="Processes of the local dask cluster.")
        self.button = widgets.PushButton(text="Apply to folder")
        self.status = widgets.Label(value="")
        self.container = widgets.Container(
            widgets=[self.source, self.target, self.workers, self.button, self.status]
        )
        self.button.changed.connect(self.start)
        self._progress = _Progress()
        self._progress.advanced.connect(self._on_advanced)
        self.worker: Any = None

    def start(self, *_: Any) -> None:
        """Plan the files and start the batch (main thread); refusals in plain words."""
        if self.worker is not None:
            return
        try:
            jobs, params = self._plan()
        except InputError as error:
            self.status.value = f"Failed: {error}"
            show_error(str(error))
            return
        from ..core.base.engine import drive
        from ..core.batch import run_batch

        def work() -> Any:
            return drive(run_batch(jobs, self.engine, params, workers=int(self.workers.value)),
                         lambda event: self._progress.advanced.emit(event.step, event.total))

        # Errors come back through errored and are shown in plain words here.
        self.worker = create_worker(work, _progress={"desc": f"{self.engine}: folder"},
                                    _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)
        self.button.enabled = False
        self.status.value = f"Starting {len(jobs)} file(s) on {self.workers.value} worker(s)..."
        self.worker.start()

    def _plan(self) -> tuple[list[Any], Any]:
        from ..core.batch import plan_jobs

        source, target = chosen_path(self.source.value), chosen_path(self.target.value)
        if source is None or not source.is_dir():
            raise InputError("Choose an input folder that exists.")
        if target is None:
            raise InputError("Choose an output folder.")
        if target.resolve() == source.resolve():
            raise InputError("Choose an output folder other than the input folder.")
        return plan_jobs([str(source)], target, self.engine), self.read_params()

    def _on_advanced(self, done: int, total: int) -> None:
        self.status.value = f"{done} of {total} file(s) done..."

    def _on_returned(self, report: Any) -> None:
        self.status.value = report.summary()
        (show_info if report.ok else show_error)(report.summary().splitlines()[0])

    def _on_errored(self, error: BaseException) -> None:
        self.status.value = f"Failed: {error}"
        show_error(str(error) if isinstance(error, InputError) else f"The batch failed: {error}")

    def _on_finished(self) -> None:
        self.worker = None
        self.button.enabled = True

