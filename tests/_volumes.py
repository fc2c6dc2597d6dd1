"""Small z-stacks of ellipsoid nuclei with a known answer, for the volume tests."""

from __future__ import annotations

import numpy as np

SHAPE = (16, 64, 64)
#: Planes three pixels apart, as on a typical confocal stack.
SPACING = (3.0, 1.0, 1.0)


def ellipsoids(
    nuclei: list[tuple[tuple[float, float, float], tuple[float, float, float]]],
    shape: tuple[int, int, int] = SHAPE,
    spacing: tuple[float, float, float] = SPACING,
) -> np.ndarray:
    """Instance labels (uint16, 1..N in the order given) of ellipsoids given as (centre,
    semi-axes) in physical units (z, y, x); where two overlap, the voxel goes to the one
    it lies deeper inside."""
    grid = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)),
                       indexing="ij")
    depth = np.full(shape, np.inf)
    truth = np.zeros(shape, np.uint16)
    for number, (centre, axes) in enumerate(nuclei, start=1):
        radius = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes, strict=True))
        inside = (radius <= 1.0) & (radius < depth)
        depth[inside] = radius[inside]
        truth[inside] = number
    return truth


def fluorescence(truth: np.ndarray, seed: int = 0, spacing: tuple[float, ...] = SPACING
                 ) -> np.ndarray:
    """A microscope's view of ``truth``: brightness differing per nucleus, a PSF blur
    (longer along z), Poisson and read noise; channels-last float32 ``(Z, Y, X, 1)``."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.0, int(truth.max()))])
    blurred = ndi.gaussian_filter(brightness[truth], (2.0 / spacing[0], 1.0, 1.0))
    photons = rng.poisson(blurred * 50 + 4).astype(np.float32)
    photons += rng.normal(0, 2, truth.shape).astype(np.float32)
    return photons[..., np.newaxis]


def otsu_mask(image: np.ndarray, spacing: tuple[float, ...] = SPACING) -> np.ndarray:
    """Otsu's foreground of a ``(Z, Y, X, 1)`` stack smoothed by one pixel's width."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(image[..., 0], tuple(1.0 / s for s in spacing))
    return smooth > threshold_otsu(smooth)
