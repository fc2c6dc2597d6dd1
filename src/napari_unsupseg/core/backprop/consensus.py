"""Consensus of several short runs of the backprop segmenter.

One run's labels depend on its random initialisation: now and then a label
spans two regions whose darker (or lighter) pixels look alike, and which pair
it is changes from seed to seed. Several short runs from different seeds are
combined by **intersection** (co-association at the strictest level): two pixels
keep one label only if every run gave them one label. A split that one run makes
is therefore kept, a join that one run makes is undone; the over-segmentation
this leaves is joined again by :mod:`.merge`, which looks at region
statistics instead of at the seed.
"""

from __future__ import annotations

import numpy as np

from .merge import wide_pieces

#: Each run's seed is the user's seed plus this step times the run's index, so that
#: runs never share a seed with the runs of a neighbouring user seed.
SEED_STEP = 7919


def restart_seed(seed: int, index: int) -> int:
    """The seed of run ``index`` (0 = the user's seed itself)."""
    return (seed + SEED_STEP * index) % 2**32


def intersect(maps: list[np.ndarray]) -> np.ndarray:
    """Label maps (same shape, non-negative ints) intersected; ids 0..K-1 (int64).

    Two pixels share an id exactly when they share a label in every map.
    """
    combined = np.zeros(np.shape(maps[0]), dtype=np.int64)
    for labels in maps:
        _, compact = np.unique(labels, return_inverse=True)
        compact = compact.reshape(combined.shape)
        # Renumber after every step, so the running id never exceeds the pixel count.
        combined = combined * (int(compact.max()) + 1) + compact
        _, combined = np.unique(combined, return_inverse=True)
        combined = combined.reshape(compact.shape)
    return combined


def absorb_rare(labels: np.ndarray, min_fraction: float) -> np.ndarray:
    """The slivers of labels covering less than ``min_fraction`` of the pixels (in one plane
    or a stack) are given, pixel by pixel, to the nearest pixel of a kept label (in the
    same plane of a stack ``(N, Y, X)``); ids 0..K-1.

    Intersection leaves slivers where runs disagree on a boundary by a pixel or two;
    they carry no region of their own. A rare label's pieces wider than a sliver are
    kept: a nucleus of a few dozen pixels that all runs set apart from its
    surroundings is a region, however small (absorbed, it went to the background in
    some seeds' results and not in others').
    """
    from scipy import ndimage as ndi


    counts = np.bincount(labels.ravel())
    rare = counts[labels] < min_fraction * labels.size
    if rare.any():
        plane_stack = labels.reshape((-1,) + labels.shape[-2:])
        rare &= ~wide_pieces(plane_stack, rare.reshape(plane_stack.shape)).reshape(rare.shape)
    if rare.any() and not rare.all():
        # Across planes a step costs more than any distance inside one plane.
        sampling = (float(labels.size),) * (labels.ndim - 2) + (1.0, 1.0)
        _, nearest = ndi.distance_transform_edt(rare, sampling=sampling, return_indices=True)
        labels = labels[tuple(nearest)]
    _, compact = np.unique(labels, return_inverse=True)
    return compact.reshape(labels.shape)


#: Labels of the intersection covering less than this share of the pixels are slivers.
RARE_FRACTION = 0.005


def consensus(maps: list[np.ndarray]) -> np.ndarray:
    """The intersection of several runs' label maps, slivers absorbed; ids 0..K-1."""
    return absorb_rare(intersect(maps), RARE_FRACTION)
