"""Where training starts: the foreground masks and the initial part bases.

The bases begin at k-means centres of the semantic features (not in the paper:
it lets a few hundred CPU steps suffice); the partition of every pixel by its
nearest initial basis is the *initialisation baseline* that training must beat
(:func:`nearest_basis_labels`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .features import kmeans
from .params import PartsParams
from .saliency import estimate_saliency


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``(B, C, H, W)``; a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def saliency_maps(
    full: np.ndarray, params: PartsParams, saliency: np.ndarray | None,
) -> tuple[torch.Tensor | None, str]:
    """Foreground weights ``(N, 1, Y, X)`` at the size of ``full`` and how they were made.

    ``full``: the normalised images ``(N, Y, X, C)`` in [0, 1] at the size features are
    measured at. A given mask wins, then a brightness threshold, then
    (``estimate_saliency``) the boundary prior of :mod:`.saliency`.
    """
    size = full.shape[1:3]
    if saliency is not None:
        mask = torch.as_tensor((np.asarray(saliency) != 0).astype(np.float32))[:, None]
        return resize(mask, size).clamp(0, 1), "mask given"
    if params.saliency_threshold is not None:
        brightness = torch.as_tensor(full.mean(axis=-1))[:, None]
        if params.saliency_dark:
            mask = (brightness < params.saliency_threshold).float()
            return mask, f"normalised brightness below {params.saliency_threshold}"
        mask = (brightness > params.saliency_threshold).float()
        return mask, f"normalised brightness above {params.saliency_threshold}"
    if params.estimate_saliency:
        mask = torch.as_tensor(estimate_saliency(full, seed=params.seed))[:, None]
        return mask, "estimated (colours unlike the image border)"
    return None, "none"


def colour_regions(inputs: torch.Tensor, scale: float) -> torch.Tensor:
    """Colour regions ``(N, h, w)`` int64 (ids from 0 per image) of the working images
    ``(N, C, h, w)`` in [0, 1]: Felzenszwalb-Huttenlocher superpixels, whose edges are
    the images' own colour edges (the region-consistency loss pulls the parts onto them)."""
    from ..preseg import felzenszwalb

    planes = inputs.permute(0, 2, 3, 1).numpy()
    return torch.as_tensor(np.stack([
        felzenszwalb(plane, scale=scale, min_size=8) - 1 for plane in planes]).astype(np.int64))


def initial_bases(features: torch.Tensor, mask: torch.Tensor | None, k: int,
                  rng: np.random.Generator) -> torch.Tensor:
    """``(K + 1, D)`` part bases at k-means centres of the (foreground) features.

    The background basis starts at zero when a saliency mask masks the features;
    without a mask, the k-means cluster that touches the image border most is the
    background.
    """
    n, d, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(-1, d).numpy().astype(np.float64)
    if mask is not None:
        fg = mask.reshape(-1).numpy() > 0.5
        points = flat[fg] if fg.sum() >= k else flat
        centres = kmeans(points[rng.choice(len(points), min(len(points), 20000), replace=False)],
                         k, rng)
        background = np.zeros((1, d))
    else:
        sample = rng.choice(len(flat), min(len(flat), 20000), replace=False)
        centres = kmeans(flat[sample], k + 1, rng)
        border = np.zeros((n, h, w), bool)
        border[:, [0, -1], :] = True
        border[:, :, [0, -1]] = True
        nearest = ((flat[border.reshape(-1)][:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        first = int(np.bincount(nearest, minlength=len(centres)).argmax())
        background = centres[first:first + 1]
        centres = np.delete(centres, first, axis=0)
    if len(centres) < k:  # fewer distinct points than parts
        extra = rng.uniform(0, centres.max() + 1e-3, (k - len(centres), d))
        centres = np.concatenate([centres, extra])
    bases = np.concatenate([background, centres]) + rng.uniform(0, 1e-3, (k + 1, d))
    return torch.as_tensor(bases, dtype=torch.float32)


def nearest_basis_labels(features: torch.Tensor, bases: torch.Tensor,
                         mask: torch.Tensor | None) -> np.ndarray:
    """The initialisation's partition ``(N, h, w)`` uint8 at the features' resolution.

    With a mask: background off the mask, else the nearest foreground basis; without
    one: the nearest of all bases (basis 0 = background).
    """
    f = features.permute(0, 2, 3, 1)  # (N, h, w, D)
    d2 = ((f[..., None, :] - bases.to(f.dtype)) ** 2).sum(-1)  # (N, h, w, K + 1)
    if mask is None:
        return d2.argmin(-1).numpy().astype(np.uint8)
    labels = d2[..., 1:].argmin(-1) + 1
    labels[mask[:, 0] < 0.5] = 0
    return labels.numpy().astype(np.uint8)
