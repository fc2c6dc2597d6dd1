"""Sample data for napari's File > Open Sample menu (no Qt, no torch)."""

from __future__ import annotations

from typing import Any

from .core import samples

LayerData = tuple[Any, dict[str, Any], str]


def coffee_sample() -> list[LayerData]:
    return [(samples.coffee(), {"name": "coffee", "rgb": True}, "image")]


def mosaic_sample() -> list[LayerData]:
    image, truth = samples.mosaic(size=256)
    return [
        (image, {"name": "mosaic", "rgb": True}, "image"),
        (truth, {"name": "mosaic truth", "visible": False}, "labels"),
    ]


def cells_sample() -> list[LayerData]:
    # One layer with its channel axis first (as confocal files are), so that the
    # widgets can segment both channels together; choose channel axis 0 there.
    image, nuclei = samples.cells()
    return [
        (image, {"name": "cells (channels on axis 0)", "colormap": "gray"}, "image"),
        (nuclei, {"name": "cells nuclei truth", "visible": False}, "labels"),
    ]
