"""Dock widget: presegmentation (superpixels) of an image layer."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..core.base.engine import EngineRun, RunControl
from ..core.preseg import PRESEG_METHODS, method_fields, run_preseg
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget
from ._form import ParamForm


class PresegWidget(EngineWidget):
    """Superpixels (SLIC, Felzenszwalb, quickshift, watershed, k-means) as a Labels layer.

    Stacks are segmented plane by plane, with label ids unique across the stack.
    The result is a starting point to correct by hand, or the regions to vote
    with; tick "add a mean-colour image" for the classic superpixel picture.
    """

    engine_entry: ClassVar[Engine | None] = ENGINES["preseg"]
    stack_modes: ClassVar[dict[str, Any]] = {"every plane (one by one)": None}

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
