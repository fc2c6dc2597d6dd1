"""The object table of a label image: one row per label, computed without a per-label loop.

Areas and mean intensities are weighted ``np.bincount`` sums, centroids are
bincounts of the pixel coordinates (taken in row blocks so that no full-size
coordinate grid is ever held), bounding boxes come from
``scipy.ndimage.find_objects``. The column names follow
``skimage.measure.regionprops_table`` (``centroid-0``, ``bbox-0`` ...), so the
table reads like the one scikit-image users know.

A table is a plain ``dict`` of equally long numpy columns (``pandas.DataFrame``
takes it as is; napari's ``layer.features`` too).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..base.errors import InputError

Table = dict[str, np.ndarray]

#: The review statuses, in the order the widget offers them.
STATUSES = ("unreviewed", "accepted", "rejected", "to fix")

#: Prefixes of the measured columns (``label`` aside): recomputed, never carried over.
MEASURED_PREFIXES = ("area", "volume", "centroid-", "bbox-", "mean_intensity-")

#: Rows of this many pixels are summed at once (bounds the temporary memory).
_BLOCK_PIXELS = 1 << 16


def check_labels(labels: object, what: str = "The label image") -> np.ndarray:
    """The labels as a numpy array of non-negative integers, or an :class:`InputError`."""
    array = np.asarray(labels)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"{what} must hold whole numbers (integer labels); its type is {array.dtype}."
        )
    if array.ndim < 2:
        raise InputError(f"{what} must have at least two dimensions; its shape is {array.shape}.")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise InputError(f"{what} holds negative values; labels must be 0 or more.")
    return array


def check_intensity(image: object, labels: np.ndarray, name: str) -> np.ndarray:
    """An intensity image with the labels' shape, as numbers, or an :class:`InputError`."""
    array = np.asarray(image)
    if array.shape != labels.shape:
        raise InputError(
            f"The image '{name}' has shape {array.shape} but the labels have shape "
            f"{labels.shape}; they must match pixel for pixel."
        )
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise InputError(f"The image '{name}' must hold numbers; its type is {array.dtype}.")
    return array


def _row_blocks(shape: tuple[int, ...]) -> list[slice]:
    per_row = int(np.prod(shape[1:])) or 1
    step = max(1, _BLOCK_PIXELS // per_row)
    return [slice(start, min(start + step, shape[0])) for start in range(0, shape[0], step)]


def _axis_grid(shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Each pixel's coordinate along ``axis`` in an array of ``shape``, flattened (float64)."""
    view = [1] * len(shape)
    view[axis] = -1
    line = np.arange(shape[axis], dtype=np.float64).reshape(view)
    return np.broadcast_to(line, shape).ravel()


def compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels small enough to bincount: ids are renumbered only when the largest is huge."""
    top = int(labels.max(initial=0))
    if top <= 4 * labels.size + 1024:
        return labels, None
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.int64)
    if values[0] != 0:  # keep id 0 for the background even when no pixel is 0
        values, inverse = np.concatenate([[0], values]), inverse + 1
    return inverse, values


def measure(
    labels: object,
    intensities: Mapping[str, object] | None = None,
    spacing: Sequence[float] | None = None,
) -> Table:
    """One row per label present (ascending): label, area, centroid, bbox, mean intensities.

    ``intensities`` maps a channel name to an image of the labels' shape; each gives a
    ``mean_intensity-<name>`` column. ``area`` counts pixels (voxels in 3-D); 3-D
    labels also get ``volume``, the voxel count times the product of ``spacing``.
    Raises :class:`InputError` for float labels, a wrong-shaped image or no objects.
    """
    array = check_labels(labels)
    images = {name: check_intensity(im, array, name) for name, im in (intensities or {}).items()}
    ids_image, values = compact_ids(array)
    n_bins = int(ids_image.max(initial=0)) + 1
    ndim = array.ndim
    area = np.zeros(n_bins, np.int64)
    coord_sums = np.zeros((ndim, n_bins))
    intensity_sums = {name: np.zeros(n_bins) for name in images}
    blocks = _row_blocks(array.shape)
    # Coordinates relative to a block's first row are the same in every block: build once.
    block_shape = (blocks[0].stop - blocks[0].start, *array.shape[1:])
    grids = [_axis_grid(block_shape, axis) for axis in range(ndim)]
    for rows in blocks:
        # One conversion to the index type per block, not one inside every bincount.
        block = np.ascontiguousarray(ids_image[rows]).ravel().astype(np.intp, copy=False)
        counts = np.bincount(block, minlength=n_bins)
        area += counts
        size = block.size
        for axis in range(ndim):
            coord_sums[axis] += np.bincount(block, weights=grids[axis][:size], minlength=n_bins)
        coord_sums[0] += rows.start * counts
        for name, image in images.items():
            weights = np.asarray(image[rows], dtype=np.float64).ravel()
            intensity_sums[name] += np.bincount(block, weights=weights, minlength=n_bins)
    present = np.flatnonzero(area)
    present = present[present > 0]
    if present.size == 0:
        raise InputError("The label image holds no objects (every pixel is 0).")
    boxes = ndimage.find_objects(ids_image)
    table: Table = {"label": present if values is None else values[present]}
    table["label"] = np.asarray(table["label"], dtype=np.int64)
    table["area"] = area[present]
    if ndim == 3:
        voxel = float(np.prod(spacing)) if spacing is not None else 1.0
        table["volume"] = area[present] * voxel
    for axis in range(ndim):
        table[f"centroid-{axis}"] = coord_sums[axis, present] / area[present]
    for axis in range(ndim):
        table[f"bbox-{axis}"] = np.array([boxes[i - 1][axis].start for i in present], np.int64)
    for axis in range(ndim):
        table[f"bbox-{axis + ndim}"] = np.array(
            [boxes[i - 1][axis].stop for i in present], np.int64
        )
    for name, sums in intensity_sums.items():
        table[f"mean_intensity-{name}"] = sums[present] / area[present]
    return table


def remeasure(
    table: Mapping[str, np.ndarray],
    labels: object,
    changed: tuple[slice, ...],
    affected: Sequence[int] | np.ndarray,
    intensities: Mapping[str, object] | None = None,
    spacing: Sequence[float] | None = None,
) -> Table:
    """The table after an edit, measuring only around the labels the edit touched.

    ``table`` describes the labels before the edit; ``changed`` is the box of the
    changed pixels and ``affected`` every label they held before or hold now. An
    affected label now lies within its old box plus ``changed``, so only the union of
    those boxes is measured; other rows are kept as they are. Falls back to a full
    :func:`measure` when that union covers over a quarter of the image.
    """
    array = check_labels(labels)
    images = {name: check_intensity(im, array, name) for name, im in (intensities or {}).items()}
    ids = np.unique(np.asarray(affected, dtype=np.int64))
    ids = ids[ids > 0]
    known = np.asarray(table["label"], dtype=np.int64)
    old_rows = np.flatnonzero(np.isin(known, ids))
    boxes = [tuple(changed)] + [bbox_of(table, int(r)) for r in old_rows]
    boxes = [b for b in boxes if all(s.stop > s.start for s in b)]
    columns = [c for c in table if c == "label" or c.startswith(MEASURED_PREFIXES)]
    if not boxes:
        return {c: np.asarray(table[c]) for c in columns}
    region = tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
        for a in range(array.ndim)
    )
    if np.prod([s.stop - s.start for s in region]) * 4 > array.size:
        return measure(array, images, spacing)
    try:
        part = measure(array[region], {n: im[region] for n, im in images.items()}, spacing)
    except InputError:  # nothing left in the region: every affected label is gone
        part = {c: np.zeros(0, np.asarray(table[c]).dtype) for c in columns}
    keep = np.isin(part["label"], ids)
    ndim = array.ndim
    for axis, s in enumerate(region):
        part[f"centroid-{axis}"] = part[f"centroid-{axis}"] + s.start
        part[f"bbox-{axis}"] = part[f"bbox-{axis}"] + s.start
        part[f"bbox-{axis + ndim}"] = part[f"bbox-{axis + ndim}"] + s.start
    stay = np.ones(known.size, bool)
    stay[old_rows] = False
    merged = {c: np.concatenate([np.asarray(table[c])[stay], part[c][keep]]) for c in columns}
    order = np.argsort(merged["label"], kind="stable")
    return {c: v[order] for c, v in merged.items()}


def n_dims(table: Mapping[str, np.ndarray]) -> int:
    """How many spatial axes a table's centroid columns describe."""
    return sum(1 for key in table if key.startswith("centroid-"))


def bbox_of(table: Mapping[str, np.ndarray], row: int) -> tuple[slice, ...]:
    """The bounding box of a row as slices into the label image."""
    ndim = n_dims(table)
    return tuple(
        slice(int(table[f"bbox-{a}"][row]), int(table[f"bbox-{a + ndim}"][row]))
        for a in range(ndim)
    )


def row_of(table: Mapping[str, np.ndarray], label: int) -> int:
    """The row index of ``label``, or an :class:`InputError` if the table lacks it."""
    labels = np.asarray(table["label"])
    where = np.flatnonzero(labels == int(label))
    if where.size == 0:
        raise InputError(f"There is no object with label {label}.")
    return int(where[0])


def filter_rows(
    table: Mapping[str, np.ndarray],
    column: str,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """A boolean mask of the rows whose ``column`` lies in ``[low, high]`` (None: open)."""
    values = np.asarray(table[column], dtype=float)
    keep = np.ones(values.shape, bool)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values <= high
    return keep


def write_csv(table: Mapping[str, Sequence[object]], path: str | Path) -> Path:
    """Write a table as CSV, one header row then one row per object."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise InputError(f"Tables are written as CSV: give a .csv file name, not {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(table)
    data = [np.asarray(table[c]).tolist() for c in columns]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*data, strict=True))
    return path
