"""Dock widget: **Model inference** - a trained DeepLabV3(+) / U-Net checkpoint on an image.

A thin subclass of :class:`~._base.EngineWidget`: the checkpoint is picked with a
file chooser (the ``checkpoint`` parameter is hidden from the form and filled from
it), the architecture and classes it holds are shown as soon as the file is chosen
(the form's ``architecture`` stays ``auto`` unless the user overrides it), and the
result is a Labels layer coloured with the class palette
(:class:`napari.utils.colormaps.DirectLabelColormap`) whose ``features`` carry the
class names, so hovering shows them. The confidence, when asked for, becomes an
Image layer over the result. Loaded models are cached per file, architecture and
output stride, so reruns start at once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from magicgui import widgets

from ..core.engine import EngineRun, Result
from ..core.errors import InputError
from ..core.inference import InferenceParams, predict
from ._base import EngineWidget, RunSetup
from ._layers import unique_name

CHECKPOINT_FILTER = "*.pth *.pt *.pth.tar *.ckpt *.tar"


class InferenceWidget(EngineWidget):
    """Segment an image layer with a trained DeepLabV3/V3+ or U-Net model (tiled)."""

    params_type: ClassVar[type] = InferenceParams
    engine_label: ClassVar[str] = "classes"
    hidden_params: ClassVar[tuple[str, ...]] = ("checkpoint",)
    stack_modes: ClassVar[dict[str, Any]] = {"every plane (one by one)": None}
    offer_mean_colour: ClassVar[bool] = False
    run_label: ClassVar[str] = "Predict"

    def extra_controls(self) -> list[widgets.Widget]:
        self.checkpoint = widgets.FileEdit(
            label="checkpoint", mode="r", filter=CHECKPOINT_FILTER,
            tooltip="Model file: a DeepLabV3Plus-Pytorch .pth, a state dict, a TorchScript "
            "archive or a model saved by this plugin. Only weights are read, never code.")
        self.model_info = widgets.Label(value="no checkpoint chosen")
        self.checkpoint.changed.connect(self._on_checkpoint)
        self._cache: dict[tuple[Any, ...], Any] = {}
        return [self.checkpoint, self.model_info]

    # ------------------------------------------------------------------ checkpoint

    def _checkpoint_path(self) -> Path | None:
        value = self.checkpoint.value
        text = str(value) if value is not None else ""
        if not text or text == "." or Path(text).is_dir():
            return None
        return Path(text)

    def _on_checkpoint(self, *_: Any) -> None:
        """Describe what the chosen file holds (weights only; the model is built at Run)."""
        path = self._checkpoint_path()
        if path is None:
            self.model_info.value = "no checkpoint chosen"
            return
        from ..core.models.checkpoints import describe_checkpoint

        try:
            self.model_info.value = describe_checkpoint(path)
        except InputError as error:
            self.model_info.value = f"cannot use this file: {error}"

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        path = self._checkpoint_path()
        if path is None:
            raise InputError("Choose a checkpoint file (.pth / .pt) for the model.")
        if not path.is_file():
            raise InputError(f"The checkpoint file {path} does not exist.")
        stat = path.stat()
        return {"checkpoint": str(path), "key": (str(path.resolve()), stat.st_mtime_ns,
                                                 stat.st_size)}

    def engine(self, image: np.ndarray, params: Any, inputs: dict[str, Any]) -> EngineRun:
        """Worker thread: load (or reuse) the model, then run the tiled prediction."""
        from ..core.models.checkpoints import load_checkpoint

        params = replace(params, checkpoint=inputs["checkpoint"])
        stride = None if params.output_stride == "auto" else int(params.output_stride)
        key = (*inputs["key"], params.architecture, stride)
        model = self._cache.get(key)
        if model is None:
            model = load_checkpoint(params.checkpoint, params.architecture, stride)
            self._cache.clear()  # keep one model: they can be large
            self._cache[key] = model
        return predict(image, params, model=model, previews=True)

    # ------------------------------------------------------------------ result

    def style_result(self, layer: Any, result: Result, setup: RunSetup) -> None:
        """Palette colours and class names (hover shows them) on the result layer."""
        import pandas as pd
        from napari.utils.colormaps import DirectLabelColormap

        meta = result.metadata
        offset = int(meta.get("label_offset", 0))
        names = list(meta.get("class_names", []))
        palette = list(meta.get("palette", []))
        colours: dict[Any, Any] = {None: np.array([0.5, 0.5, 0.5, 1.0]),
                                   0: np.zeros(4)}
        for index, colour in enumerate(palette):
            label = index + offset
            if label == 0:
                continue
            colours[label] = np.array([*(np.asarray(colour[:3], float) / 255.0), 1.0])
        layer.colormap = DirectLabelColormap(color_dict=colours)
        values = list(range(len(names) + offset))
        table = ["unlabelled"] * offset + names
        layer.features = pd.DataFrame({"index": values, "class": table})

    def write_extras(self, result: Result, setup: RunSetup) -> None:
        confidence = result.extras.get("confidence")
        if confidence is None:
            return
        name = unique_name(self.viewer, f"{setup.name} confidence")
        self.viewer.add_image(
            setup.restore(np.asarray(confidence, dtype=np.float32)), name=name,
            colormap="magma", contrast_limits=(0.0, 1.0), opacity=0.6, visible=False,
            metadata={"napari_unsupseg": "probability of the predicted class"},
            **setup.transform)

