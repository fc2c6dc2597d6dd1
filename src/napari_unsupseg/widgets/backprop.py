"""Dock widget: the unsupervised backprop segmenter, live, with optional scribbles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from magicgui import widgets
from napari.layers import Labels
from napari.utils.notifications import show_error

from ..core.backprop import segment
from ..core.base.engine import EngineRun, Progress, RunControl
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget, LayerPicker, RunSetup, image_axes, layer_data
from ._layers import transform_for, unique_name
from .preseg import show_preseg_settings

NO_SCRIBBLES = "none"


@dataclass
class RestartProgress:
    """Backprop's progress in words: restart k of n, the iteration, the time left.

    The engine counts every restart (and every plane of a plane-by-plane run) as
    ``max_iter`` steps, so a restart that converges early makes the step jump to the
    next restart's start; the words say which restart runs, and the time left is the
    unused budget at the speed so far (an upper bound: later restarts may converge).
    """

    max_iter: int
    finished: int = 0  #: iterations run by the restarts already over
    run: int = 0  #: the restart under way (0-based, planes included)
    iteration: int = 0

    def describe(self, event: Progress, elapsed: float) -> str | None:
        """The status line for ``event``; None for an event outside training."""
        runs = event.total // self.max_iter if self.max_iter else 0
        if event.step <= 0 or runs * self.max_iter != event.total:
            return None  # superpixels, or a tiled run that counts tiles too
        run, iteration = divmod(event.step - 1, self.max_iter)
        if run != self.run:
            self.finished += self.iteration
            self.run = run
        self.iteration = iteration + 1
        parts = [f"restart {run + 1} of {runs}" if runs > 1 else "training",
                 f"iteration {self.iteration} (at most {self.max_iter})"]
        if event.n_labels is not None:
            parts.append(f"{event.n_labels} labels")
        done = self.finished + self.iteration
        left = (event.total - event.step) * elapsed / done
        parts.append(f"at most {left:.0f} s left" if left >= 1 else "finishing")
        return " · ".join(parts)


class BackpropWidget(EngineWidget):
    """Kanezaki's unsupervised segmentation: a small CNN trained on the image itself.

    The label map is shown live while the network trains; Cancel stops it and
    finishes the result so far (merges, scribble ids) as a full run would. Optional
    scribbles (any Labels layer: 0 = unlabelled, k = class k) guide it: two classes
    painted apart come out as two labels. "new scribbles layer" adds an empty layer
    shaped like the image and ready to paint.

    Stacks: the current plane, every plane jointly (one network, labels agree
    across planes) or plane by plane (one network per plane).
    """

    engine_entry: ClassVar[Engine | None] = ENGINES["backprop"]
    offer_folder: ClassVar[bool] = True
    hidden_params: ClassVar[tuple[str, ...]] = ("stack_mode",)
    stack_param: ClassVar[str | None] = "stack_mode"
    stack_modes: ClassVar[dict[str, Any]] = {
        "every plane, jointly (labels agree)": "joint",
        "every plane, one by one": "planes",
    }

    def extra_controls(self) -> list[widgets.Widget]:
        self.scribbles = LayerPicker(
            self.viewer,
            Labels,
            label="scribbles",
            none_label=NO_SCRIBBLES,
            tooltip="Optional Labels layer of hints: 0 = unlabelled, k = class k. Regions "
            "painted with different labels end up in different segments.",
        )
        self.new_scribbles = widgets.PushButton(
            text="new scribbles layer",
            tooltip="Add an empty Labels layer shaped like the image, ready to paint on.",
        )
        self.new_scribbles.changed.connect(self.add_scribbles_layer)
        return [self.scribbles.combo, self.new_scribbles]

    def add_scribbles_layer(self, *_: Any) -> Any:
        """Add an empty Labels layer over the chosen image, choose it and start painting."""
        image = self.image_picker.value
        if image is None:
            show_error("Choose an image layer first; the scribbles layer takes its shape.")
            return None
        channel_axis = None if image.rgb or self.input.extra_channels else self.channel_axis.value
        lead, spatial = image_axes(image, channel_axis)
        keep = [*lead, *spatial]
        data_shape = layer_data(image).shape
        shape = tuple(data_shape[a] for a in keep)
        layer = self.viewer.add_labels(
            np.zeros(shape, dtype=np.uint8),
            name=unique_name(self.viewer, f"{image.name} scribbles"),
            **transform_for(image, keep),
        )
        self.scribbles.value = layer
        layer.brush_size = max(3, min(shape[-2:]) // 40)
        layer.selected_label = 1
        layer.mode = "paint"
        return layer

    def collect_inputs(self, setup: RunSetup) -> dict[str, Any]:
        self.restart_progress = RestartProgress(setup.params.max_iter)
        layer = self.scribbles.value
        if layer is None:
            return {"scribbles": None}
        return {"scribbles": self.read_input_labels(layer, setup, "scribbles layer")}

    def engine(
        self, image: np.ndarray, params: Any, inputs: dict[str, Any], control: RunControl
    ) -> EngineRun:
        return segment(image, params, scribbles=inputs.get("scribbles"), control=control)

    def _connect(self) -> None:
        super()._connect()
        self.form["superpixels"].changed.connect(
            lambda _v: show_preseg_settings(self.form, "superpixels"))
        show_preseg_settings(self.form, "superpixels")

    def _show_progress(self, event: Progress) -> None:
        progress = getattr(self, "restart_progress", None)
        text = None if progress is None else progress.describe(event, self.runner.elapsed)
        self.controls.show_progress(event, quiet=self.runner.stopping, text=text,
                                    elapsed=self.runner.elapsed)
