"""Dock widget: SCOPS part discovery over a stack of images of one object class."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from magicgui import widgets
from napari.layers import Labels

from ..core.base.engine import EngineRun, RunControl
from ..core.base.errors import InputError
from ..core.parts import FALLBACK_FEATURES, discover_parts
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget, LayerPicker, RunSetup
from ._fit import wrap_text
from ._form import chosen_path

NO_SALIENCY = "none"
EVERY_IMAGE = "every image (the first axis indexes images)"


class PartsWidget(EngineWidget):
    """Find K parts shared by every image of a stack (SCOPS), without annotation.

    The image layer's first axis indexes the images (all of one object class: leaves,
    larvae, faces...). The result is a Labels stack aligned with the images (0 =
    background, 1..K = parts, the same number meaning the same part in every
    image), shown live while the network trains, and a Points layer with the
    centre of every part in every image. An optional saliency Labels layer (any
    non-zero = object) or a brightness threshold tells objects from background.
    Without a feature-weights file (a torchvision VGG-19 or ResNet state dict),
    parts are told apart by built-in texture features, which ignore colour.
    """

    engine_entry: ClassVar[Engine | None] = ENGINES["parts"]
    stack_modes: ClassVar[dict[str, Any]] = {EVERY_IMAGE: None}
    offer_mean_colour: ClassVar[bool] = False
    offer_current_plane: ClassVar[bool] = False  # parts are found across the whole collection
    run_label: ClassVar[str] = "Find parts"
    hidden_params: ClassVar[tuple[str, ...]] = ("feature_weights",)  # a file picker instead

    def extra_controls(self) -> list[widgets.Widget]:
        self.saliency = LayerPicker(
            self.viewer,
            Labels,
            label="saliency",
            none_label=NO_SALIENCY,
            tooltip="Optional Labels layer shaped like the image stack: non-zero = object. "
            "It masks the features and overrides the saliency threshold.",
        )
        self.weights_file = widgets.FileEdit(
            label="feature weights",
            mode="r",
            filter="*.pth *.pt *.bin",
            tooltip="Optional torchvision-layout VGG-19 or ResNet state dict: its features "
            "guide the parts. Without one: " + FALLBACK_FEATURES + ".",
        )
        self.weights_file.changed.connect(self._on_weights_file)
        self.features_note = widgets.Label(value=self._features_text(None))
        wrap_text(self.features_note)
        return [self.saliency.combo, self.weights_file, self.features_note]

    @staticmethod
    def _features_text(path: str | None) -> str:
        if path:
            return f"Features: the pretrained network in {path.rsplit('/', 1)[-1]}."
        return ("Features: built-in texture (no colour). Give VGG-19 or ResNet weights for "
                "semantic features.")

    def weights_path(self) -> str | None:
        """The chosen feature-weights file, or None (an empty or folder choice)."""
        path = chosen_path(self.weights_file.value, file=True)
        if path is None:
            return None
        if not path.is_file():
            raise InputError(f"The feature weights file {path} does not exist.")
        return str(path)

    def _on_weights_file(self, _value: Any) -> None:
        try:
            path = self.weights_path()
        except InputError:
            path = None
        self.features_note.value = self._features_text(path)

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        if not setup.stacked:
            raise InputError(
                f"'{setup.source_name}' is a single image; part discovery needs a stack whose "
                "first axis indexes the images (stack images with File > Open, 'stack')."
            )
        if len(setup.lead_shape) != 1:
            raise InputError(
                f"'{setup.source_name}' has {len(setup.lead_shape)} axes before its planes; "
                "part discovery takes one image axis (first axis = image)."
            )
        inputs: dict[str, Any] = {"feature_weights": self.weights_path(), "saliency": None}
        layer = self.saliency.value
        if layer is not None:
            inputs["saliency"] = self.read_input_labels(layer, setup, "saliency layer")
        return inputs

    def engine(
        self, image: np.ndarray, params: Any, inputs: dict[str, Any], control: RunControl
    ) -> EngineRun:
        params = replace(params, feature_weights=inputs.get("feature_weights"))
        return discover_parts(image, params, saliency=inputs.get("saliency"), control=control)

    def style_result(self, layer: Any, result: Any, setup: RunSetup) -> None:
        k = int(result.metadata.get("parameters", {}).get("n_parts", layer.data.max()))
        layer.features = {"index": np.arange(k + 1),
                          "part": ["background", *[f"part {i}" for i in range(1, k + 1)]]}

    def write_extras(self, result: Any, setup: RunSetup) -> None:
        """A Points layer of part centres: (image, row, column), coloured by part."""
        centres = np.asarray(result.extras.get("centres"))
        if centres.ndim != 3 or centres.size == 0:
            return
        n, k, _ = centres.shape
        image_index = np.repeat(np.arange(n), k)
        part = np.tile(np.arange(1, k + 1), n)
        flat = centres.reshape(-1, 2)
        keep = np.isfinite(flat).all(axis=1)
        points = np.column_stack([image_index, flat])[keep]
        labels_layer = self.result_layer
        colours = None
        if labels_layer is not None:
            colours = np.asarray([labels_layer.get_color(int(p)) for p in part[keep]])
        def add(name: str) -> Any:
            return self.viewer.add_points(
                points,
                name=name,
                features={"part": part[keep], "image": image_index[keep]},
                face_color=colours if colours is not None and len(colours) else "white",
                border_color="black",
                size=max(3.0, min(setup.spatial_shape) / 25),
                metadata={"engine": ENGINES["parts"].name,
                          "centres": "(image, row, column) of each part"},
                **setup.transform,
            )

        self.points_layer = self.writer.replace_extra(setup, "part centres", add)[0]
