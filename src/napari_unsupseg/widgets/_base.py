"""The base class of every engine's dock widget: a composition of four parts.

- :class:`~._pickers.ImageInput`: the image layer, its channels (a named axis, RGB,
  or several single-channel layers) and its planes;
- :class:`~._form.ParamForm`: the engine's parameters, from its dataclass;
- :class:`~._runner.EngineRunner`: the worker, previews, the two-press cancel, the busy
  state of the run controls, failures as notifications, and abandoning the run when the
  dock goes away (the widget is its view);
- :class:`~._results.ResultWriter`: result and extra layers, never over an edit.

A run: Run reads every choice into a :class:`~._setup.RunSetup` (main thread); the
runner calls :meth:`EngineWidget._work` in the worker thread, which cuts the image,
starts :meth:`engine` and returns the finished labels; previews and the result
are written on the main thread by the run's callbacks. Cancel asks the engine to
*finish early*: the result is the same finished, post-processed one a full run gives
(``stopped_early`` in its metadata), written like any result.

A subclass sets ``engine_entry`` (or ``params_type`` and ``engine_label``) and implements
:meth:`engine` (worker thread: no Qt, no napari); the other class attributes and the
methods between "extension points" below are optional (see the preseg, backprop, predict
and parts widgets, 30 to 180 lines each).

Signal: :attr:`EngineWidget.run_finished` (``"done"``, ``"stopped"``, ``"failed"``)
once a run has ended and the widget is idle again.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from magicgui import widgets
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QWidget
from superqt import QCollapsible

from ..core.base.engine import EngineRun, Progress, Result, RunControl
from ..core.base.errors import InputError
from ..core.registry import Engine
from ._controls import RunControls
from ._dock import DockLifetime
from ._failures import error_message
from ._fit import FittingDock, scrolling_body
from ._folder import FolderApply
from ._form import ParamForm
from ._limits import LimitsLine, checked
from ._pickers import ImageInput, LayerPicker
from ._results import ResultWriter
from ._runner import EngineRunner
from ._setup import (
    CURRENT_PLANE,
    Outcome,
    RunSetup,
    image_axes,
    layer_data,
    make_setup,
    run_in_worker,
)
from ._volume import SpacingLine, check_lazy_read, stack_values
from ._zarr_run import BlockSize, ZarrPlan, limits_line, prepare, zarr_plan

if TYPE_CHECKING:
    import napari.viewer

__all__ = [
    "CURRENT_PLANE", "EngineWidget", "LayerPicker", "RunSetup", "error_message", "image_axes",
    "layer_data",
]


class EngineWidget(DockLifetime, FittingDock, QWidget):
    """Base dock widget: pick an image, set parameters, run an engine, get layers."""

    #: Emitted when a run has ended and the widget is idle: "done", "stopped", "failed".
    run_finished = Signal(str)

    params_type: ClassVar[type]  #: the engine's parameter dataclass (no torch import)
    engine_label: ClassVar[str] = "segmentation"  #: result names: "<image> <engine_label>"
    hidden_params: ClassVar[tuple[str, ...]] = ()  #: fields the widget fills itself
    param_overrides: ClassVar[dict[str, Any]] = {}  #: the widget's own defaults
    #: How "every plane" runs are offered: label shown -> value of the ``stack_param`` field.
    stack_param: ClassVar[str | None] = None
    stack_modes: ClassVar[dict[str, Any]] = {"every plane": None}
    #: Labels of ``stack_modes`` that segment a z-stack as one volume (see ``._volume``).
    volume_modes: ClassVar[frozenset[str]] = frozenset()
    #: The (z, y, x) voxel spacing fields, filled from the layer's scale (then hidden).
    spacing_params: ClassVar[tuple[str, str, str] | None] = None
    offer_current_plane: ClassVar[bool] = True  #: False: the engine needs the whole stack
    preview_interval: ClassVar[float] = 0.25  #: seconds between two previews
    offer_mean_colour: ClassVar[bool] = True
    run_label: ClassVar[str] = "Run"
    #: The batch engine that "Apply to a folder" runs with the form's parameters (None: none).
    batch_engine: ClassVar[str | None] = None
    #: The engine of the package's registry this dock runs: its parameter class, result
    #: names and batch engine come from the registry entry (a test's engine sets the three
    #: attributes above itself).
    engine_entry: ClassVar[Engine | None] = None
    offer_folder: ClassVar[bool] = False  #: "Apply to a folder" with the entry's batch engine
    #: The engine run block by block on a layer read from an OME-Zarr store (``._zarr_run``).
    block_engine: ClassVar[str | None] = None

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        entry = self.engine_entry
        if entry is not None:
            self.params_type = entry.params
            self.engine_label = entry.layer
            self.batch_engine = entry.name if self.offer_folder and entry.batch == "file" \
                else None
        self.viewer = viewer
        self.writer = ResultWriter(viewer)
        self.runner = EngineRunner(self, preview_interval=self.preview_interval, view=self)
        self._build()
        self._connect()

    # ----------------------------------------------------------------- building

    def _build(self) -> None:
        self.input = ImageInput(
            self.viewer, offer_current_plane=self.offer_current_plane,
            stack_modes=list(self.stack_modes), volume_modes=self.volume_modes,
        )
        self.spacing_line = SpacingLine(self.input, self.volume_modes)
        self.block_size = BlockSize(self.input)
        blocks = [self.block_size.widget] if self.block_engine else []
        self.inputs = widgets.Container(
            widgets=[*self.input.controls, self.spacing_line.label, *blocks,
                     *self.extra_controls()],
            labels=True,
        )
        self.form = ParamForm(self.params_type, overrides=self.param_overrides,
                              hidden=(*self.hidden_params, *(self.spacing_params or ())))
        self.new_layer_each_run = widgets.CheckBox(
            value=False, text="new result layer for every run",
            tooltip="Unticked, a rerun replaces the previous result of the same image if you "
            "have not edited it. Edited results are never overwritten.",
        )
        self.mean_colour = widgets.CheckBox(
            value=False, text="add a mean-colour image", visible=self.offer_mean_colour,
            tooltip="Also show each region filled with its mean colour: a quick look at the "
            "result.",
        )
        self.options = widgets.Container(
            widgets=[self.new_layer_each_run, self.mean_colour], labels=False
        )
        self.controls = RunControls(self.run_label, self)
        # The controls by the names the widgets have always had.
        self.run_button = self.controls.run_button
        self.cancel_button = self.controls.cancel_button
        self.reset_button = self.controls.reset_button
        self.progress_bar = self.controls.progress_bar
        self.status = self.controls.status

        layout = scrolling_body(self)
        layout.addWidget(self.inputs.native)
        layout.addWidget(self.form.basic.native)
        if self.form.has_advanced:
            self.advanced = QCollapsible("Advanced settings", self)
            self.advanced.addWidget(self.form.advanced.native)
            layout.addWidget(self.advanced)
        layout.addWidget(self.options.native)
        layout.addWidget(self.controls)
        if self.batch_engine is not None:
            self.folder = FolderApply(self.batch_engine, self.batch_params, self)
            folder = QCollapsible("Apply to a folder", self)
            folder.addWidget(self.folder.container.native)
            layout.addWidget(folder)
        layout.addStretch(1)
        self.fit()

    def label_forms(self) -> list[widgets.Container]:
        forms = [self.inputs, self.form.basic, self.form.advanced]
        return forms + ([self.folder.container] if self.batch_engine is not None else [])

    def _connect(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.reset_button.clicked.connect(self.form.reset)
        self.runner.progressed.connect(self._show_progress)
        self.runner.ended.connect(self._on_ended)
        self.limits_line = LimitsLine(
            self.controls, self.engine_entry, self._setup, self.estimated_params,
            [self.inputs, self.form.basic, self.form.advanced],
            lambda setup: limits_line(self.zarr_plan(setup), setup))

    # The input controls, by the names the widgets have always had.
    @property
    def image_picker(self) -> LayerPicker:
        return self.input.image_picker

    @property
    def channel_axis(self) -> widgets.ComboBox:
        return self.input.channel_axis

    @property
    def channel_layers(self) -> widgets.Select:
        return self.input.channel_layers

    @property
    def channel_hint(self) -> widgets.Label:
        return self.input.channel_hint

    @property
    def plane_mode(self) -> widgets.ComboBox:
        return self.input.plane_mode

    @property
    def tracker(self) -> Any:
        return self.writer.tracker

    # ----------------------------------------------------------------- extension points

    def extra_controls(self) -> list[widgets.Widget]:
        """magicgui widgets shown under the image choices (default: none)."""
        return []

    def estimated_params(self, setup: RunSetup) -> Any:
        """The parameters the memory estimate reads (default: the form's); a widget whose
        inputs outside the form change the estimate adds them."""
        return setup.params

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        """Further inputs for :meth:`engine`, read on the main thread at Run (default: none)."""
        return {}

    def engine(
        self, image: np.ndarray, params: Any, inputs: dict[str, Any], control: RunControl
    ) -> EngineRun:
        """Start the engine generator. Runs in the worker thread: no Qt, no napari here."""
        raise NotImplementedError

    def read_input_labels(self, layer: Any, setup: RunSetup, what: str) -> np.ndarray | None:
        """A Labels layer the engine takes as input (scribbles, saliency), cut like the image;
        None when it is empty. A layer used as input is never written over by a later run."""
        if layer.multiscale:
            raise InputError(f"The {what} '{layer.name}' is multiscale; use a plain one.")
        data = setup.select(layer.data, what=f"{what} '{layer.name}'")
        self.tracker.mark_edited(layer)
        return data if data.any() else None

    def block_inputs(self, setup: RunSetup, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """(parameters, model loader or None) of a block-by-block run (main thread; the
        loader runs in the worker)."""
        return setup.params, None

    def batch_params(self) -> Any:
        """The parameters "Apply to a folder" uses (main thread; may raise InputError)."""
        return self.form.params()

    def write_extras(self, result: Result, setup: RunSetup) -> None:
        """Add layers for ``result.extras``: the objects an engine separated, if any (a
        model's, the segmenter's bright objects); engines with other extras add theirs.
        Main thread."""
        self.writer.add_objects(setup, result.extras,
                                self.result_metadata(setup, dict(result.metadata)))

    def style_result(self, layer: Any, result: Result, setup: RunSetup) -> None:
        """Dress the result layer (class names in ``layer.features``, a colormap...)."""

    def result_metadata(self, setup: RunSetup, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata of a result layer: the engine's, where the result came from, and the
        source's georeference (so that saving the labels writes a GeoTIFF)."""
        from ..core.base.geo import Georef

        georef = Georef.from_metadata(getattr(setup.source, "metadata", None))
        return {
            **metadata,
            **(georef.to_metadata() if georef is not None else {}),
            "napari": {
                "source_layer": setup.source_name,
                "channel_layers": list(setup.channel_names),
                "channel_axis": setup.channel_axis,
                "rgb": setup.rgb,
                "plane_mode": setup.plane_mode,
                "plane": None if setup.plane is None else list(setup.plane),
            },
        }

    # ----------------------------------------------------------------- state

    @property
    def is_running(self) -> bool:
        return self.runner.running

    @property
    def worker(self) -> Any:
        """The running worker (``None`` when idle)."""
        return self.runner.worker

    @property
    def result_layer(self) -> Any:
        """The layer the current or last run wrote (the viewer's handle), or None."""
        return self.writer.layer

    # ----------------------------------------------------------------- running

    def _setup(self) -> RunSetup:
        """Read the choices into a :class:`RunSetup`; InputError in plain words."""
        layer = self.input.image
        extra = self.input.extra_channels
        channel_axis = None if extra else self.channel_axis.value
        plane_mode = self.plane_mode.value
        setup = make_setup(
            layer,
            params=self.form.params(**stack_values(self, layer, channel_axis, plane_mode)),
            engine_label=self.engine_label,
            channel_axis=channel_axis,
            channel_layers=extra,
            plane_mode=plane_mode,
            current_point=self.viewer.dims.point,
            options={
                "mean_colour": bool(self.mean_colour.value and self.offer_mean_colour),
                "new_layer": bool(self.new_layer_each_run.value),
            },
        )
        if self.zarr_plan(setup) is None:  # a block run never reads the image whole
            check_lazy_read(setup)
        return setup

    def zarr_plan(self, setup: RunSetup) -> ZarrPlan | None:
        """The block-by-block run of ``setup`` (an OME-Zarr layer, whole image) or None."""
        return zarr_plan(self.block_engine, setup, setup.params, self.block_size.value)

    def run(self) -> None:
        """Start a run (does nothing while one is running)."""
        if self.runner.running:
            return
        try:
            setup = self._setup()
            plan = self.zarr_plan(setup)
            if plan is not None:
                start_blocks = prepare(self, setup, plan)
            else:
                setup = checked(self.engine_entry, setup, self.estimated_params(setup))
                inputs = self.collect_inputs(setup)
        except Exception as exc:  # InputError, or a bug: plain words, window alive
            self.runner.fail(exc)
            self.run_finished.emit("failed")
            return
        if plan is not None:
            start_blocks()
            return
        self.writer.begin()
        self.runner.start(
            lambda control: self._work(setup, inputs, control),
            f"{self.engine_label}: {setup.source_name}",
            status=f"Running {self.engine_label} on '{setup.source_name}'...",
            on_preview=partial(self._show_preview, setup),
            on_result=partial(self._write_outcome, setup),
        )

    def cancel(self) -> None:
        """First press: finish early with a finished result. Second press: abandon."""
        self.runner.cancel()

    def _work(
        self, setup: RunSetup, inputs: dict[str, Any], control: RunControl
    ) -> Generator[Progress, None, Outcome]:
        """The run in the worker thread (see :func:`~._setup.run_in_worker`)."""
        return run_in_worker(
            setup, lambda image: self.engine(image, setup.params, inputs, control)
        )

    # ----------------------------------------------------------------- run events

    def _show_progress(self, event: Progress) -> None:
        self.controls.show_progress(event, quiet=self.runner.stopping,
                                    elapsed=self.runner.elapsed)

    def _show_preview(self, setup: RunSetup, event: Progress) -> None:
        metadata = {
            "engine": self.engine_label,
            "status": f"live preview at step {event.step}/{event.total}",
            "napari": {"source_layer": setup.source_name},
        }
        self.writer.write(setup, event.preview, metadata)

    def _write_outcome(self, setup: RunSetup, ended: str, outcome: Outcome) -> None:
        metadata = self.result_metadata(setup, dict(outcome.result.metadata))
        layer = self.writer.write(setup, outcome.labels, metadata)
        self.style_result(layer, outcome.result, setup)
        self.writer.finish(setup, layer)
        if outcome.mean is not None:
            self.writer.add_mean_colour(setup, outcome.mean)
        self.write_extras(outcome.result, setup)
        n = len(np.unique(outcome.labels[outcome.labels > 0]))
        what = "Stopped early" if ended == "stopped" else "Done"
        self.set_status(f"{what}: {n} labels in {self.runner.elapsed:.1f} s, "
                        f"in layer '{layer.name}'.")

    def _on_ended(self, outcome: str, _value: Any) -> None:
        self.run_finished.emit("stopped" if outcome == "abandoned" else outcome)

    # ----------------------------------------------------------------- the runner's view

    def set_busy(self, busy: bool, succeeded: bool = False) -> None:
        """The run controls, and every choice locked while a run reads them."""
        self.controls.set_busy(busy, succeeded)
        for container in (self.inputs, self.form.basic, self.form.advanced, self.options):
            container.enabled = not busy

    def set_status(self, text: str) -> None:
        self.controls.set_status(text)

    def dispose(self) -> None:
        """Stop following the viewer (the dock is going away; its runs are abandoned)."""
        self.input.disconnect()
        self.spacing_line.disconnect()
        for picker in vars(self).values():
            if isinstance(picker, LayerPicker):
                picker.disconnect()
