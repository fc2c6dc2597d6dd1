"""Feature maps that the semantic-consistency loss reconstructs.

Without pretrained weights we use :func:`texture_features`: rotation-invariant
filter energies of brightness at three scales (gradient magnitude, Laplacian of
Gaussian, Hessian anisotropy), each averaged over a window and divided by the
local mean brightness; with a foreground mask, measured inside the object only.
They describe local texture, not colour, and do not change when an object
turns, so a part that looks the same in every image gets the same features even
when its colour changes. With a mask, :func:`axis_orientation` adds how the
texture lies relative to the object's long axis (stripes across or along), which
is also unchanged by turns. :func:`texture_codes` standardises them into
non-negative codes. They know nothing about object categories: with a
pretrained VGG-19 or ResNet (:func:`network_features`) parts follow semantics
learnt on ImageNet instead.

Network feature maps are scaled so that each channel has unit root-mean-square
over the collection (over the foreground when a saliency mask is given) and then
divided by ``sqrt(D)``, so a typical pixel's feature vector has about unit length
whatever the extractor (:func:`scale_features`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage as ndi

TEXTURE_SCALES = (1.0, 2.0, 4.0)
#: Longer side (pixels) of the inputs of a pretrained feature network: 4x the working
#: size, clamped to this range (stride 16: feature maps of 14 to 32 pixels).
NETWORK_INPUT_RANGE = (224, 512)


def texture_features(image: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, C)`` float image in [0, 1] -> ``(3 * len(TEXTURE_SCALES), H, W)`` float32.

    ``inside``: optional foreground weights ``(H, W)``. The brightness off the object
    is then replaced by the object's own smoothed brightness (a normalised
    convolution), so the object's outline, a strong edge, does not read as a texture
    of the parts along it.
    """
    brightness = image.astype(np.float64).mean(axis=-1)
    if inside is not None and inside.sum() > 0:
        weight = np.clip(inside.astype(np.float64), 0, 1)
        reach = max(TEXTURE_SCALES) * 2
        filled = ndi.gaussian_filter(brightness * weight, reach) / (
            ndi.gaussian_filter(weight, reach) + 1e-6)
        fallback = (brightness * weight).sum() / weight.sum()
        filled = np.where(ndi.gaussian_filter(weight, reach) > 1e-3, filled, fallback)
        brightness = weight * brightness + (1 - weight) * filled
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
    with zeros, more than three cut to the first three; inputs are resized so that
    the longer side is 4x the working size (the stride-16 feature map then has a
    quarter of the working resolution) but within :data:`NETWORK_INPUT_RANGE`
    pixels: at least what ImageNet networks were trained at, at most what keeps
    memory bounded at large working sizes. Then ImageNet-normalised.
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
    low, high = NETWORK_INPUT_RANGE
    factor = min(max(4.0 * longer, low), high) / longer
    size = (int(round(height * factor / 16)) * 16, int(round(width * factor / 16)) * 16)
    mean = images.new_tensor(IMAGENET_MEAN)[None, :, None, None]
    std = images.new_tensor(IMAGENET_STD)[None, :, None, None]
    parts = []
    for start in range(0, n, chunk):
        # Grad modes are per thread: never hold one across a yield (see core.predict).
        with torch.no_grad():
            x = F.interpolate(images[start:start + chunk], size=size, mode="bilinear",
                              align_corners=False)
            parts.append(module((x - mean) / std))
        done = min(start + chunk, n)
        yield done, (torch.cat(parts) if done == n else None)


def axis_orientation(image: np.ndarray, inside: np.ndarray, sigma: float = 2.0,
                     window: float = 4.0) -> np.ndarray:
    """How the local texture lies relative to the object's long axis, ``(H, W)`` in [-1, 1].

    The structure tensor of brightness (gradients at ``sigma``, averaged over
    ``window``) gives each pixel's dominant gradient direction and its coherence;
    the object's axis is the principal axis of the foreground weights ``inside``.
    The value is ``coherence * cos(2 (gradient angle - axis angle))``: +1 for stripes
    across the object, -1 for stripes along it, 0 for isotropic texture. It does not
    change when the object turns (or is mirrored), so it tells apart parts whose
    texture differs only in direction, which rotation-invariant energies cannot.
    """
    brightness = image.astype(np.float64).mean(axis=-1)
    gy = ndi.gaussian_filter(brightness, sigma, order=(1, 0))
    gx = ndi.gaussian_filter(brightness, sigma, order=(0, 1))
    jyy = ndi.gaussian_filter(gy * gy, window)
    jxx = ndi.gaussian_filter(gx * gx, window)
    jxy = ndi.gaussian_filter(gx * gy, window)
    weight = np.clip(inside.astype(np.float64), 0, 1)
    total = weight.sum()
    if total <= 0:
        return np.zeros(brightness.shape, np.float32)
    yy, xx = np.mgrid[:brightness.shape[0], :brightness.shape[1]].astype(np.float64)
    my, mx = (weight * yy).sum() / total, (weight * xx).sum() / total
    cxx = (weight * (xx - mx) ** 2).sum() / total
    cyy = (weight * (yy - my) ** 2).sum() / total
    cxy = (weight * (xx - mx) * (yy - my)).sum() / total
    axis = 0.5 * np.arctan2(2 * cxy, cxx - cyy)  # angle of the long axis (x towards y)
    along = (jxx - jyy) * np.cos(2 * axis) + 2 * jxy * np.sin(2 * axis)
    return (along / (jxx + jyy + 1e-9)).astype(np.float32)


def texture_codes(energies: np.ndarray, mask: np.ndarray | None,
                  orientation: np.ndarray | None = None) -> np.ndarray:
    """Texture energies ``(N, E, H, W)`` -> non-negative codes ``(N, 2 E (+ 2), H, W)``.

    The energies are log-compressed and standardised over the collection's
    (foreground) pixels; each standardised value ``z`` becomes the pair
    ``(max(z, 0), max(-z, 0))``, so the codes are non-negative (the semantic loss
    reconstructs them with non-negative bases) while textures that differ in sign
    on a channel get codes on different axes (bases that can be orthogonal). Then
    divided by ``sqrt(2 E)``: a typical pixel's code has about unit length.
    ``orientation``: optional ``(N, 1, H, W)`` in [-1, 1] (:func:`axis_orientation`),
    appended the same way as a pair divided by ``sqrt(2)``.
    """
    n, e, h, w = energies.shape
    logs = np.log1p(np.maximum(energies, 0)).astype(np.float64)
    keep = np.ones((n, 1, h, w), bool) if mask is None else mask > 0.5
    if keep.sum() < 2:
        keep = np.ones((n, 1, h, w), bool)
    chosen = logs.transpose(1, 0, 2, 3)[:, keep[:, 0]]
    mean, std = chosen.mean(1), chosen.std(1) + 1e-9
    z = (logs - mean[None, :, None, None]) / std[None, :, None, None]
    codes = np.concatenate([np.maximum(z, 0), np.maximum(-z, 0)], axis=1) / np.sqrt(2 * e)
    if orientation is not None:
        turn = np.concatenate([np.maximum(orientation, 0), np.maximum(-orientation, 0)], axis=1)
        codes = np.concatenate([codes, turn / np.sqrt(2)], axis=1)
    return codes.astype(np.float32)
