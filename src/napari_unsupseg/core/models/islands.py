"""Small, uncertain islands of a class inside others, measured against the training labels.

A network trained on a few painted pixels per class labels the painted look of each
class well, but a second look of a class that no painted pixel showed (the other tone of
a two-tone texture) is a guess: it comes out as scattered islands of whichever class
looks closest, each one far smaller than any region of that class around a painted
pixel, and predicted with less confidence. Segmentation pipelines remove such
components after checking the rule on their own labels (nnU-Net's post-processing);
here the check is built in:

* at the end of training, the trained model labels its training planes, and each class
  gets a *floor*: :data:`FLOOR_FRACTION` of its smallest predicted region that holds a
  painted pixel of it;
* at prediction, a region of a class smaller than its floor whose mean confidence is
  below :data:`MAX_CONFIDENCE` takes the most common class along its outline.

Small objects the user painted (nuclei) set a small floor of their own and are kept; a
confidently predicted region is never changed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FLOOR_FRACTION", "MAX_CONFIDENCE", "absorb_islands", "island_floors"]

#: A class's floor, as a share of its smallest predicted region holding a painted pixel.
FLOOR_FRACTION = 0.25
#: Regions predicted with at least this mean confidence are kept, however small.
MAX_CONFIDENCE = 0.95


def island_floors(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[int, int]:
    """Per class value, the floor in pixels (see the module docstring).

    ``pairs``: (predicted labels, painted labels) of each training plane, same shape;
    painted 0 is unlabelled. A class whose painted pixels the model never labels as it
    gets no floor."""
    smallest: dict[int, int] = {}
    for predicted, painted in pairs:
        for value in np.unique(painted[painted > 0]):
            regions, _ = ndi.label(predicted == value)
            held = np.unique(regions[(painted == value) & (regions > 0)])
            if held.size:
                size = int(np.bincount(regions.ravel())[held].min())
                smallest[int(value)] = min(smallest.get(int(value), size), size)
    return {v: int(size * FLOOR_FRACTION) for v, size in smallest.items()
            if size * FLOOR_FRACTION >= 1}


def absorb_islands(labels: np.ndarray, confidence: np.ndarray, floors: dict[int, int]
                   ) -> int:
    """Give each island (see the module docstring) of a 2-D ``labels`` the most common
    class on its outline, in place; returns how many islands changed."""
    changed = 0
    for value, floor in floors.items():
        regions, count = ndi.label(labels == value)
        if not count:
            continue
        sizes = np.bincount(regions.ravel())
        # Region 0 (the other classes) may be empty, and is never an island.
        means = np.r_[np.inf, ndi.mean(confidence, regions, np.arange(1, count + 1))]
        small = np.flatnonzero((sizes < floor) & (means < MAX_CONFIDENCE))
        boxes = ndi.find_objects(regions)
        for region in small[small > 0]:
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in boxes[region - 1])
            inside = regions[box] == region
            outline = ndi.binary_dilation(inside) & ~inside
            around = labels[box][outline]
            around = around[around != value]
            if around.size:
                labels[box][inside] = np.bincount(around).argmax()
                changed += 1
    return changed
