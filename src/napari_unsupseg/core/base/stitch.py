"""Labels of overlapping blocks joined into one labelling: a block's labels take the ids
of the labels already written where the two overlap.

A block is segmented with a margin that overlaps the cores written before it. In that
overlap the block's own labels are compared with the written ones; each block label
whose overlap with a written label is large (intersection over union, measured inside
the overlap only, at least ``min_iou``) takes that written label's id, one to one, the
largest IoU first; the block's other labels get fresh ids. Background (0) is never
matched. Written labels never change: only the block's core is written, with the ids
chosen here. Works the same in 2-D and 3-D (superpixels, supervoxels, objects).

numpy only (no torch).
"""

from __future__ import annotations

import numpy as np

#: Smallest IoU (inside the overlap) at which a block's label continues a written one.
MIN_IOU = 0.5


def match_labels(new: np.ndarray, written: np.ndarray,
                 min_iou: float = MIN_IOU) -> dict[int, int]:
    """New label -> written label, one to one, for the pairs whose IoU over the pixels
    given (``new`` and ``written`` of one shape: the overlap) is at least ``min_iou``;
    the largest IoU first (ties: the smaller ids first). 0 is never matched."""
    new = np.asarray(new).ravel().astype(np.int64)
    written = np.asarray(written).ravel().astype(np.int64)
    if new.shape != written.shape:
        raise ValueError(f"overlaps differ in size: {new.shape} and {written.shape}")
    both = (new > 0) & (written > 0)
    if not both.any():
        return {}
    new_ids, new_area = np.unique(new[new > 0], return_counts=True)
    old_ids, old_area = np.unique(written[written > 0], return_counts=True)
    size = int(written.max()) + 1
    keys, inter = np.unique(new[both] * size + written[both], return_counts=True)
    a, b = keys // size, keys % size
    union = (new_area[np.searchsorted(new_ids, a)] + old_area[np.searchsorted(old_ids, b)]
             - inter)
    iou = inter / union
    keep = iou >= min_iou
    a, b, iou = a[keep], b[keep], iou[keep]
    matches: dict[int, int] = {}
    taken: set[int] = set()
    for index in np.lexsort((b, a, -iou)):
        left, right = int(a[index]), int(b[index])
        if left not in matches and right not in taken:
            matches[left] = right
            taken.add(right)
    return matches


def stitch_block(labels: np.ndarray, written: np.ndarray, overlap: np.ndarray,
                 core: tuple[slice, ...], next_id: int,
                 min_iou: float = MIN_IOU) -> tuple[np.ndarray, int]:
    """The core of a block's ``labels`` (0 = background) with stitched ids, and the next
    free id. ``written``: the labels already written over the block (same shape),
    ``overlap``: where they are final (the cores written before); ``core``: the block's
    core inside it. Labels matched in the overlap take the written ids; the others
    ``next_id``, ``next_id + 1``, ... in order of their ids."""
    matches = match_labels(labels[overlap], written[overlap], min_iou)
    values, inverse = np.unique(np.asarray(labels[core]), return_inverse=True)
    ids = np.zeros(len(values), np.uint64)
    fresh = next_id
    for index, value in enumerate(values.tolist()):
        if value == 0:
            continue
        if value in matches:
            ids[index] = matches[value]
        else:
            ids[index] = fresh
            fresh += 1
    return ids[inverse.reshape(-1)].reshape(labels[core].shape), fresh
