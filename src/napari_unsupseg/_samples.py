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
    # One Image layer per channel, as napari opens multichannel data: the widgets take
    # the layers opened together as the channels of one image.
    image, nuclei = samples.cells()
    channels = {
        "name": ["cells nuclei", "cells cytoplasm"],
        "channel_axis": 0,
        "colormap": ["magenta", "green"],
    }
    return [
        (image, channels, "image"),
        (nuclei, {"name": "cells nuclei truth", "visible": False}, "labels"),
    ]


def parts_sample() -> list[LayerData]:
    # A stack whose first axis indexes the images, as the Part discovery widget takes it;
    # the true parts come along hidden, for comparison (or as the saliency mask).
    from .core.samples.parts import part_collection

    images, parts = part_collection(n_images=8, size=128, n_parts=4, seed=0)
    return [
        (images, {"name": "critters", "rgb": True}, "image"),
        (parts, {"name": "critters parts truth", "visible": False}, "labels"),
    ]
