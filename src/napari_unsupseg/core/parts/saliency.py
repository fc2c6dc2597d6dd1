"""Foreground estimated from the images alone, for part discovery without a mask.

The *boundary prior* of salient-object detection: the image border shows
background, so a pixel whose colour is unlike anything on the border is object.
For each image:

1. each pixel's colour, lightly smoothed (texture and edges are left out on
   purpose: both spread an object's halo over the background around it);
2. the border pixels' colours are summarised by a few k-means clusters
   (a background may have several colours); each pixel's distance to the
   nearest cluster, in units of that cluster's spread, is its dissimilarity;
3. the dissimilarity is thresholded at Otsu's level (never within 3 spreads of a
   border colour), the mask is closed, its holes filled, opened, and only the
   connected pieces of at least a fifth of the largest one are kept (specks on
   the background go, several objects stay).

The part network's background channel is pulled onto the mask, the texture
features are measured inside it, and the labels' background is read from it.
An object whose colour matches its background, or that fills the border, defeats
the prior: give a mask or a brightness threshold then. Numpy / scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .features import kmeans


def _descriptors(image: np.ndarray, smooth: float) -> np.ndarray:
    """``(H, W, C)`` in [0, 1] -> the colour smoothed over ``smooth`` pixels (float64)."""
    return ndi.gaussian_filter(image.astype(np.float64), (smooth, smooth, 0))


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(centres[int(np.argmax(between[:-1]))])


def border_saliency(image: np.ndarray, *, border: int | None = None,
                    clusters: int = 3, seed: int = 0) -> np.ndarray:
    """Foreground mask ``(H, W)`` float32 (0 or 1) of one channels-last image in [0, 1]."""
    height, width = image.shape[:2]
    smooth = max(0.5, min(height, width) / 256)
    border = border or max(2, min(height, width) // 32)
    desc = _descriptors(image, smooth)
    edge = np.zeros((height, width), bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    points = desc[edge]
    rng = np.random.default_rng(seed)
    centres = kmeans(points, clusters, rng, iterations=10)
    d2 = ((points[:, None] - centres[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    # Each cluster's spread: its members' mean squared distance (floored: a flat border).
    spread = np.array([d2[nearest == j, j].mean() if (nearest == j).any() else 0.0
                       for j in range(len(centres))])
    spread = np.maximum(spread, 1e-3)
    flat = desc.reshape(-1, desc.shape[-1])
    dist = np.sqrt((((flat[:, None] - centres[None]) ** 2).sum(-1) / spread[None]).min(1))
    dist = dist.reshape(height, width)
    # Otsu's level on the log distance, but never inside 3 spreads of a border cluster.
    level = np.log1p(dist)
    mask = level > max(_otsu(level), np.log1p(3.0))
    radius = max(1, round(min(height, width) / 64))
    mask = ndi.binary_closing(mask, structure=np.ones((2 * radius + 1,) * 2), border_value=0)
    mask = ndi.binary_fill_holes(mask)
    mask = ndi.binary_opening(mask, structure=np.ones((2 * radius + 1,) * 2))
    pieces, count = ndi.label(mask)
    if count > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        keep = np.flatnonzero(sizes >= sizes.max() / 5) + 1
        mask = np.isin(pieces, keep)
    return mask.astype(np.float32)


def estimate_saliency(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Foreground masks ``(N, H, W)`` float32 of channels-last images ``(N, H, W, C)``
    in [0, 1], one :func:`border_saliency` each."""
    return np.stack([border_saliency(plane, seed=seed) for plane in images])


def foreground_iou(found: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two foreground masks (non-zero = object)."""
    found, truth = np.asarray(found) != 0, np.asarray(truth) != 0
    union = (found | truth).sum()
    return float((found & truth).sum() / union) if union else 1.0
