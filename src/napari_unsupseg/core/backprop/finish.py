"""The last step of the crop path: labels merged down to the wanted number (decided on a
sample of labels and colours) and numbered 1..K in place, a band of rows at a time so that
no image-sized temporary is made."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .merge import merge_labels


def finish_labels(
    classes: np.ndarray, sample: list[tuple[np.ndarray, np.ndarray]], n_labels: int | None
) -> tuple[np.ndarray, bool]:
    """Merge down to ``n_labels`` (decided on the sample) and number the labels 1..K in place."""
    top = int(classes.max())
    lut = np.arange(top + 1)
    merged = False
    if n_labels is not None and sample:
        found = np.concatenate([s[0].ravel() for s in sample])
        colours = np.concatenate([s[1].reshape(-1, s[1].shape[-1]) for s in sample])
        joined = merge_labels(found, colours, n_labels)
        before, after = np.unique(np.stack([found, joined]), axis=1)
        lut[before] = after
        merged = len(np.unique(after)) < len(before)
    counts = np.zeros(top + 1, np.int64)
    for rows in row_bands(classes):  # bands of rows: no image-sized temporary
        counts += np.bincount(rows.ravel(), minlength=top + 1)
    present = np.zeros(top + 1, bool)
    present[lut[counts > 0]] = True
    present[0] = False
    numbering = np.zeros(top + 1, np.int64)
    numbering[present] = np.arange(1, int(present.sum()) + 1)
    final = numbering[lut].astype(classes.dtype)
    for rows in row_bands(classes):
        rows[...] = final[rows]
    return classes, merged


def row_bands(stack: np.ndarray, rows: int = 512) -> Iterator[np.ndarray]:
    """Writable views of ``rows`` rows at a time of every plane."""
    for plane in stack:
        for start in range(0, len(plane), rows):
            yield plane[start : start + rows]
