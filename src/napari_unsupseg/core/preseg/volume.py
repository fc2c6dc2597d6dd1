"""Presegmentation of a z-stack as one volume: supervoxels that span planes.

Each method takes a channels-last volume ``(Z, Y, X, C)`` and the voxel ``spacing``
``(z, y, x)`` and returns **int32 labels numbered 1..n** (no 0). Only the ratios of the
spacing matter: it is divided by its smallest value, so distances, ``sigma`` and the
seed grid are measured in units of the finest voxel side (where planes lie three pixels
apart, seeds lie a third as many planes apart along z as pixels apart along x).

Colour is measured on the common 0..100 scale of :mod:`.methods`, so one
``compactness`` means the same as in plane-by-plane mode.
"""

from __future__ import annotations

import numpy as np

from ..base.errors import InputError
from ..base.images import Spacing, check_image, normalize, relative_spacing
from .methods import colour_features, from_one, slic_of_features


def unit_volume(volume: np.ndarray) -> np.ndarray:
    """The volume as float in [0, 1]: kept when it already is, else percentile-normalised."""
    if volume.ndim != 4:
        raise InputError(
            f"Volume presegmentation takes a channels-last volume (Z, Y, X, C); got shape "
            f"{volume.shape}."
        )
    check_image(volume)
    if np.issubdtype(volume.dtype, np.floating) and volume.min() >= 0.0 and volume.max() <= 1.0:
        return volume.astype(np.float32, copy=False)
    return normalize(volume)


def slic_volume(
    volume: np.ndarray,
    *,
    spacing: Spacing = (1.0, 1.0, 1.0),
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """SLIC supervoxels (scikit-image's 3-D SLIC with the voxel spacing); any channel count."""
    return slic_of_features(colour_features(unit_volume(volume)), n_segments=n_segments,
                            compactness=compactness, sigma=sigma,
                            spacing=relative_spacing(spacing))


def watershed_volume(
    volume: np.ndarray,
    *,
    spacing: Spacing = (1.0, 1.0, 1.0),
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """Compact watershed of the 3-D colour gradient from a grid of ``n_segments`` seeds.

    The grid is regular in physical units (fewer seeds along a coarsely sampled axis),
    the smoothing is ``sigma`` finest voxels along every axis, and each axis's Sobel
    derivative is divided by its spacing, so the gradient is per unit length.
    """
    from scipy import ndimage as ndi
    from skimage.filters import sobel
    from skimage.segmentation import watershed as _watershed

    sides = relative_spacing(spacing)
    features = colour_features(unit_volume(volume))
    if sigma > 0:
        features = ndi.gaussian_filter(features, sigma=(*(sigma / sides), 0))
    squared = np.zeros(features.shape[:3], np.float32)
    for channel in range(features.shape[-1]):
        for axis in range(3):
            squared += (sobel(features[..., channel], axis=axis) / sides[axis]) ** 2
    markers, step = physical_grid_seeds(features.shape[:3], sides, n_segments)
    # scikit-image's compactness measures distance in voxels, not in physical units: on an
    # anisotropic volume the shapes lean towards the coarse axis, the seed grid keeps them
    # balanced.
    labels = _watershed(np.sqrt(squared), markers=markers, compactness=compactness / step)
    return from_one(labels)


def physical_grid_seeds(
    shape: tuple[int, ...], sides: np.ndarray, n_segments: int
) -> tuple[np.ndarray, float]:
    """About ``n_segments`` seeds (labels 1..n) on a grid regular in physical units, and
    the grid step in finest-voxel units."""
    extent = np.asarray(shape, np.float64) * sides
    step = float(np.prod(extent) / max(int(n_segments), 1)) ** (1.0 / len(shape))
    markers = np.zeros(shape, np.int32)
    centres = []
    for size, length in zip(shape, extent, strict=True):
        count = int(np.clip(round(length / step), 1, size))
        centres.append(((np.arange(count) + 0.5) * size / count).astype(int))
    grid = np.meshgrid(*centres, indexing="ij")
    markers[tuple(g.ravel() for g in grid)] = np.arange(1, grid[0].size + 1)
    return markers, step
