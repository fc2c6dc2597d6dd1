"""Scores of a segmentation against a known answer (the synthetic samples' ground truth)."""

from __future__ import annotations

import numpy as np


def contingency(
    found: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None
) -> np.ndarray:
    """Pixel counts ``table[f, t]`` of discovered label ``f`` against true label ``t``.

    Counted over every image at once (one global table), over the pixels ``where``
    selects (default: all).
    """
    found = np.asarray(found).ravel().astype(np.int64)
    truth = np.asarray(truth).ravel().astype(np.int64)
    if where is not None:
        keep = np.asarray(where).ravel().astype(bool)
        found, truth = found[keep], truth[keep]
    n_f, n_t = int(found.max(initial=0)) + 1, int(truth.max(initial=0)) + 1
    return np.bincount(found * n_t + truth, minlength=n_f * n_t).reshape(n_f, n_t)


def _region_overlaps(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Contingency of compacted found ids against true regions 1..T (0 is no region)."""
    _, compact = np.unique(found, return_inverse=True)
    return contingency(compact, truth)[:, 1:]


def _iou(inter: np.ndarray) -> np.ndarray:
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    return inter / np.maximum(union, 1)


def hungarian_iou(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over true regions with a one-to-one matching (unmatched regions score 0).

    Strict: a region split in two only gets the IoU of its better half, so this is
    the figure to use when the number of labels is fixed.
    """
    from scipy.optimize import linear_sum_assignment

    iou = _iou(_region_overlaps(found, truth))
    rows, cols = linear_sum_assignment(-iou)
    scores = np.zeros(iou.shape[1])
    scores[cols] = iou[rows, cols]
    return float(scores.mean())


def majority_iou(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over true regions after giving every label to its majority region.

    Fair when the method picks its own number of labels: splitting a region in
    two is not an error, but merging two regions (or a label leaking over a
    boundary) is. Over-segmenting would game it, so bound the label count too.
    """
    inter = _region_overlaps(found, truth)
    owner = inter.argmax(1)
    merged = np.stack([inter[owner == k].sum(0) for k in range(inter.shape[1])])
    return float(np.diag(_iou(merged)).mean())


def foreground_iou(found: np.ndarray, truth: np.ndarray) -> float:
    """IoU of the foreground with the true foreground (``truth > 0``), no oracle involved.

    The background is the label found most often on the image border (as a user
    would pick it: objects rarely fill the frame); every other label is foreground.
    """
    found = np.asarray(found)
    border = np.concatenate([found[0], found[-1], found[:, 0], found[:, -1]])
    values, counts = np.unique(border, return_counts=True)
    foreground = found != values[np.argmax(counts)]
    true = np.asarray(truth) > 0
    return float((foreground & true).sum() / max(int((foreground | true).sum()), 1))
