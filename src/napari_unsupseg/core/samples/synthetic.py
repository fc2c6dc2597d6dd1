"""Synthetic images with exact ground truth, for quality tests and benchmarks.

- :func:`textured_mosaic`: 6-8 regions with irregular boundaries, each with its own
  colour and texture (flat, stripes, checker, dots, blotches, fine noise), under
  Gaussian noise. Strong textures make single pixels of one region look like
  another region's colour: the case where a segmenter splits a region in two.
- :func:`nuclei`: bright blobs of varied size and brightness on a dark, noisy,
  unevenly lit background, one channel, as uint8 or uint16 (12-bit range).

Every image comes from a generator seed; a test tunes nothing on these, and the
benchmark keeps its tuning seeds apart from the ones it reports (``TUNE_SEEDS``,
``HELD_OUT_SEEDS``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

TEXTURES = ("flat", "stripes", "checker", "dots", "blotchy", "noise")
#: Generator seeds used while choosing the defaults, and seeds never looked at then.
TUNE_SEEDS = (0, 1, 2, 3)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104, 105)


def _texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A texture in about [-1, 1] (zero mean) of the given kind, with random scale/angle."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    if kind == "flat":
        return np.zeros(shape, np.float32)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5.0, 9.0)
        phase = xx * np.cos(angle) + yy * np.sin(angle)
        return np.sin(phase * 2 * np.pi / period).astype(np.float32)
    if kind == "checker":
        half = rng.uniform(3.0, 5.0)
        checks = np.sin(xx * np.pi / half) * np.sin(yy * np.pi / half)
        return np.sign(checks).astype(np.float32)
    if kind == "dots":
        spacing = rng.uniform(7.0, 10.0)
        radius = rng.uniform(1.5, 2.5)
        dy = (yy % spacing) - spacing / 2
        dx = (xx % spacing) - spacing / 2
        dots = (np.hypot(dy, dx) <= radius).astype(np.float32)
        return 2 * (dots - dots.mean())
    if kind == "blotchy":
        field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.5)
        return np.tanh(2.5 * field / (field.std() + 1e-6))
    if kind == "noise":
        return np.clip(rng.standard_normal(shape).astype(np.float32) / 1.5, -1, 1)
    raise ValueError(f"unknown texture {kind!r}; choose from {', '.join(TEXTURES)}")


def _distinct_colours(rng: np.random.Generator, n: int, min_gap: float) -> np.ndarray:
    """``n`` RGB colours in [0.15, 0.85] at least ``min_gap`` apart (Euclidean)."""
    colours: list[np.ndarray] = []
    while len(colours) < n:
        c = rng.uniform(0.15, 0.85, 3)
        if all(np.linalg.norm(c - d) >= min_gap for d in colours):
            colours.append(c)
    return np.array(colours, np.float32)


def _warped_voronoi(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Regions 1..n: Voronoi cells of spread seeds, with boundaries bent by smooth noise."""
    while True:
        points = rng.uniform(0.08, 0.92, (n, 2)) * size
        gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1))
        np.fill_diagonal(gaps, np.inf)
        if gaps.min() > size / (1.25 * np.sqrt(n)):
            break
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    warp = [ndi.gaussian_filter(rng.standard_normal((size, size)), size / 10) for _ in range(2)]
    warp = [w / (np.abs(w).max() + 1e-9) * size * 0.06 for w in warp]
    wy, wx = yy + warp[0], xx + warp[1]
    dist = np.stack([np.hypot(wy - py, wx - px) for py, px in points])
    return (np.argmin(dist, axis=0) + 1).astype(np.int32)


def textured_mosaic(
    size: int = 128, n_regions: int | None = None, seed: int = 0, noise: float = 0.04
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` RGB float32 image in [0, 1] and its regions (int32, 1..n).

    ``n_regions`` (default: 6, 7 or 8 drawn from the seed) regions; every texture
    kind occurs at least once when there are six regions or more.
    """
    rng = np.random.default_rng(seed)
    n = int(n_regions if n_regions is not None else rng.integers(6, 9))
    truth = _warped_voronoi(rng, n, size)
    kinds = list(TEXTURES) + list(rng.choice(TEXTURES, max(0, n - len(TEXTURES))))
    kinds = [kinds[i] for i in rng.permutation(len(kinds))][:n]
    colours = _distinct_colours(rng, n, min_gap=0.3)
    image = np.zeros((size, size, 3), np.float32)
    for k in range(n):
        inside = truth == k + 1
        texture = _texture(kinds[k], (size, size), rng)[inside][:, None]
        amplitude = rng.uniform(0.12, 0.2)
        # Textures vary mostly in brightness, a little in hue.
        tint = 1.0 + rng.uniform(-0.3, 0.3, 3)
        image[inside] = colours[k] + amplitude * texture * tint
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0), truth


def nuclei(
    size: int = 128, n_nuclei: int | None = None, seed: int = 0, bits: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """A one-channel fluorescence-like image ``(size, size, 1)`` and its nuclei (int32, 0 = none).

    Nuclei are ellipses of radius 4-13 px and brightness 35-100% of the brightest,
    blurred by the optics, on a dim, unevenly lit background with Gaussian and
    shot-like noise. ``bits``: 8 (uint8) or 16 (uint16 holding 12-bit values, as
    most cameras write them).
    """
    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    rng = np.random.default_rng(seed)
    n_wanted = int(n_nuclei if n_nuclei is not None else rng.integers(8, 16))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    truth = np.zeros((size, size), np.int32)
    signal = np.zeros((size, size), np.float32)
    placed = 0
    for _ in range(n_wanted * 60):
        if placed == n_wanted:
            break
        r = rng.uniform(4.0, 13.0)
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        a, b = r * rng.uniform(0.75, 1.25), r * rng.uniform(0.75, 1.25)
        angle = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        halo = (u / (a + 3)) ** 2 + (v / (b + 3)) ** 2 <= 1
        if (truth[halo] > 0).any():
            continue
        placed += 1
        truth[inside] = placed
        # Brighter towards the centre, with some chromatin-like texture.
        body = 1.0 - 0.25 * ((u / a) ** 2 + (v / b) ** 2)
        grain = 1.0 + 0.08 * ndi.gaussian_filter(rng.standard_normal((size, size)), 1.0)
        signal[inside] = (rng.uniform(0.35, 1.0) * body * grain)[inside]
    signal = ndi.gaussian_filter(signal, rng.uniform(0.8, 1.4))
    light = 1.0 + 0.3 * (xx / size - 0.5) * rng.choice([-1, 1])
    background = 0.08 * light
    image = (background + signal * rng.uniform(0.7, 0.9)) * light
    image = image + rng.normal(0, 0.025, image.shape) + rng.normal(0, 0.02, image.shape) * np.sqrt(
        np.clip(image, 0, None)
    )
    top = 255 if bits == 8 else 4095
    dtype = np.uint8 if bits == 8 else np.uint16
    out = np.clip(np.round(image * top), 0, top).astype(dtype)
    return out[..., np.newaxis], truth
