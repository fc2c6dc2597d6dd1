"""The superpixels that vote on a backprop segmenter's labels, and the vote itself
(no torch at import time)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..base.errors import InputError
from ..preseg import PRESEG_METHODS, method_kwargs
from .params import AUTO_SUPERPIXELS, BackpropParams


def vote_reference(superpixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The reference vote: for each superpixel, the most frequent label of its pixels.

    A loop over ``np.unique(superpixels)`` as in the Kanezaki scripts; a tie goes
    to the lowest label (``np.argmax`` returns the first maximum of the counts).
    """
    superpixels = np.asarray(superpixels).ravel()
    flat = np.asarray(labels).ravel()
    target = flat.copy()
    for sp in np.unique(superpixels):
        inside = np.flatnonzero(superpixels == sp)
        values, counts = np.unique(flat[inside], return_counts=True)
        target[inside] = values[np.argmax(counts)]
    return target.reshape(np.shape(labels))


def vote(superpixels: Any, labels: Any, n_classes: int | None = None) -> Any:
    """The vectorised vote: one 2-D histogram (superpixel x label) and an argmax per row.

    Takes non-negative integer numpy arrays (returns numpy) or torch tensors
    (returns a tensor on the same device). Equal to :func:`vote_reference`,
    ties included.
    """
    import torch

    from .nets import vote_torch

    as_numpy = not isinstance(labels, torch.Tensor)
    lab = torch.as_tensor(np.asarray(labels) if as_numpy else labels).long()
    sp = torch.as_tensor(np.asarray(superpixels) if as_numpy else superpixels).long()
    sp = sp.to(lab.device).reshape(-1)
    flat = lab.reshape(-1)
    if flat.numel() == 0:
        return labels
    if int(sp.min()) < 0 or int(flat.min()) < 0:
        raise InputError("Superpixels and labels must be non-negative integers.")
    if sp.numel() != flat.numel():
        raise InputError("Superpixels and labels must have the same number of pixels.")
    classes = int(flat.max()) + 1 if n_classes is None else n_classes
    # Compact superpixel ids so that the histogram has one row per superpixel that exists.
    _, compact = torch.unique(sp, return_inverse=True)
    n_sp = int(compact.max()) + 1
    target = vote_torch(compact, flat, n_sp, classes).reshape(lab.shape)
    return target.numpy().astype(np.asarray(labels).dtype) if as_numpy else target


def superpixel_method(params: BackpropParams) -> str:
    """The presegmentation method that ``params`` stands for ('auto' resolved)."""
    if params.preseg.method == "auto":
        return AUTO_SUPERPIXELS[params.network]
    return params.preseg.method


def plane_superpixels(plane: np.ndarray, params: BackpropParams) -> np.ndarray | None:
    """The superpixels (int32, 1..n) that vote on one normalised plane; None for 'none'.

    The plane is used as it is (not normalised again), so that the planes of a stack,
    normalised together, keep their shared scale.
    """
    method = superpixel_method(params)
    if method == "none":
        return None
    preseg = replace(params.preseg, method=method)
    return PRESEG_METHODS[method](plane, **method_kwargs(preseg))


#: Planes larger than this (pixels) have the superpixels that vote at full size drawn on a
#: copy shrunk by a whole factor: Felzenszwalb's cost per pixel grows with the area (on a
#: photograph enlarged: 2.5 s/MP at 0.25 MP, 3.2 at 1 MP, 4.6 at 4 MP, most of the
#: segmenter's time there), and the vote's outlines move by less than the factor. Measured:
#: 12 BSDS500 photographs enlarged 2x, two seeds, mIoU 0.296 drawn at half size and 0.290 at
#: full size; on a real 2 MP fundus photograph the labels moved less between the two than
#: between two seeds (adjusted Rand 0.63-0.69 against 0.45), but a thin vessel lost a piece
#: and faint specks came back as 2 x 2 blocks on a star field: so only above 2 MP, where
#: a pixel is a smaller part of any structure.
VOTE_SUPERPIXEL_PIXELS = 2_000_000


def vote_superpixels(plane: np.ndarray, params: BackpropParams) -> np.ndarray | None:
    """The superpixels that vote on a full-size plane: :func:`plane_superpixels`, or, on a
    plane over :data:`VOTE_SUPERPIXEL_PIXELS`, those of a copy shrunk by the smallest whole
    factor that brings it under (area-averaged, their smallest size shrunk with the area),
    each pixel repeated back to full size."""
    height, width = plane.shape[:2]
    factor = math.ceil(math.sqrt(height * width / VOTE_SUPERPIXEL_PIXELS))
    if factor <= 1 or min(height, width) < 16 * factor or superpixel_method(params) == "none":
        return plane_superpixels(plane, params)
    small = _shrink(plane, factor, (height // factor, width // factor), None)
    found = plane_superpixels(small, _shrunk_superpixels(params, factor))
    found = np.repeat(np.repeat(found, factor, axis=0), factor, axis=1)
    # The rows and columns that made no whole block take their neighbours' superpixels.
    return np.pad(found, ((0, height - found.shape[0]), (0, width - found.shape[1])), mode="edge")


#: The most a side is shrunk for training, whatever ``train_pixels`` says: beyond it the
#: regions of a large scene vanish from the training copy (measured: a 10,000^2 land-cover
#: mosaic of 128-pixel patches trained on 141^2 pixels, 60x smaller, scored 0.73 against
#: 0.999 for the same scene at 4,000^2).
MAX_SHRINK = 16


def training_pixels(area: int, train_pixels: int | None) -> int | None:
    """Pixels of the training copy of a plane of ``area`` pixels (None: full size)."""
    if train_pixels is None:
        return None
    return max(train_pixels, math.ceil(area / MAX_SHRINK**2))


def training_planes(
    planes: np.ndarray,
    params: BackpropParams,
    normalise: Callable[[np.ndarray], np.ndarray] | None = None,
    pixels: int | None = None,
) -> tuple[np.ndarray, BackpropParams] | None:
    """The planes ``(N, Y, X, C)`` shrunk to about ``params.train_pixels`` pixels each (at
    most :data:`MAX_SHRINK` times per side; or to ``pixels`` exactly when given),
    area-averaged, float32, and the superpixel settings that draw the same superpixels
    there (their smallest size shrunk with the area); None when no shrinking is needed.
    ``normalise``: applied to each band of rows as it is read (the planes as they come
    otherwise), so that a large image is never copied whole as floats.

    Training on the shrunk image and labelling at full size: on real photographs and
    nuclei the labels are as good, for a fraction of the time (each training iteration
    is a forward and backward pass over every pixel it sees). The whole-image and the
    large-image engines both train on this copy, so they find the same regions."""
    height, width = planes.shape[1:3]
    pixels = pixels or training_pixels(height * width, params.train_pixels)
    if pixels is None or height * width <= pixels:
        return None
    factor = (height * width / pixels) ** 0.5
    size = (max(1, round(height / factor)), max(1, round(width / factor)))
    small = np.stack([_shrink(plane, factor, size, normalise) for plane in planes])
    return small, _shrunk_superpixels(params, factor)


def _shrunk_superpixels(params: BackpropParams, factor: float) -> BackpropParams:
    """The superpixel settings that draw the same superpixels on a copy ``factor`` times
    smaller a side: their smallest size shrunk with the area."""
    preseg = replace(params.preseg, min_size=max(2, round(params.preseg.min_size / factor**2)))
    return replace(params, preseg=preseg)


def _shrink(
    plane: np.ndarray, factor: float, size: tuple[int, int],
    normalise: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """One plane ``(Y, X, C)`` averaged over whole blocks of ``int(factor)`` pixels, a band
    of rows at a time, then resized (anti-aliased) to ``size``."""
    from skimage.transform import downscale_local_mean, resize

    block = min(max(1, int(factor)), *plane.shape[:2])
    rows, cols = plane.shape[0] // block * block, plane.shape[1] // block * block
    band = block * max(1, 256 // block)
    parts = []
    for start in range(0, rows, band):
        pixels = plane[start : min(start + band, rows), :cols]
        pixels = normalise(pixels) if normalise is not None else pixels.astype(np.float32)
        parts.append(downscale_local_mean(pixels, (block, block, 1)).astype(np.float32))
    small = np.concatenate(parts)
    if small.shape[:2] != size:
        small = resize(small, size, order=1, anti_aliasing=True, preserve_range=True)
    return small.astype(np.float32)


def training_ignore(
    excluded: np.ndarray | None, planes: np.ndarray, params: BackpropParams,
    pixels: int | None = None,
) -> np.ndarray | None:
    """``(N, h, w)`` bool: the pixels of the training planes that hold no data, from the
    full-size ``excluded`` mask ``(Y, X)`` (every plane) or ``(N, Y, X)``, shrunk as the
    planes are (a training pixel is left out when most of its area is)."""
    if excluded is None:
        return None
    n, height, width = planes.shape[:3]
    mask = np.broadcast_to(excluded, (n, height, width))
    shrunk = training_planes(mask[..., None], params, pixels=pixels)
    if shrunk is None:
        return np.ascontiguousarray(mask)
    return shrunk[0][..., 0] > 0.5

