"""Dock widget: presegmentation (superpixels) of an image layer."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..core.base.engine import EngineRun, RunControl
from ..core.preseg import run_preseg
from ..core.registry import ENGINES, Engine
from ._base import EngineWidget


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
