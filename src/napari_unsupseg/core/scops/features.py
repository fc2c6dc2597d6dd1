"""Feature maps that the semantic-consistency loss reconstructs.

Without pretrained weights we use :func:`texture_features`: rotation-invariant
filter energies of brightness at three scales (gradient magnitude, Laplacian of
Gaussian, Hessian anisotropy), each averaged over a window and divided by the
local mean brightness. They describe local texture, not colour, and do not change
when an object turns, so a part that looks the same in every image gets the same
features even when its colour changes. They know nothing about object
categories: with a pretrained VGG-19 or ResNet (:func:`network_features`) parts
follow semantics learnt on ImageNet instead.

Every feature map is scaled so that each channel has unit root-mean-square over
the collection (over the foreground when a saliency mask is given) and then
divided by ``sqrt(D)``, so a typical pixel's feature vector has about unit length
whatever the extractor.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage as ndi

TEXTURE_SCALES = (1.0, 2.0, 4.0)


def texture_features(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float image in [0, 1] -> ``(3 * len(TEXTURE_SCALES), H, W)`` float32."""
    brightness = image.astype(np.float64).mean(axis=-1)
    out = []
    for sigma in TEXTURE_SCALES:
        window = 2.0 * sigma + 1.0
        local_mean = ndi.gaussian_filter(brightness, window) + 0.05
        gradient = ndi.gaussian_gradient_magnitude(brightness, sigma) * sigma
        blob = np.abs(ndi.gaussian_laplace(brightness, sigma)) * sigma**2
        hyy = ndi.gaussian_filter(brightness, sigma, order=(2, 0))
        hxx = ndi.gaussian_filter(brightness, sigma, order=(0, 2))
        hxy = ndi.gaussian_filter(brightness, sigma, order=(1, 1))
        anisotropy = np.sqrt((hxx - hyy) ** 2 + 4 * hxy**2) * sigma**2
        for energy in (gradient, blob, anisotropy):
            out.append(ndi.gaussian_filter(energy, window) / local_mean)
    return np.stack(out).astype(np.float32)


def kmeans(
    points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25
) -> np.ndarray:
    """Plain k-means (k-means++ start) on ``(P, D)`` points; returns ``(k, D)`` centres."""
    k = min(k, len(points))
    centres = [points[rng.integers(len(points))]]
    d2 = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        pick = rng.choice(len(points), p=d2 / total) if total > 0 else rng.integers(len(points))
        centres.append(points[pick])
        d2 = np.minimum(d2, ((points - points[pick]) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(iterations):
        nearest = _sq_distances(points, c).argmin(1)
        for j in range(k):
            members = points[nearest == j]
            if len(members):
                c[j] = members.mean(0)
    return c


def _sq_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.maximum(
        (points**2).sum(1)[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None], 0.0
    )


def texture_words(
    energies: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator,
    n_words: int = 16, max_samples: int = 20000,
) -> np.ndarray:
    """Texture energies ``(N, E, H, W)`` -> soft assignments to ``n_words`` texture words.

    The energies are log-compressed and standardised over the collection, then
    clustered with k-means on a sample of (foreground) pixels; each pixel gets a
    softmax over its negative squared distances to the words (temperature: the mean
    squared distance to the nearest word). Returns ``(N, n_words, H, W)`` float32,
    non-negative and summing to one per pixel: sparse features whose part bases
    can be orthogonal, as the semantic-consistency loss wants.
    """
    n, e, h, w = energies.shape
    flat = np.log1p(np.maximum(energies, 0)).transpose(0, 2, 3, 1).reshape(-1, e).astype(np.float64)
    keep = np.ones(len(flat), bool) if mask is None else mask.reshape(-1) > 0.5
    if keep.sum() < n_words:
        keep = np.ones(len(flat), bool)
    chosen = flat[keep]
    mean, std = chosen.mean(0), chosen.std(0) + 1e-9
    flat = (flat - mean) / std
    chosen = flat[keep]
    if len(chosen) > max_samples:
        chosen = chosen[rng.choice(len(chosen), max_samples, replace=False)]
    words = kmeans(chosen, n_words, rng)
    temperature = max(float(_sq_distances(chosen, words).min(1).mean()), 1e-6)
    d2 = _sq_distances(flat, words) / temperature
    soft = np.exp(-(d2 - d2.min(1, keepdims=True)))
    soft /= soft.sum(1, keepdims=True)
    return soft.reshape(n, h, w, -1).transpose(0, 3, 1, 2).astype(np.float32)


def scale_features(features: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Unit RMS per channel over the collection (``mask`` selects pixels), then ``/ sqrt(D)``.

    ``features``: ``(N, D, H, W)``; ``mask``: ``(N, 1, H, W)`` weights or None.
    """
    features = features.astype(np.float32, copy=False)
    squares = features.astype(np.float64) ** 2
    if mask is not None and mask.sum() > 0:
        rms = np.sqrt((squares * mask).sum(axis=(0, 2, 3)) / mask.sum())
    else:
        rms = np.sqrt(squares.mean(axis=(0, 2, 3)))
    rms = np.where(rms > 1e-12, rms, 1.0)
    return (features / rms[None, :, None, None] / np.sqrt(features.shape[1])).astype(np.float32)


def network_features(module, images, chunk: int = 4) -> Iterator[tuple[int, object]]:
    """Run a frozen pretrained extractor over ``images`` ``(N, C, H, W)`` (torch, [0, 1]).

    Yields ``(done, features_so_far_or_None)``; the last item holds the whole
    ``(N, D, h, w)`` tensor. Grey images are repeated to RGB, two channels padded
    with zeros, more than three cut to the first three; inputs are enlarged so the
    stride-16 feature map has at least a quarter of the working resolution (and
    the input at least 224 pixels on its longer side), then ImageNet-normalised.
    """
    import torch
    import torch.nn.functional as F

    from .nets import IMAGENET_MEAN, IMAGENET_STD

    n, channels, height, width = images.shape
    if channels == 1:
        images = images.repeat(1, 3, 1, 1)
    elif channels == 2:
        images = torch.cat([images, torch.zeros_like(images[:, :1])], dim=1)
    else:
        images = images[:, :3]
    longer = max(height, width)
    factor = max(4.0 * 16 / 16, 224 / longer)  # stride 16 -> features at >= 1/4 resolution
    size = (int(round(height * factor / 16)) * 16, int(round(width * factor / 16)) * 16)
    mean = images.new_tensor(IMAGENET_MEAN)[None, :, None, None]
    std = images.new_tensor(IMAGENET_STD)[None, :, None, None]
    parts = []
    for start in range(0, n, chunk):
        # Grad modes are per thread: never hold one across a yield (see core.inference).
        with torch.no_grad():
            x = F.interpolate(images[start:start + chunk], size=size, mode="bilinear",
                              align_corners=False)
            parts.append(module((x - mean) / std))
        done = min(start + chunk, n)
        yield done, (torch.cat(parts) if done == n else None)
