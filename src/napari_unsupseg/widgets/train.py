"""Dock widget: **Train from labels** - a U-Net or DeepLab learns from the labels you painted.

Composed of the shared parts: :class:`~._pickers.ImageInput` (the image, its channels,
every labelled plane of a stack is used), a :class:`~._pickers.LayerPicker` for the
labels layer (0 = unlabelled, k = class k), "Also train on" (:mod:`._train_pairs`: more
image / labels layer pairs, or a folder of image and label files), the
:class:`~._form.ParamForm` of
:class:`~napari_unsupseg.core.train.TrainParams`, an :class:`~._runner.EngineRunner`
(training and applying are two kinds of run, each with its own callbacks), a
:class:`~._results.ResultWriter` and a live :class:`~._plot.LossPlot`.

While training, the loss curves grow in the dock and a prediction of the plane shown
appears every few seconds in a Labels layer (never over a layer you edited). Cancel
keeps the best model so far; a second Cancel abandons the run. Then **Apply** runs the
model in memory through the inference engine on the current plane, every plane, or
another image layer; **Save model** writes it in this plugin's format (the inference
widget and ``napari-unsupseg predict`` load it). Training again continues from the last
model unless "continue from the last model" is unticked or a checkpoint is chosen.
When the model separates objects, Apply (and the last preview) also write them as a
second Labels layer "<image> objects", ready for Review labels.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui import widgets
from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)
from superqt import QCollapsible

from ..core.base.engine import Progress
from ..core.base.errors import InputError
from ..core.registry import ENGINES
from ._controls import RunControls
from ._dock import DockLifetime
from ._fit import FittingDock, scrolling_body, wrap_text
from ._form import ParamForm, chosen_path
from ._layers import as_label_data, same, show_classes
from ._pickers import ImageInput, LayerPicker
from ._results import ResultWriter
from ._runner import EngineRunner, RunTexts
from ._setup import CURRENT_PLANE, RunSetup, make_setup, run_in_worker
from ._train_pairs import TrainingPairs

if TYPE_CHECKING:
    import napari.viewer

ENGINE = ENGINES["train"]
EVERY_PLANE = "every labelled plane"
APPLY_PLANES = (CURRENT_PLANE, "every plane")
CHECKPOINT_FILTER = "*.pth *.pt *.pth.tar *.ckpt *.tar"
NO_LABELS = "none"
#: Where the user paints: which strokes teach a model most. (Unpainted far background is
#: whatever class the network likes: on real nuclei, rings alone gave an IoU of 0.07.)
STROKES_HINT = ("Paint both classes near each other, along object edges, not only "
                "object centres, and a few background strokes away from any object.")
TEXTS = RunTexts(stopping="Stopping: keeping the best model so far...",
                 abandoned="Abandoned: nothing was kept.")


class TrainWidget(DockLifetime, FittingDock, QWidget):
    """Train a segmentation model on painted labels, watch it learn, apply it."""

    #: Seconds between two prediction previews of the plane shown.
    preview_interval: float = 3.0

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.writer = ResultWriter(viewer)
        self.runner = EngineRunner(self, view=self, what="Training", texts=TEXTS)
        self.model: Any = None  # the last trained LoadedModel
        self.metadata: dict[str, Any] = {}
        self._styled: set[int] = set()
        self._build()
        self._connect()

    # ----------------------------------------------------------------- building

    def _build(self) -> None:
        self.input = ImageInput(self.viewer, offer_current_plane=False, stack_modes=[EVERY_PLANE])
        self.labels_picker = LayerPicker(
            self.viewer, Labels, label="labels", none_label=NO_LABELS, follow_work=True,
            tooltip="The labels you painted: 0 = unlabelled (ignored), k = class k. A few "
            "strokes per class are enough to start. The layer you paint in is chosen; "
            "hidden layers (a sample's ground truth) only if you pick them.")
        self.labels_note = widgets.Label(value="", label="")
        wrap_text(self.labels_note)
        self.strokes_hint = widgets.Label(value=STROKES_HINT, label="")
        wrap_text(self.strokes_hint)
        self.init_file = widgets.FileEdit(
            label="start from", mode="r", filter=CHECKPOINT_FILTER,
            tooltip="Optional checkpoint to start from (a model saved by this plugin, a "
            "DeepLabV3Plus-Pytorch file or a state dict); empty: from scratch.")
        self.continue_box = widgets.CheckBox(
            value=True, text="continue from the last model",
            tooltip="Train again after more corrections starting from the model trained last.")
        self.inputs = widgets.Container(
            widgets=[*self.input.controls, self.labels_picker.combo, self.labels_note,
                     self.strokes_hint, self.init_file,
                     self.continue_box], labels=True)
        self.pairs = TrainingPairs(
            self.viewer, lambda: (self.input.image, self.labels_picker.value), EVERY_PLANE, self)
        self.form = ParamForm(ENGINE.params, hidden=("init",))
        self.controls = RunControls("Train", self)
        self.train_button = self.controls.run_button
        self.cancel_button = self.controls.cancel_button
        self.cancel_button.setToolTip("Stop training and keep the best model so far. Press "
                                      "again to abandon the run.")
        self.progress_bar = self.controls.progress_bar
        self.status = self.controls.status
        from ._plot import LossPlot

        self.plot = LossPlot(self)
        self.apply_picker = LayerPicker(self.viewer, Image, label="apply to",
                                        tooltip="The image layer to segment with the model.")
        self.apply_planes = widgets.ComboBox(label="planes", choices=list(APPLY_PLANES))
        self.apply_controls = widgets.Container(
            widgets=[self.apply_picker.combo, self.apply_planes], labels=True)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Segment the chosen image with the trained model.")
        self.save_button = QPushButton("Save model")
        self.model_info = QLabel("no model trained yet")
        self.model_info.setWordWrap(True)

        layout = scrolling_body(self)
        layout.addWidget(self.inputs.native)
        more = QCollapsible("Also train on", self)  # folded: most runs use one image
        more.addWidget(self.pairs)
        layout.addWidget(more)
        layout.addWidget(self.form.basic.native)
        advanced = QCollapsible("Advanced settings", self)
        advanced.addWidget(self.form.advanced.native)
        layout.addWidget(advanced)
        layout.addWidget(self.controls)
        layout.addWidget(self.plot)
        layout.addWidget(self.apply_controls.native)
        row = QHBoxLayout()
        row.addWidget(self.apply_button)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        layout.addWidget(self.model_info)
        layout.addStretch(1)
        self.set_busy(False)
        self.fit()

    def label_forms(self) -> list[widgets.Container]:
        return [self.inputs, self.pairs.folder_form, self.form.basic, self.form.advanced,
                self.apply_controls]

    def _connect(self) -> None:
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.cancel)
        self.controls.reset_button.clicked.connect(self.form.reset)
        self.apply_button.clicked.connect(self.apply)
        self.save_button.clicked.connect(lambda: self.save())
        self.labels_picker.changed.connect(self._show_labels_choice)
        self._show_labels_choice(self.labels_picker.value)
        # The bar follows every run; the status text is this widget's own.
        self.runner.progressed.connect(partial(self.controls.show_progress, quiet=True))

    # ----------------------------------------------------------------- training

    def _show_labels_choice(self, layer: Any) -> None:
        """Say which layer training will read (the picker may have chosen it)."""
        if layer is None:
            text = "No labels layer chosen: add a Labels layer over the image and paint."
        else:
            hidden = "" if layer.visible else " (a hidden layer)"
            text = f"Trains on the labels painted in '{layer.name}'{hidden}."
        self.labels_note.value = text

    def _init_path(self) -> str:
        path = chosen_path(self.init_file.value, file=True)
        return "" if path is None else str(path)

    def train(self) -> None:
        """Start training on the chosen image and labels (main thread reads every choice)."""
        if self.runner.running:
            return
        try:
            layer = self.input.image
            extra = self.input.extra_channels
            axis = None if extra else self.input.channel_axis.value
            params = self.form.params(init=self._init_path())
            setup = make_setup(layer, params=params, engine_label=ENGINE.name, channel_axis=axis,
                               channel_layers=extra, plane_mode=EVERY_PLANE)
            painted = self.labels_picker.value
            if painted is None:
                raise InputError("Choose the labels layer you painted (add a Labels layer "
                                 "over the image and paint each class).")
            labels = setup.select(painted.data, f"labels layer '{painted.name}'")
            shown = make_setup(layer, params=params, engine_label="prediction",
                               channel_axis=axis, channel_layers=extra, plane_mode=CURRENT_PLANE,
                               current_point=self.viewer.dims.point)
            plane = 0
            if shown.plane is not None and setup.lead_shape:
                plane = int(np.ravel_multi_index(shown.plane, setup.lead_shape))
            inputs = self.pairs.inputs(setup, labels, painted)
        except Exception as exc:  # InputError, or a bug: plain words, window alive
            self.runner.fail(exc)
            return
        start = self.model if (self.continue_box.value and not params.init) else None
        self.writer.begin()
        self.plot.clear()

        def work(control: Any) -> Any:
            from ..core.train import train

            images, labels = yield from inputs.read()
            return (yield from train(images, labels, params, control=control,
                                     preview=(0, plane), colours=inputs.colours, start=start))

        more = f" and {inputs.count - 1} more image(s)" if inputs.count > 1 else ""
        self.runner.start(
            work, f"{ENGINE.name}: {layer.name}", preview_interval=self.preview_interval,
            status=f"Training on '{layer.name}' with '{painted.name}'{more}...",
            on_progress=self._plot_progress, on_preview=partial(self._show_preview, shown),
            on_result=partial(self._trained, shown, inputs.provenance()))

    def cancel(self) -> None:
        """First press: finish with the best model so far. Second press: abandon."""
        self.runner.cancel()

    # ----------------------------------------------------------------- applying

    def apply(self) -> None:
        """Segment the chosen layer with the trained model (inference engine, edit-safe)."""
        if self.runner.running:
            return
        try:
            if self.model is None:
                raise InputError("Train a model first: there is none to apply yet.")
            layer = self.apply_picker.value
            extra: list[Any] = []
            axis = None
            if same(layer, self.input.image):
                extra = self.input.extra_channels
                axis = None if extra else self.input.channel_axis.value
            elif layer is not None and not layer.rgb:
                axis = self._matching_axis(layer)
            from ..core.predict import PredictParams

            setup = make_setup(layer, params=PredictParams(), engine_label=ENGINE.layer,
                               channel_axis=axis, channel_layers=extra,
                               plane_mode=self.apply_planes.value,
                               current_point=self.viewer.dims.point)
        except Exception as exc:
            self.runner.fail(exc, "Applying the model")
            return
        model = self.model
        self.writer.begin()

        def work(control: Any) -> Any:
            from ..core.predict import predict

            return (yield from run_in_worker(
                setup, lambda image: predict(image, setup.params, model=model)))

        self.runner.start(work, f"apply: {setup.source_name}", preview_interval=None,
                          status=f"Applying the model to '{setup.source_name}'...",
                          what="Applying the model", on_result=partial(self._applied, setup))

    def _matching_axis(self, layer: Any) -> int | None:
        """The training image's channel axis, if the other layer has it with the model's
        channel count there; else none (one channel)."""
        axis = self.input.channel_axis.value
        shape = layer.data.shape
        channels = self.model.config.in_channels
        if axis is not None and -len(shape) <= axis < len(shape) and shape[axis] == channels:
            return axis
        return None

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the trained model (asks for a file name when none is given)."""
        if self.model is None:
            self.runner.fail(InputError("Train a model first: there is none to save yet."))
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.pt",
                                                  "Models (*.pt *.pth)")
            if not path:
                return None
        from ..core.train import save_model

        try:
            written = save_model(path, self.model, self.metadata)
        except Exception as exc:  # noqa: BLE001 - plain words, window alive
            self.runner.fail(exc, "Saving the model")
            return None
        self.set_status(f"Saved the model to {written}.")
        return written

    # ----------------------------------------------------------------- run events

    def _plot_progress(self, event: Progress) -> None:
        """A training step: the loss curves and the trainer's message."""
        val_loss = event.metrics.get("val_loss")
        if "epoch_loss" in event.metrics:
            val_loss = event.metrics["epoch_loss"]
            self.plot.set_validation_label("per epoch (too few pixels to hold out)")
        if val_loss is not None or event.loss is not None:
            self.plot.add(event.step, loss=event.loss, val_loss=val_loss)
        if event.message:
            self.set_status(f"{event.message} ({self.runner.elapsed:.0f} s)")

    def _show_preview(self, setup: RunSetup, event: Progress) -> None:
        self._write(setup, event.preview, {"napari_unsupseg": "training preview"})

    def _trained(self, setup: RunSetup, sources: dict[str, list[str]], _outcome: str,
                 value: Any) -> None:
        self.model, self.metadata = value.model, {**value.metadata, **sources}
        self.plot.redraw()
        if value.labels.size:
            layer = self._write(setup, value.labels, value.metadata)
            self.writer.finish(setup, layer)
            self.writer.add_objects(setup, value.extras, value.metadata)
        self._describe(value.metadata)

    def _applied(self, setup: RunSetup, _outcome: str, value: Any) -> None:
        layer = self._write(setup, value.labels, value.result.metadata)
        self.writer.finish(setup, layer)
        self.writer.add_objects(setup, value.result.extras, value.result.metadata)
        self.set_status(f"Applied the model to '{setup.source_name}'.")

    def _write(self, setup: RunSetup, labels: np.ndarray, metadata: dict[str, Any]) -> Any:
        layer = self.writer.write(setup, as_label_data(labels), metadata)
        if self.model is not None and id(layer) not in self._styled:
            self._style(layer)
        return layer

    def _style(self, layer: Any) -> None:
        """Class colours (the painted layer's) and names (hover) from the model."""
        config = self.model.config if self.model is not None else None
        if config is None:
            return
        show_classes(layer, config.class_names, config.palette)
        self._styled.add(id(layer))

    def _describe(self, meta: dict[str, Any]) -> None:
        iou = meta.get("best_val_iou")
        score = "" if iou is None else f", validation IoU {iou:.3f}"
        ended = {"stopped": "stopped by you", "time limit": "time limit reached",
                 "no improvement": "validation loss stopped improving",
                 "epochs": "all epochs done"}.get(meta.get("stop_reason"), "")
        names = meta.get("class_names", [])
        classes = ", ".join(f"{v}={names[v]}" for v in meta.get("class_values", []))
        text = (f"{meta.get('architecture')} model: classes {classes}; best epoch "
                f"{meta.get('best_epoch')} of {meta.get('epochs_run')}{score} ({ended}).")
        self.model_info.setText(text)
        self.set_status("Training finished. Apply the model or save it.")

    # ----------------------------------------------------------------- the runner's view

    def set_busy(self, busy: bool, succeeded: bool = False) -> None:
        """The run controls; Apply and Save once there is a model and no run."""
        self.controls.set_busy(busy, succeeded)
        has_model = self.model is not None
        self.apply_button.setEnabled(not busy and has_model)
        self.save_button.setEnabled(not busy and has_model)

    def set_status(self, text: str) -> None:
        self.controls.set_status(text)

    def dispose(self) -> None:
        """Stop following the viewer (the dock is closing; its runs are abandoned)."""
        self.input.disconnect()
        self.labels_picker.disconnect()
        self.apply_picker.disconnect()
        self.pairs.disconnect_viewer()
