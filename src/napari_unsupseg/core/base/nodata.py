"""Pixels that carry no data (a scene's nodata border, outside an area of interest).

The engines take images, not masks, so excluded pixels are kept out of the work around
them: :func:`fill_excluded` gives them a value that starts no region of its own (each
channel's median over the valid pixels), and :func:`clear_excluded` gives them label 0
afterwards, so no label and no polygon lies on them.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .images import relabel_sequential


def nodata_mask(image: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """``(Y, X)`` True where every channel (and plane) of a channels-last image ``(Y, X, C)``
    or stack ``(N, Y, X, C)`` equals ``nodata``; None when nothing is nodata.

    A pixel with some valid band is kept, as GDAL's dataset mask does."""
    if nodata is None:
        return None
    image = np.asarray(image)
    equal = np.isnan(image) if np.isnan(nodata) else image == nodata
    axes = tuple(a for a in range(image.ndim) if a not in (image.ndim - 3, image.ndim - 2))
    mask = equal.all(axis=axes)
    return mask if mask.any() else None


def fill_excluded(
    image: np.ndarray, excluded: np.ndarray | None, *, in_place: bool = False
) -> np.ndarray:
    """``image`` whose ``excluded`` pixels hold each channel's median over the valid ones:
    a flat value inside the image's range, so neither the engines' normalisation nor their
    regions are pulled toward the fill. A copy, unless ``in_place`` (an image just read,
    which nobody else holds: a large scene is then not held twice). The median is taken
    over a regular subsample of at most ~1 M pixels (no image-sized temporary)."""
    if excluded is None:
        return image
    image = np.asarray(image)
    step = max(1, int((excluded.size / 1_000_000) ** 0.5))
    grid = (..., slice(None, None, step), slice(None, None, step), slice(None))
    valid = image[grid][..., ~excluded[::step, ::step], :]  # (..., n_valid, C)
    if valid.shape[-2] == 0:
        valid = image[..., ~excluded, :]  # a thin valid part the subsample missed
    if valid.shape[-2] == 0:
        raise InputError("Every pixel of the image is nodata or outside the area of interest.")
    median = np.median(valid.reshape(-1, image.shape[-1]), axis=0)
    filled = image if in_place else image.copy()
    filled[..., excluded, :] = median.astype(image.dtype)
    return filled


def clear_excluded(
    labels: np.ndarray, excluded: np.ndarray | None, renumber: bool
) -> np.ndarray:
    """Labels set to 0 on ``excluded`` pixels; with ``renumber``, the labels left are
    renumbered 1..K (for engines whose ids carry no meaning of their own; a class id
    from a model or a scribble is kept as it is)."""
    if excluded is None:
        return labels
    labels = np.array(labels, copy=True)
    labels[..., excluded] = 0
    if renumber:  # as the engines number their labels, in the labels' own type
        labels = relabel_sequential(labels, labels.dtype)
    return labels
