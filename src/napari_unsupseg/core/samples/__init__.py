"""Sample images made or shipped by the package (nothing is downloaded).

- :func:`coffee`: an RGB photograph (CC0, shipped as a small JPEG).
- :func:`mosaic`: a synthetic mosaic of regions with distinct colour and texture,
  plus its exact ground truth: the known answer for segmentation tests.
- :func:`cells`: a 2-channel 16-bit fluorescence-like image (nuclei, cytoplasm)
  with its ground-truth nuclei, like a confocal plane.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from scipy import ndimage as ndi

SAMPLE_NAMES = ("coffee", "mosaic", "cells")


def coffee() -> np.ndarray:
    """A 256x384 RGB uint8 photograph of a coffee cup (scikit-image's, CC0)."""
    from PIL import Image

    with resources.files("napari_unsupseg.data").joinpath("coffee.jpg").open("rb") as fh:
        return np.asarray(Image.open(fh).convert("RGB"))


# Distinct colours (RGB in [0, 1]) and textures for the mosaic's classes.
_COLOURS = np.array(
    [
        [0.85, 0.2, 0.2],
        [0.2, 0.7, 0.25],
        [0.2, 0.3, 0.85],
        [0.9, 0.8, 0.2],
        [0.6, 0.3, 0.7],
        [0.2, 0.75, 0.8],
        [0.95, 0.55, 0.2],
        [0.45, 0.45, 0.45],
    ]
)


def _texture(kind: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A zero-mean texture in about [-1, 1]: flat, stripes, checks, speckle and so on."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    kind %= 4
    if kind == 0:
        return np.zeros(shape, np.float32)
    if kind == 1:
        return np.sin(xx * 2 * np.pi / 6.0).astype(np.float32)
    if kind == 2:
        return np.sign(np.sin(xx * np.pi / 4) * np.sin(yy * np.pi / 4)).astype(np.float32)
    speckle = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
    return speckle / (np.abs(speckle).max() + 1e-6)


def _spread_points(rng: np.random.Generator, n: int, size: int, min_gap: float) -> list[np.ndarray]:
    """``n`` random points at least ``min_gap`` apart (so every Voronoi cell is a sizeable blob).

    A layout that leaves no room is abandoned and drawn again.
    """
    while True:
        points: list[np.ndarray] = []
        for _ in range(10_000):
            p = rng.uniform(0.1, 0.9, 2) * size
            if all(np.hypot(*(p - q)) > min_gap for q in points):
                points.append(p)
                if len(points) == n:
                    return points


def mosaic(
    size: int = 128, n_regions: int = 6, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` RGB float32 mosaic and its ground-truth regions (int32, 1..n).

    Regions are the Voronoi cells of random seeds (smooth, blob-like boundaries),
    each with its own colour and texture, under Gaussian noise.
    """
    if not 2 <= n_regions <= len(_COLOURS):
        raise ValueError(f"n_regions must be between 2 and {len(_COLOURS)}")
    rng = np.random.default_rng(seed)
    points = _spread_points(rng, n_regions, size, min_gap=size / (1.2 * np.sqrt(n_regions)))
    yy, xx = np.mgrid[:size, :size]
    dist = np.stack([np.hypot(yy - py, xx - px) for py, px in points])
    truth = (np.argmin(dist, axis=0) + 1).astype(np.int32)
    image = np.zeros((size, size, 3), np.float32)
    for k in range(1, n_regions + 1):
        inside = truth == k
        texture = _texture(k - 1, (size, size), rng)[inside][:, None]
        image[inside] = _COLOURS[k - 1] + 0.12 * texture
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0), truth


def cells(size: int = 256, n_cells: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2-channel uint16 image ``(2, size, size)`` (nuclei, cytoplasm) and its nuclei (int32).

    Channel-first, as confocal files usually are: pass ``channel_axis=0``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    nuclei = np.zeros((size, size), np.int32)
    cytoplasm = np.zeros((size, size), np.float32)
    placed = 0
    for _ in range(n_cells * 50):
        if placed == n_cells:
            break
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(0.035, 0.06) * size
        a, b = r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)
        angle = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        nucleus = (u / a) ** 2 + (v / b) ** 2 <= 1
        cell = (u / (2.2 * a)) ** 2 + (v / (2.2 * b)) ** 2 <= 1
        if (nuclei[cell] > 0).any():
            continue
        placed += 1
        nuclei[nucleus] = placed
        cytoplasm[cell & ~nucleus] = rng.uniform(0.4, 0.7)
    nuclear = (nuclei > 0) * rng.uniform(0.6, 1.0, n_cells + 1)[nuclei]
    channels = np.stack(
        [ndi.gaussian_filter(nuclear.astype(np.float32), 1.5), ndi.gaussian_filter(cytoplasm, 2.0)]
    )
    channels = channels * 3000 + 300 + rng.normal(0, 60, channels.shape)
    return np.clip(channels, 0, 65535).astype(np.uint16), nuclei


def load(name: str) -> np.ndarray:
    """A sample image by name (the ground truth, where there is one, is dropped)."""
    if name == "coffee":
        return coffee()
    if name == "mosaic":
        return mosaic()[0]
    if name == "cells":
        return cells()[0]
    raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
