"""Dock widget: presegmentation (superpixels) of an image layer."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..core.base.engine import EngineRun, RunControl
from ..core.preseg import PRESEG_METHODS, method_fields, run_preseg
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget
from ._form import ParamForm

VOLUME = "as a volume (3-D)"


class PresegWidget(EngineWidget):
    """Superpixels (SLIC, Felzenszwalb, quickshift, watershed, k-means) as a Labels layer.

    Stacks are segmented plane by plane, with label ids unique across the stack, or
    (slic, watershed) a z-stack as one volume: supervoxels span planes, with the voxel
    spacing of the layer's scale.
    The result is a starting point to correct by hand, or the regions to vote
    with; tick "add a mean-colour image" for the classic superpixel picture.
    """

    engine_entry: ClassVar[Engine | None] = ENGINES["preseg"]
    block_engine: ClassVar[str | None] = "preseg"
    hidden_params: ClassVar[tuple[str, ...]] = ("stack_mode",)
    stack_param: ClassVar[str | None] = "stack_mode"
    # The plane shown stays the default (the first mode) for every stack: napari does not
    # say whether the axis before the plane is z or time, and a volume run is one step
    # that cannot be stopped early; "as a volume" is one choice away for a z-stack.
    stack_modes: ClassVar[dict[str, Any]] = {
        "every plane (one by one)": "planes",
        VOLUME: "volume",
    }
    volume_modes: ClassVar[frozenset[str]] = frozenset({VOLUME})
    spacing_params: ClassVar[tuple[str, str, str] | None] = (
        "spacing_z", "spacing_y", "spacing_x")

    def engine(
        self, image: np.ndarray, params: Any, inputs: dict[str, Any], control: RunControl
    ) -> EngineRun:
        return run_preseg(image, params, control=control)

    def _connect(self) -> None:
        super()._connect()
        self.form["method"].changed.connect(lambda _v: show_preseg_settings(self.form, "method"))
        show_preseg_settings(self.form, "method")


def show_preseg_settings(form: ParamForm, method_field: str) -> None:
    """Show only the settings the chosen superpixel method reads: the other methods'
    change nothing. A choice that is no method of its own ('auto') shows them all,
    'none' shows none. ``method_field``: the form's method field (its presegmentation
    settings are the fields beside it, nested or not)."""
    specs = {spec.name: spec for spec in form.specs}
    method = form[method_field].value
    beside = specs[method_field].path[:-1]
    every = set().union(*(method_fields(m) for m in PRESEG_METHODS))
    if method in PRESEG_METHODS:
        chosen = set(method_fields(method))
    else:
        chosen = set() if method == "none" else every
    for spec in form.specs:
        inner = spec.path[-1] if spec.path else spec.name
        if spec.path[:-1] == beside and inner in every:
            form[spec.name].visible = inner in chosen
