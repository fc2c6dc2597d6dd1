""""Apply to a folder": the engine widget's current parameters over a folder of images.

The same code as ``napari-unsupseg batch`` (:mod:`napari_unsupseg.core.batch`, on
dask.distributed): outputs mirror the input names in the output folder, files already
written are skipped (press again to resume), and a file that fails is named in the
summary while the rest carry on. It runs through the widgets' one runner
(:class:`~._runner.EngineRunner`): the window stays usable, and pressing the button again
stops the run after the files under way (a second press abandons it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui import widgets
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject

from ..core.base.engine import Progress
from ..core.base.errors import InputError
from ._fit import wrap_text
from ._form import chosen_path
from ._runner import EngineRunner, RunTexts

TEXTS = RunTexts(abandoned="Abandoned: the files already written are kept.")


def folder_edit(label: str, tooltip: str) -> widgets.FileEdit:
    """A folder chooser (a path field and its browse button); read it with
    :func:`folder_chosen`."""
    return widgets.FileEdit(label=label, mode="d", tooltip=tooltip)


def folder_chosen(edit: widgets.FileEdit) -> Path | None:
    """The folder chosen in ``edit``; None when the field is empty. InputError in words
    when what is typed there is not an existing folder."""
    path = chosen_path(edit.value)
    if path is not None and not path.is_dir():
        raise InputError(f"The folder {path} does not exist.")
    return path


class FolderApply:
    """The controls and the run of "apply to a folder" for one engine widget.

    ``engine``: the batch engine's name (the registry's, e.g. ``"backprop"``);
    ``read_params``: reads the widget's parameters on the main thread (may raise
    ``InputError``); ``parent``: the dock, which abandons the run when it goes away.
    It is its runner's view: the button says whether a run is under way.
    """

    def __init__(self, engine: str, read_params: Callable[[], Any],
                 parent: QObject | None = None) -> None:
        self.engine = engine
        self.read_params = read_params
        self.source = folder_edit("input folder",
                                  "Every image in this folder (and below) is read.")
        self.target = folder_edit("output folder",
                                  "Labels are written here, named after the inputs.")
        self.workers = widgets.SpinBox(label="workers", value=2, min=1, max=64,
                                       tooltip="Processes of the local dask cluster.")
        self.button = widgets.PushButton(text="Apply to folder")
        self.status = widgets.Label(value="")
        wrap_text(self.status)
        self.container = widgets.Container(
            widgets=[self.source, self.target, self.workers, self.button, self.status]
        )
        self.runner = EngineRunner(parent, preview_interval=None, view=self, what="The batch",
                                   texts=TEXTS)
        self.button.changed.connect(self._on_button)
        self.runner.progressed.connect(self._show_progress)

    @property
    def worker(self) -> Any:
        """The running worker (``None`` when idle)."""
        return self.runner.worker

    def set_busy(self, busy: bool, succeeded: bool = False) -> None:
        self.button.text = "Stop the folder run" if busy else "Apply to folder"

    def set_status(self, text: str) -> None:
        self.status.value = text

    def _on_button(self, *_: Any) -> None:
        if self.runner.running:
            self.runner.cancel()
        else:
            self.start()

    def start(self, *_: Any) -> None:
        """Plan the files and start the batch (main thread); refusals in plain words."""
        if self.runner.running:
            return
        try:
            jobs, params = self._plan()
        except InputError as error:
            self.runner.fail(error)
            return
        from ..core.batch import run_batch

        workers = int(self.workers.value)
        self.runner.start(
            lambda control: run_batch(jobs, self.engine, params, workers=workers,
                                      control=control),
            f"{self.engine}: folder", preview_interval=None,
            status=f"Starting {len(jobs)} file(s) on {workers} worker(s)...",
            on_result=self._report)

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

    def _show_progress(self, event: Progress) -> None:
        self.status.value = f"{event.step} of {event.total} file(s) done..."

    def _report(self, _outcome: str, report: Any) -> None:
        self.status.value = report.summary()
        (show_info if report.ok else show_error)(report.summary().splitlines()[0])
