"""Curation actions on a label image, each computed as the changed region only.

Every action returns a :class:`Change`: the bounding box of the pixels it changes,
a mask of those pixels inside the box and their new values. Nothing is written:
the caller applies it (``Change.apply`` headless, or napari's ``data_setitem``
with ``Change.indices()`` for one undo step), so merging or splitting one object
never rewrites the whole layer. Pixels of labels an action is not about are never
part of a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..base.errors import InputError
from .table import check_labels, compact_ids


@dataclass(frozen=True)
class Change:
    """New values for some pixels of a label image.

    ``box`` is a tuple of slices (one per axis) around the changed pixels, ``mask`` is
    a boolean array of the box's shape marking them, and ``values`` holds their new
    labels in ``mask``'s (C) order.
    """

    box: tuple[slice, ...]
    mask: np.ndarray
    values: np.ndarray

    @property
    def size(self) -> int:
        return int(self.values.size)

    def indices(self) -> tuple[np.ndarray, ...]:
        """The changed pixels' coordinates in the full image (numpy fancy indices)."""
        local = np.nonzero(self.mask)
        return tuple(idx + s.start for idx, s in zip(local, self.box, strict=True))

    def apply(self, labels: np.ndarray) -> None:
        """Write the change into ``labels`` in place."""
        labels[self.box][self.mask] = self.values


def _change(labels: np.ndarray, box: tuple[slice, ...], new_box: np.ndarray) -> Change:
    """The change that turns ``labels[box]`` into ``new_box``, cropped to what differs."""
    mask = labels[box] != new_box
    if not mask.any():
        return _no_change(labels)
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    full = tuple(
        slice(outer.start + inner.start, outer.start + inner.stop)
        for outer, inner in zip(box, tight, strict=True)
    )
    sub_mask = mask[tight]
    return Change(full, sub_mask, new_box[tight][sub_mask].astype(labels.dtype, copy=False))


def _no_change(labels: np.ndarray) -> Change:
    ndim = labels.ndim
    return Change(tuple(slice(0, 0) for _ in range(ndim)), np.zeros((0,) * ndim, bool),
                  np.zeros(0, labels.dtype))


def _box_of(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of a boolean mask (None when it is empty), from one projection per axis."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _union_box(boxes: Iterable[tuple[slice, ...] | None]) -> tuple[slice, ...]:
    boxes = [b for b in boxes if b is not None]
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
        for a in range(len(boxes[0]))
    )


Boxes = Mapping[int, tuple[slice, ...]]


def boxes_of(
    labels: np.ndarray, ids: Sequence[int], known: Boxes | None = None
) -> dict[int, tuple[slice, ...]]:
    """Bounding boxes of ``ids``; an :class:`InputError` names any that is not in the image.

    ``known`` boxes (from an object table measured since the last change) are used as
    they are, which spares a scan of the whole image; without them every box is found.
    """
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        raise InputError("Choose at least one label.")
    if wanted[0] <= 0:
        raise InputError("Label 0 is the background, not an object.")
    if known is not None and all(i in known for i in wanted):
        return {i: tuple(known[i]) for i in wanted}
    top = int(labels.max(initial=0))
    if min(wanted[-1], top) > 4 * labels.size + 1024:  # huge ids: one scan per label
        boxes = {i: box for i in wanted if (box := _box_of(labels == i)) is not None}
    else:
        found = ndimage.find_objects(labels, max_label=min(wanted[-1], top)) if top else []
        boxes = {i: found[i - 1] for i in wanted if i <= len(found) and found[i - 1] is not None}
    missing = [i for i in wanted if i not in boxes]
    if missing:
        names = ", ".join(str(i) for i in missing)
        raise InputError(f"There is no object with label {names} in the label image.")
    return boxes


def next_free_label(labels: np.ndarray) -> int:
    """One more than the largest label, refusing when the dtype cannot hold it."""
    value = int(labels.max(initial=0)) + 1
    if np.issubdtype(labels.dtype, np.integer) and value > np.iinfo(labels.dtype).max:
        raise InputError(f"The label image's type ({labels.dtype}) holds no further label.")
    return value


def merge(
    labels: np.ndarray, ids: Sequence[int], into: int | None = None, boxes: Boxes | None = None
) -> Change:
    """Give every pixel of ``ids`` one label: ``into`` (one of them) or the smallest."""
    labels = check_labels(labels)
    if len(set(int(i) for i in ids)) < 2:
        raise InputError("Choose at least two labels to merge.")
    boxes = boxes_of(labels, ids, boxes)
    target = min(boxes) if into is None else int(into)
    if target not in boxes:
        raise InputError(f"Label {target} is not one of the labels being merged.")
    box = _union_box(boxes.values())
    crop = labels[box]
    return _change(labels, box, np.where(np.isin(crop, list(boxes)), target, crop))


def delete(labels: np.ndarray, ids: Sequence[int], boxes: Boxes | None = None) -> Change:
    """Set every pixel of ``ids`` to background."""
    labels = check_labels(labels)
    boxes = boxes_of(labels, ids, boxes)
    box = _union_box(boxes.values())
    crop = labels[box]
    return _change(labels, box, np.where(np.isin(crop, list(boxes)), 0, crop))


def remove_small(labels: np.ndarray, min_size: int) -> Change:
    """Set to background every object of fewer than ``min_size`` pixels."""
    labels = check_labels(labels)
    if min_size < 1:
        raise InputError(f"The minimum size must be at least 1 pixel; got {min_size}.")
    ids, _ = compact_ids(labels)  # huge label values are renumbered before counting
    counts = np.bincount(ids.ravel()) if labels.size else np.zeros(1, np.int64)
    small = (counts > 0) & (counts < min_size)
    small[0] = False
    if not small.any():
        return _no_change(labels)
    # One look-up over the image instead of a box per object: small objects are many.
    gone = small[ids]
    box = _box_of(gone)
    mask = gone[box]
    return Change(box, mask, np.zeros(int(mask.sum()), labels.dtype))


def fill_holes(labels: np.ndarray, ids: Sequence[int] | None = None) -> Change:
    """Fill background holes that lie wholly inside one object (of ``ids``, default any).

    A hole is a connected background region that touches neither the image border nor
    any other label: filling it takes nothing from anyone.
    """
    labels = check_labels(labels)
    background, n_regions = ndimage.label(labels == 0)
    # Regions touching the image border are outside every object.
    outside = np.zeros(n_regions + 1, bool)
    outside[0] = True
    for axis in range(labels.ndim):
        for index in (0, -1):
            outside[np.unique(np.take(background, index, axis=axis))] = True
    if outside.all():
        return _no_change(labels)
    # Only enclosed background pixels matter from here on: their neighbours along every
    # axis (never off the image: an enclosed region does not touch the border).
    enclosed = np.flatnonzero(~outside[background])
    regions = background.ravel()[enclosed]
    flat_labels = labels.ravel()
    strides = np.cumprod((*labels.shape[1:], 1)[::-1])[::-1]
    pairs = []
    for stride in strides:
        for step in (int(stride), -int(stride)):
            neighbour = flat_labels[enclosed + step].astype(np.int64)
            touch = neighbour > 0
            pairs.append(np.stack([regions[touch].astype(np.int64), neighbour[touch]], 1))
    pairs = np.unique(np.concatenate(pairs), axis=0)
    owner = np.zeros(n_regions + 1, np.int64)
    if pairs.size:
        ids_of, n_neighbours = np.unique(pairs[:, 0], return_counts=True)
        rows = np.isin(pairs[:, 0], ids_of[n_neighbours == 1])
        owner[pairs[rows, 0]] = pairs[rows, 1]
    if ids is not None:
        owner[~np.isin(owner, [int(i) for i in ids])] = 0
    values = owner[regions]
    keep = values > 0
    if not keep.any():
        return _no_change(labels)
    coords = np.unravel_index(enclosed[keep], labels.shape)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    mask = np.zeros([s.stop - s.start for s in box], bool)
    mask[tuple(c - s.start for c, s in zip(coords, box, strict=True))] = True
    # Flat indices ascend, so the values are already in the mask's C order.
    return Change(box, mask, values[keep].astype(labels.dtype))


def relabel_sequential(labels: np.ndarray) -> Change:
    """Renumber the objects 1..N in ascending order of their current labels."""
    labels = check_labels(labels)
    ids, values = compact_ids(labels)
    box = tuple(slice(0, n) for n in labels.shape)
    if values is not None:  # huge ids were renumbered 1..N in ascending order already
        return _change(labels, box, ids.astype(labels.dtype))
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, labels.dtype)
    lut[present] = np.arange(1, int(present.sum()) + 1)
    return _change(labels, box, lut[labels])


def split_by_superpixels(
    labels: np.ndarray, label: int, superpixels: np.ndarray, boxes: Boxes | None = None
) -> Change:
    """Split one object along the superpixels of a presegmentation.

    Each superpixel's part of the object becomes its own label; the largest part keeps
    ``label``, the others get new labels above the current maximum.
    """
    labels = check_labels(labels)
    superpixels = check_labels(superpixels, "The superpixel image")
    if superpixels.shape != labels.shape:
        raise InputError(
            f"The superpixels have shape {superpixels.shape} but the labels have shape "
            f"{labels.shape}; they must match pixel for pixel."
        )
    box = boxes_of(labels, [label], boxes)[int(label)]
    inside = labels[box] == label
    parts, sizes = np.unique(superpixels[box][inside], return_counts=True)
    if parts.size < 2:
        raise InputError(f"Label {label} lies in a single superpixel; there is nothing to split.")
    order = parts[np.argsort(-sizes, kind="stable")]
    first = next_free_label(labels)
    if first + order.size - 2 > np.iinfo(labels.dtype).max:
        raise InputError(f"The label image's type ({labels.dtype}) cannot hold the new labels.")
    lut_keys = np.searchsorted(parts, superpixels[box][inside])
    new_ids = np.empty(parts.size, np.int64)
    new_ids[np.searchsorted(parts, order)] = [int(label), *range(first, first + order.size - 1)]
    new_box = labels[box].copy()
    new_box[inside] = new_ids[lut_keys]
    return _change(labels, box, new_box)


def split_by_seeds(
    labels: np.ndarray,
    label: int,
    seeds: Sequence[Sequence[float]],
    image: np.ndarray | None = None,
    boxes: Boxes | None = None,
) -> Change:
    """Split one object in two by a watershed from two seed points inside it.

    The watershed runs on ``image`` (an intensity image of the labels' shape: the cut
    follows its dark valleys) or, without one, on the distance to the object's border
    (the cut follows the neck between two lobes). The part grown from the first seed
    keeps ``label``; the other gets a new label.
    """
    from skimage.segmentation import watershed

    labels = check_labels(labels)
    if len(seeds) != 2:
        raise InputError(f"Give two seed points to split an object; got {len(seeds)}.")
    box = boxes_of(labels, [label], boxes)[int(label)]
    inside = labels[box] == label
    markers = np.zeros(inside.shape, np.int32)
    for k, seed in enumerate(seeds, start=1):
        point = tuple(int(round(c)) - s.start for c, s in zip(seed, box, strict=True))
        if any(not 0 <= p < n for p, n in zip(point, inside.shape, strict=True)) or not inside[
            point
        ]:
            raise InputError(f"Seed {k} at {tuple(seed)} is not inside label {label}.")
        markers[point] = k
    if (markers > 0).sum() < 2:
        raise InputError("The two seeds fall on the same pixel; click two different places.")
    if image is not None:
        if np.shape(image) != labels.shape:
            raise InputError(
                f"The image has shape {np.shape(image)} but the labels have shape {labels.shape}."
            )
        relief = np.asarray(image[box], dtype=np.float64)
        relief = relief.max() - relief  # bright cells, dark valleys between them
    else:
        relief = -ndimage.distance_transform_edt(inside)
    grown = watershed(relief, markers, mask=inside)
    new_box = labels[box].copy()
    new_box[grown == 2] = next_free_label(labels)
    return _change(labels, box, new_box)


class SuperpixelIndex:
    """A presegmentation with the bounding box of every superpixel, for fast painting."""

    def __init__(self, superpixels: np.ndarray) -> None:
        self.superpixels = check_labels(superpixels, "The superpixel image")
        self.boxes = ndimage.find_objects(self.superpixels)

    def paint(
        self,
        labels: np.ndarray,
        ids: Iterable[int],
        value: int,
        preserve_labels: bool = False,
    ) -> Change:
        """Give the whole superpixels ``ids`` the label ``value``.

        With ``preserve_labels`` only background pixels change (as napari's brush
        does with "preserve labels" on).
        """
        labels = check_labels(labels)
        if labels.shape != self.superpixels.shape:
            raise InputError(
                f"The superpixels have shape {self.superpixels.shape} but the labels have "
                f"shape {labels.shape}; they must match pixel for pixel."
            )
        ids = [int(i) for i in ids if 0 < int(i) <= len(self.boxes) and self.boxes[int(i) - 1]]
        if not ids:
            return _no_change(labels)
        box = _union_box(self.boxes[i - 1] for i in ids)
        crop = labels[box]
        target = np.isin(self.superpixels[box], ids)
        if preserve_labels:
            target &= crop == 0
        return _change(labels, box, np.where(target, value, crop))
