"""Label images with a known answer, shared by the review tests of core, CLI and widgets."""

from __future__ import annotations

import numpy as np


def grid_mask(rows: int = 4, cols: int = 5, size: int = 10, gap: int = 4) -> np.ndarray:
    """Square objects 1..rows*cols on a grid, ``gap`` pixels apart."""
    step = size + gap
    labels = np.zeros((rows * step + gap, cols * step + gap), np.uint16)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        labels[gap + r * step : gap + r * step + size, gap + c * step : gap + c * step + size] = (
            k + 1
        )
    return labels


def damaged(truth: np.ndarray) -> np.ndarray:
    """3 objects deleted, 2 and 3 merged, 7 split 70/30, one object added."""
    cand = truth.copy()
    cand[np.isin(cand, [10, 15, 20])] = 0
    cand[cand == 3] = 2
    rows, cols = np.nonzero(truth == 7)
    cand[(truth == 7) & (np.arange(truth.shape[1])[None, :] >= cols.min() + 7)] = 30
    cand[0:3, 0:3] = 40  # in the margin: touches no object
    return cand
