"""Reading parts out of the network's probabilities, and measuring a label stack's parts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import losses as L


def read_labels(probs: torch.Tensor, foreground: torch.Tensor | None = None) -> torch.Tensor:
    """Label map from ``(K + 1, H, W)`` probabilities: the most probable part, and
    background off the saliency mask ``foreground`` ``(H, W)`` (weights; below one
    half = background) when there is one, else where the background probability is
    at least one half (an argmax over all channels would call a pixel background
    whenever the parts share it)."""
    part = probs[1:].argmax(dim=0) + 1
    background = probs[0] >= 0.5 if foreground is None else foreground < 0.5
    return torch.where(background, torch.zeros_like(part), part)


def enlarge_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label stack ``(N, h, w)`` -> ``(N, *shape)`` by nearest-pixel lookup."""
    rows = np.minimum((np.arange(shape[0]) + 0.5) * labels.shape[1] / shape[0],
                      labels.shape[1] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * labels.shape[2] / shape[1],
                      labels.shape[2] - 1).astype(int)
    return labels[:, rows[:, None], cols[None, :]]


def part_spread(labels: np.ndarray) -> float:
    """The effective number of parts of a label stack: ``exp`` of the entropy of the
    parts' shares of the foreground (K for K equal parts, 1 for one part)."""
    counts = np.bincount(labels[labels > 0].ravel()).astype(float)
    shares = counts[counts > 0] / max(counts.sum(), 1.0)
    return float(np.exp(-(shares * np.log(shares)).sum())) if shares.size else 0.0


def label_centres(labels: np.ndarray, k: int) -> np.ndarray:
    """Each part's centre of mass ``(N, K, 2)`` (pixels; NaN where absent) for hard labels."""
    centres = np.full((labels.shape[0], k, 2), np.nan, np.float32)
    for i, plane in enumerate(labels):
        found = torch.as_tensor(plane.astype(np.int64))
        probs = F.one_hot(found, k + 1).permute(2, 0, 1).to(torch.float32)
        centres[i] = region_centres(probs, found)
    return centres


def region_centres(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Each part's centre: the centre of mass of its probability over its own region.

    ``probs`` ``(K + 1, H, W)``, ``labels`` ``(H, W)`` from :func:`read_labels`.
    Returns ``(K, 2)`` (row, column) pixel coordinates, NaN for a part with no pixel.
    Restricting to the region keeps the faint probability a part has everywhere
    else from pulling its centre towards the middle of the image.
    """
    k = probs.shape[0] - 1
    height, width = labels.shape
    own = F.one_hot(labels.long(), k + 1).permute(2, 0, 1)[1:].to(probs.dtype)
    centres, mass = L.part_centres((probs[1:] * own)[None])
    out = L.to_pixels(centres[0], height, width).numpy().astype(np.float32)
    out[~(own.sum(dim=(1, 2)) > 0).numpy()] = np.nan
    return out
