"""Dock widget: **Model inference** - a trained DeepLabV3(+) / U-Net checkpoint on an image.

A thin subclass of :class:`~._base.EngineWidget`: the checkpoint is picked with a
file chooser (the ``checkpoint`` parameter is hidden from the form and filled from
it), the architecture and classes it holds are shown as soon as the file is chosen
(the form's ``architecture`` stays ``auto`` unless the user overrides it), and the
result is a Labels layer coloured with the class palette
(:class:`napari.utils.colormaps.DirectLabelColormap`) whose ``features`` carry the
class names, so hovering shows them. The confidence, when asked for, becomes an
Image layer over the result; the objects of a model that separates them (an instance
label image), a second Labels layer "<image> objects" for Review labels.
Loaded models are cached per file, architecture and output stride, so reruns start
at once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from magicgui import widgets

from ..core.base.engine import EngineRun, Result, RunControl
from ..core.base.errors import InputError
from ..core.base.geo import Georef
from ..core.predict import predict_scene
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget, RunSetup
from ._fit import wrap_text
from ._form import chosen_path
from ._layers import show_classes
from ._runner import EngineRunner, call_in_worker

CHECKPOINT_FILTER = "*.pth *.pt *.pth.tar *.ckpt *.tar"
VOLUME_OBJECTS = "as a volume (3-D objects)"


class PredictWidget(EngineWidget):
    """Segment an image layer with a trained DeepLabV3/V3+ or U-Net model (tiled)."""

    engine_entry: ClassVar[Engine | None] = ENGINES["predict"]
    block_engine: ClassVar[str | None] = "predict"
    offer_folder: ClassVar[bool] = True
    hidden_params: ClassVar[tuple[str, ...]] = ("checkpoint", "objects_mode")
    stack_param: ClassVar[str | None] = "objects_mode"
    # The model sees one plane at a time in both modes; volume mode only joins the objects
    # across planes. The plane shown stays the default (the axis may be time).
    stack_modes: ClassVar[dict[str, Any]] = {
        "every plane (one by one)": "planes",
        VOLUME_OBJECTS: "volume",
    }
    volume_modes: ClassVar[frozenset[str]] = frozenset({VOLUME_OBJECTS})
    spacing_params: ClassVar[tuple[str, str, str] | None] = (
        "spacing_z", "spacing_y", "spacing_x")
    offer_mean_colour: ClassVar[bool] = False
    run_label: ClassVar[str] = "Predict"

    def extra_controls(self) -> list[widgets.Widget]:
        self.checkpoint = widgets.FileEdit(
            label="checkpoint", mode="r", filter=CHECKPOINT_FILTER,
            tooltip="Model file: a DeepLabV3Plus-Pytorch .pth, a state dict, a TorchScript "
            "archive or a model saved by this plugin. Weights files are read without "
            "running code; a TorchScript archive holds code and runs only if you allow it.")
        self.model_info = widgets.Label(value="no checkpoint chosen")
        wrap_text(self.model_info)
        self.allow_code = widgets.CheckBox(
            value=False, text="allow TorchScript (runs code from the file)", visible=False,
            tooltip="TorchScript archives contain code that runs when they are loaded: "
            "tick only for files from a source you trust.")
        self.checkpoint.changed.connect(self._on_checkpoint)
        self._cache: dict[tuple[Any, ...], Any] = {}
        # Reading a file is a run of its own, beside (never blocking) a prediction.
        self.reader = EngineRunner(self, preview_interval=None, what="Reading the checkpoint")
        self.reader.ended.connect(self._start_reading)  # the file chosen during the last read
        self._reading: Path | None = None
        return [self.checkpoint, self.model_info, self.allow_code]

    # ------------------------------------------------------------------ checkpoint

    def _on_checkpoint(self, *_: Any) -> None:
        """Describe what the chosen file holds, read in a worker so a large file does not
        freeze the window (weights only; the model is built at Run)."""
        path = chosen_path(self.checkpoint.value, file=True)
        self.allow_code.visible = path is not None and is_torchscript(path)
        self.allow_code.value = False
        if path is None:
            self.model_info.value = "no checkpoint chosen"
            return
        self.model_info.value = f"reading {path.name}..."
        self._reading = path
        self.reader.abandon()  # a later choice supersedes an earlier one still being read
        self._start_reading()

    def _start_reading(self, *_: Any) -> None:
        if not self.reader.running and self._reading is not None:
            path, self._reading = self._reading, None
            self.reader.start(call_in_worker(describe_file, path), f"read {path.name}",
                              on_result=self._show_description)

    def _show_description(self, _outcome: str, text: str) -> None:
        if self._reading is None:  # else a later choice is waiting to be read
            self.model_info.value = text

    def estimated_params(self, setup: RunSetup) -> Any:
        # The model file's size tells a small U-Net trained here from a large network.
        path = chosen_path(self.checkpoint.value, file=True)
        return setup.params if path is None else replace(setup.params, checkpoint=str(path))

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        path = self._checked_checkpoint()
        stat = path.stat()
        # The layer's georeference gives the image's pixel size (models at their resolution).
        georef = Georef.from_metadata(getattr(setup.source, "metadata", None))
        return {"checkpoint": str(path), "georef": georef,
                "key": (str(path.resolve()), stat.st_mtime_ns, stat.st_size)}

    def _checked_checkpoint(self) -> Path:
        """The chosen checkpoint file, refused in words when missing or not allowed."""
        path = chosen_path(self.checkpoint.value, file=True)
        if path is None:
            raise InputError("Choose a checkpoint file (.pth / .pt) for the model.")
        if not path.is_file():
            raise InputError(f"The checkpoint file {path} does not exist.")
        if is_torchscript(path) and not self.allow_code.value:
            raise InputError(
                f"{path.name} is a TorchScript archive: loading it runs code stored in the "
                "file. Tick 'allow TorchScript' if you trust its source.")
        return path

    def batch_params(self) -> Any:
        path = self._checked_checkpoint()
        return replace(self.form.params(), checkpoint=str(path))

    def engine(
        self, image: np.ndarray, params: Any, inputs: dict[str, Any], control: RunControl
    ) -> EngineRun:
        """Worker thread: load (or reuse) the model, then run the tiled prediction."""
        params = replace(params, checkpoint=inputs["checkpoint"])
        return predict_scene(image, params, model=self.model_for(params, inputs),
                             georef=inputs.get("georef"), control=control)

    def block_inputs(self, setup: RunSetup, inputs: dict[str, Any]) -> tuple[Any, Any]:
        params = replace(setup.params, checkpoint=inputs["checkpoint"])
        return params, lambda: self.model_for(params, inputs)

    def model_for(self, params: Any, inputs: dict[str, Any]) -> Any:
        """Worker thread: the checkpoint's model, loaded once per file and settings."""
        from ..core.models.checkpoints import load_checkpoint

        stride = None if params.output_stride == "auto" else int(params.output_stride)
        key = (*inputs["key"], params.architecture, stride)
        model = self._cache.get(key)
        if model is None:
            model = load_checkpoint(params.checkpoint, params.architecture, stride)
            self._cache.clear()  # keep one model: they can be large
            self._cache[key] = model
        return model

    # ------------------------------------------------------------------ result

    def style_result(self, layer: Any, result: Result, setup: RunSetup) -> None:
        """Palette colours and class names (hover shows them) on the result layer."""
        meta = result.metadata
        show_classes(layer, meta.get("class_names", []), meta.get("palette", []),
                     int(meta.get("label_offset", 0)))

    def write_extras(self, result: Result, setup: RunSetup) -> None:
        """The objects the model separated (if it does), and the confidence if asked for."""
        super().write_extras(result, setup)
        confidence = result.extras.get("confidence")
        if confidence is None:
            return
        data = setup.restore(np.asarray(confidence, dtype=np.float32))
        self.writer.replace_extra(setup, "confidence", lambda name: self.viewer.add_image(
            data, name=name, colormap="magma", contrast_limits=(0.0, 1.0), opacity=0.6,
            visible=False, metadata={"napari_unsupseg": "probability of the predicted class"},
            **setup.transform))


def describe_file(path: Path) -> str:
    """What a checkpoint file holds, in words (worker thread); never raises."""
    from ..core.models.checkpoints import describe_checkpoint

    try:
        return describe_checkpoint(path)
    except InputError as error:
        return f"cannot use this file: {error}"
    except Exception as error:  # noqa: BLE001 - shown as text, never a traceback
        return f"cannot read this file: {error}"


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (imported here: torch is not loaded before)."""
    from ..core.models.checkpoints import is_torchscript as check

    return check(path)
