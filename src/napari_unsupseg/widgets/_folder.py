""""Apply to a folder": the engine widget's current parameters over a folder of images.

The same code as ``napari-unsupseg batch`` (:mod:`napari_unsupseg.core.batch`, on
dask.distributed): outputs mirror the input names in the output folder, files already
written are skipped (press again to resume), and a file that fails is named in the
summary while the rest carry on. It runs through the widgets' one runner
(:class:`~._runner.EngineRunner`): the window stays usable, and pressing the button again
stops the run after the files under way (a second press abandons it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from magicgui import widgets
from napari.utils.notifications import show_error, show_info

from ..core.base.engine import Progress
from ..core.base.errors import InputError
from ._form import chosen_path
from ._runner import CANCEL_STATUS, EngineRunner, show_failure

logger = logging.getLogger(__name__)


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
        self.button.changed.connect(self._on_button)
        self.runner = EngineRunner(preview_interval=None)
        self.runner.progressed.connect(self._on_progress)
        self.runner.ended.connect(self._on_ended)

    @property
    def worker(self) -> Any:
        """The running worker (``None`` when idle)."""
        return self.runner.worker

    def _on_button(self, *_: Any) -> None:
        if self.runner.running:
            self.status.value = CANCEL_STATUS[self.runner.cancel()]
        else:
            self.start()

    def start(self, *_: Any) -> None:
        """Plan the files and start the batch (main thread); refusals in plain words."""
        if self.runner.running:
            return
        try:
            jobs, params = self._plan()
        except InputError as error:
            self.status.value = f"Failed: {error}"
            show_error(str(error))
            return
        from ..core.batch import run_batch

        workers = int(self.workers.value)
        self.runner.start(
            lambda control: run_batch(jobs, self.engine, params, workers=workers,
                                      control=control),
            f"{self.engine}: folder", preview_interval=None)
        self.button.text = "Stop the folder run"
        self.status.value = f"Starting {len(jobs)} file(s) on {workers} worker(s)..."

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

    def _on_progress(self, event: Progress) -> None:
        self.status.value = f"{event.step} of {event.total} file(s) done..."

    def _on_ended(self, outcome: str, report: Any) -> None:
        self.button.text = "Apply to folder"
        if outcome == "failed":
            show_failure(report, lambda text: setattr(self.status, "value", text), "The batch")
        elif outcome == "abandoned" or report is None:
            self.status.value = "Abandoned: the files already written are kept."
        else:
            self.status.value = report.summary()
            (show_info if report.ok else show_error)(report.summary().splitlines()[0])

    def dispose(self) -> None:
        """Abandon a folder run (the dock is going away)."""
        self.runner.abandon()

