"""The bright objects of a segmentation: the labels a user would call foreground in a dark
field (fluorescence), each connected object of them its own label.

Which labels: the label means, each weighted by its pixel count, split in two by Otsu's
criterion (the split that leaves the least variance of brightness within the two sides);
the brighter side. The labels brighter than the label covering most of the border, a first
rule, fails whenever the background comes back as several labels (its glow around bright
nuclei, its gradient across the field), which then count as foreground. Otsu's split is
invariant to a linear change of the intensities, so the raw image and its scaled copy give
the same labels. Touching objects are then split as a trained model's are
(:func:`..predict.objects_of_class`).

Measured on the 60 DSB2018 development fields (``benchmarks/bench_real.py``, which scores
this rule as the segmenter's automatic foreground)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..base.engine import Result
from ..base.images import Spacing


def bright_labels(labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Boolean mask of the labels on the bright side of an Otsu split of the label means
    (``image``: intensities shaped like ``labels``; nothing is bright with one label)."""
    from skimage.filters import threshold_otsu

    _, inverse, size = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(labels.shape)
    if len(size) < 2:
        return np.zeros(labels.shape, bool)
    mean = np.bincount(inverse.ravel(), weights=np.ravel(image).astype(float)) / size
    order = np.argsort(mean, kind="stable")  # a histogram's bins go up
    level = threshold_otsu(hist=(size[order], mean[order]))  # each label a bin of its size
    return (mean > level)[inverse]


def with_bright_objects(result: Result, image: np.ndarray, per_plane: bool,
                        excluded: np.ndarray | None = None,
                        spacing: Spacing | None = None) -> Result:
    """``result`` with ``extras["objects"]`` (uint32, 0 = background, 1..N) and
    ``metadata["objects"]``: the bright labels' objects. ``image``: the engine's input,
    ``(Y, X, C)`` or ``(N, Y, X, C)``, channels averaged; ``per_plane``: the labels of
    each plane of a stack are their own (ids not shared), so each plane is split in two
    on its own; ``excluded``: pixels without data, never bright; ``spacing``: a z-stack's
    voxel spacing when it was segmented as one volume (its objects are then split in 3-D,
    one label through every plane they cross)."""
    from ..predict import objects_of_class  # the objects step a model's classes take

    labels = result.labels
    grey = np.asarray(image, dtype=np.float32).mean(axis=-1)
    planes = labels[np.newaxis] if labels.ndim == 2 else labels
    greys = grey.reshape(planes.shape)
    if excluded is not None:
        keep = ~np.asarray(excluded, bool).reshape(planes.shape)
    else:
        keep = np.ones(planes.shape, bool)
    if per_plane:
        bright = np.stack([_bright_where(p, g, k) for p, g, k in zip(planes, greys, keep)])
    else:
        bright = _bright_where(planes, greys, keep)
    objects, about = objects_of_class(bright.reshape(labels.shape).astype(np.uint8), 1,
                                      spacing)
    about = {**about, "rule": "bright side of an Otsu split of the label means"}
    extras = dict(result.extras)
    if objects is not None:
        extras["objects"] = objects
    return replace(result, extras=extras, metadata={**result.metadata, "objects": about})


def _bright_where(labels: np.ndarray, grey: np.ndarray, keep: np.ndarray) -> np.ndarray:
    bright = np.zeros(labels.shape, bool)
    if keep.any():
        bright[keep] = bright_labels(labels[keep], grey[keep])
    return bright
