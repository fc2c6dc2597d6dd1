"""Image layout, dtype and normalisation shared by every engine.

The engines take channels-last arrays: a plane is ``(Y, X, C)``, a stack of
planes (z or t) is ``(N, Y, X, C)``. Drivers turn what the user has into that
form with :func:`as_channels_last`, naming the channel axis explicitly rather
than guessing it.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def as_channels_last(data: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Move ``channel_axis`` last, or add a single channel when it is ``None``.

    Accepts a 2-D plane or a stack of planes (one extra leading axis), with or
    without a channel axis. Raises :class:`InputError` for anything else.
    """
    array = np.asarray(data)
    if channel_axis is None:
        array = array[..., np.newaxis]
    else:
        if not -array.ndim <= channel_axis < array.ndim:
            raise InputError(
                f"The channel axis {channel_axis} does not exist in an image with "
                f"{array.ndim} dimensions (shape {array.shape})."
            )
        array = np.moveaxis(array, channel_axis, -1)
    if array.ndim not in (3, 4):
        layout = "a 2-D plane or a stack of 2-D planes"
        raise InputError(
            f"Expected {layout} (plus an optional channel axis); got shape "
            f"{np.shape(data)} with channel axis {channel_axis}."
        )
    check_image(array)
    return array


def check_rank(image: np.ndarray, opening: str) -> None:
    """Refuse anything but a channels-last plane or stack; the sentence starts with
    ``opening`` (e.g. "The segmenter takes")."""
    if image.ndim not in (3, 4):
        raise InputError(f"{opening} a channels-last plane (Y, X, C) or stack "
                         f"(N, Y, X, C); got shape {image.shape}.")


def check_image(image: np.ndarray) -> None:
    """Refuse empty, tiny, non-numeric and non-finite images in plain words."""
    if image.dtype == bool:
        return
    if not (np.issubdtype(image.dtype, np.number)):
        raise InputError(f"The image must hold numbers; its type is {image.dtype}.")
    if np.iscomplexobj(image):
        raise InputError("The image holds complex numbers; give its magnitude or real part.")
    spatial = image.shape[-3:-1]
    if min(spatial, default=0) < 2:
        raise InputError(f"The image is too small to segment (plane size {spatial}).")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError("The image contains NaN or infinite values; fill or crop them first.")


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Per-channel percentile normalisation of a channels-last image to float32 in [0, 1].

    Percentiles are taken over every axis but the last, so the planes of a stack
    share one scale. A constant channel becomes zeros.
    """
    if not 0.0 <= low < high <= 100.0:
        raise InputError(f"Percentiles must satisfy 0 <= low < high <= 100; got {low}, {high}.")
    if image.dtype == bool:  # a 1-bit picture: percentiles need numbers
        image = image.view(np.uint8)
    flat = image.reshape(-1, image.shape[-1])
    if flat.shape[0] > 1_000_000:
        # Percentiles from a regular subsample: same result to well under 1%, far less work.
        flat = flat[:: flat.shape[0] // 1_000_000 + 1]
    lo, hi = np.percentile(flat, [low, high], axis=0).astype(np.float32)
    return scale_to_unit(image, lo, hi)


def scale_to_unit(image: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``image`` (channels last) mapped per channel from ``low``..``high`` (float32, one
    value a channel) to float32 in [0, 1], clipped; a channel with ``high <= low`` (flat)
    becomes zeros. :func:`normalize` with levels found elsewhere (a subsample, crop by crop)."""
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    out = (image.astype(np.float32) - low) / span
    np.clip(out, 0.0, 1.0, out=out)
    out[..., high <= low] = 0.0
    return out


#: A voxel's sides (z, y, x) in any one unit.
Spacing = tuple[float, float, float]


def relative_spacing(spacing: Spacing) -> np.ndarray:
    """The voxel sides divided by the smallest one: only the ratios matter to a
    segmentation, so micrometres, nanometres or plain ratios give the same result."""
    sides = np.asarray(spacing, dtype=np.float64)
    if sides.shape != (3,) or not np.all(np.isfinite(sides)) or np.any(sides <= 0):
        raise InputError(
            f"The voxel spacing needs three positive numbers (z, y, x); got {spacing}."
        )
    return sides / sides.min()


def label_dtype(max_label: int) -> type[np.unsignedinteger]:
    """The smallest of uint8/uint16/uint32 that holds ``max_label``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return dtype
    raise InputError(f"Too many labels ({max_label}) for a label image.")


def relabel_sequential(labels: np.ndarray, min_dtype: type = np.uint16) -> np.ndarray:
    """Relabel to 1..K in order of first appearance (0 stays 0) with a compact dtype.

    The dtype is at least ``min_dtype`` so that painting new labels on the result
    does not overflow immediately.
    """
    flat = labels.ravel()
    if flat.size > _BAND and labels.dtype.kind in "ui":
        top = int(flat.max())
        if int(flat.min()) >= 0 and top < _LUT_MOST:
            return _relabel_in_bands(flat, top, min_dtype).reshape(labels.shape)
    values, first = np.unique(flat, return_index=True)
    order = values[np.argsort(first)]
    order = order[order != 0]
    lut_keys = np.concatenate([[0], order]) if (values == 0).any() else order
    new_ids = np.arange(len(lut_keys)) + (0 if (values == 0).any() else 1)
    dtype = np.promote_types(label_dtype(int(new_ids.max(initial=0))), min_dtype)
    index = np.searchsorted(values, flat)
    lut = np.empty(len(values), dtype=dtype)
    lut[np.searchsorted(values, lut_keys)] = new_ids
    return lut[index].reshape(labels.shape)


#: Pixels relabelled at a time, and the largest id relabelled through a lookup table: a
#: large label image is then never sorted whole (which needs several int64 copies of it).
_BAND = 4_000_000
_LUT_MOST = 2**26


def _relabel_in_bands(flat: np.ndarray, top: int, min_dtype: type) -> np.ndarray:
    """:func:`relabel_sequential` of non-negative ids up to ``top``, band by band: each
    band's new ids in order of first appearance, then one lookup table for all bands."""
    seen = np.zeros(top + 1, bool)
    seen[0] = True  # 0 stays 0
    found = []
    for start in range(0, flat.size, _BAND):
        values, first = np.unique(flat[start : start + _BAND], return_index=True)
        new = ~seen[values]
        found.append(values[new][np.argsort(first[new])])
        seen[values] = True
    order = np.concatenate(found)
    dtype = np.promote_types(label_dtype(len(order)), min_dtype)
    lut = np.zeros(top + 1, dtype)
    lut[order] = np.arange(1, len(order) + 1)
    out = np.empty(flat.size, dtype)
    for start in range(0, flat.size, _BAND):
        out[start : start + _BAND] = lut[flat[start : start + _BAND]]
    return out


def offset_per_plane(stack: np.ndarray) -> np.ndarray:
    """Per-plane ids made unique across the stack by adding the previous planes' maxima."""
    out = stack.astype(np.int64)
    offset = 0
    for index in range(len(out)):
        plane_max = int(out[index].max())
        out[index] += offset * (out[index] > 0)
        offset += plane_max
    return out


def mean_colour(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each label's pixels painted with the label's mean colour (channels-last in, same out)."""
    flat_labels = labels.reshape(-1)
    flat = image.reshape(flat_labels.shape[0], -1).astype(np.float64)
    n = int(flat_labels.max()) + 1
    counts = np.bincount(flat_labels, minlength=n).astype(np.float64)
    means = (
        np.stack(
            [
                np.bincount(flat_labels, weights=flat[:, c], minlength=n)
                for c in range(flat.shape[1])
            ],
            axis=1,
        )
        / np.maximum(counts, 1)[:, None]
    )
    return means[flat_labels].reshape(image.shape).astype(image.dtype, copy=False)


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """A channels-last plane as uint8 RGB for pictures: grey repeated, 2 channels padded.

    8-bit colour pictures are kept as they are; anything else is contrast-stretched.
    """
    if image.dtype == np.uint8 and image.shape[-1] in (3, 4):
        return image[..., :3].copy()
    scaled = (normalize(image, 0.5, 99.5) * 255).astype(np.uint8)
    channels = scaled.shape[-1]
    if channels == 1:
        return np.repeat(scaled, 3, axis=-1)
    if channels == 2:
        return np.concatenate([scaled, np.zeros_like(scaled[..., :1])], axis=-1)
    return scaled[..., :3]


#: How intensities are scaled to [0, 1]: by the type's range, by the 1st-99th
#: percentiles, by type for 8-bit images and by percentiles otherwise, or ``stretch``:
#: the 1st-99.8th percentiles (StarDist's default), so that nuclei covering a thousandth
#: of a field are not cut to the level of the noise's brightest pixels.
INTENSITY_CHOICES = ("auto", "dtype", "percentile", "stretch")
#: Percentiles of the ``stretch`` mode.
STRETCH_PERCENTILES = (1.0, 99.8)


def neighbour_pixel_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the two pixels of every pair of 4-neighbours of a plane ``(Y, X)``
    whose labels differ (the horizontal pairs, then the vertical ones)."""
    index = np.arange(labels.size).reshape(labels.shape)
    first = np.concatenate([index[:, :-1].ravel(), index[:-1].ravel()])
    second = np.concatenate([index[:, 1:].ravel(), index[1:].ravel()])
    flat = labels.ravel()
    across = flat[first] != flat[second]
    return first[across], second[across]


def gradient_magnitude(features: np.ndarray) -> np.ndarray:
    """The Sobel gradient magnitude of a plane ``(Y, X, C)``, summed in quadrature over the
    channels."""
    from skimage.filters import sobel

    return np.sqrt(sum(sobel(features[..., c]) ** 2 for c in range(features.shape[-1])))


def linked_groups(first: np.ndarray, second: np.ndarray, size: int) -> np.ndarray:
    """The group of each id 0..size-1 when id ``first[i]`` is linked to ``second[i]``
    (connected components of the links; unlinked ids are groups of their own)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(size, size))
    return connected_components(graph, directed=False)[1]


def intensity_range(
    image: np.ndarray, mode: str = "auto", levels: tuple[float, float] = (1.0, 99.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) that map intensities to [0, 1], from at most ~1 M pixels.

    ``image`` is channels-last (any number of leading axes); nothing the size of the
    image is allocated. ``levels``: the percentiles of the ``percentile`` mode.
    """
    if mode not in INTENSITY_CHOICES:
        raise InputError(f"intensity must be one of {', '.join(INTENSITY_CHOICES)}.")
    channels = image.shape[-1]
    dtype = image.dtype
    if mode == "auto":
        mode = "dtype" if dtype in (np.uint8, np.bool_) else "percentile"
    if mode == "dtype":
        if dtype == np.bool_:
            high = 1.0
        elif np.issubdtype(dtype, np.integer):
            high = float(np.iinfo(dtype).max)
        else:
            high = 1.0
        low = float(np.iinfo(dtype).min) if np.issubdtype(dtype, np.signedinteger) else 0.0
        return (np.full(channels, low, np.float32), np.full(channels, high, np.float32))
    pixels = int(np.prod(image.shape[:-1]))
    step = max(1, int(math.sqrt(pixels / 1_000_000)))
    sample = np.asarray(image[..., ::step, ::step, :]).reshape(-1, channels)
    levels = STRETCH_PERCENTILES if mode == "stretch" else levels
    low, high = np.percentile(sample.astype(np.float32), levels, axis=0)
    return low.astype(np.float32), high.astype(np.float32)
