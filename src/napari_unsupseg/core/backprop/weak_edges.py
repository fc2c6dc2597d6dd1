"""Regions joined across weak edges, a last step of the backprop segmenter.

The network gives a region the label of the class its pixels look like; a slow shading
(a sky's gradient, a lit wall) or a textured surface then comes back as patches of two
or three classes side by side, with no edge in the image between them. Neighbouring
connected regions whose shared boundary is weak on average (the colour gradient along
it) are joined, chains of them included, in one vectorised pass (scikit-image's
hierarchical merge of a region adjacency graph gave the same scores on photographs at
several times the cost, growing faster than the area); each joined group takes the
label of its largest region, so the labels stay classes. On the BSDS500 validation
photographs this raised the literature's mIoU by about 0.01 (see the README's figures on
real images).

The large-image path joins band of rows by band of rows (:func:`join_weak_edges_by_bands`):
the same regions, edges and joins as on the whole plane, without an image-sized temporary.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Rows read beyond a band for its edges: the colour's smoothing (4 sigma) and the Sobel
#: kernel, so that a band's edges are the whole plane's.
_EDGE_MARGIN = 8


def colour_edges(colour: np.ndarray) -> np.ndarray:
    """The gradient magnitude of a smoothed plane ``(Y, X, C)`` in [0, 1] (Sobel, root mean
    square over the channels, so one scale for grey and colour)."""
    from ..base.images import gradient_magnitude

    return gradient_magnitude(colour) / np.sqrt(colour.shape[-1])


def join_weak_edges(labels: np.ndarray, colour: np.ndarray, threshold: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` with connected regions joined across edges whose mean gradient
    (of ``colour`` ``(Y, X, C)``, smoothed, in [0, 1]) is under ``threshold``; the ids kept."""
    from skimage.measure import label

    from ..base.images import neighbour_pixel_pairs

    parts = label(labels, connectivity=1, background=-1)
    n_parts = int(parts.max()) + 1
    if n_parts < 3 or threshold <= 0:  # id 0 is unused: fewer than two regions
        return labels
    a, b = neighbour_pixel_pairs(parts)
    edges = colour_edges(colour).ravel()
    flat = parts.ravel()
    # The boundary's gradient at each pixel pair: the larger side's.
    pairs = summed_pairs(flat[a], flat[b], np.maximum(edges[a], edges[b]))
    size = np.bincount(flat, minlength=n_parts)
    part_label = np.zeros(n_parts, labels.dtype)
    part_label[flat] = labels.ravel()
    return joined_labels(pairs, size, part_label, threshold)[parts]


def join_weak_edges_by_bands(
    labels: np.ndarray, read: Callable[[int, int], np.ndarray], threshold: float,
    rows: int = 512,
) -> None:
    """:func:`join_weak_edges` on a plane ``labels`` ``(Y, X)``, in place, ``rows`` rows at a
    time. ``read(start, stop)``: those rows of the image, channels last, scaled as the
    segmenter saw them (smoothed here as :func:`.boundaries.smoothed_colour` does)."""
    from ..base.images import linked_groups, neighbour_pixel_pairs

    if threshold <= 0:
        return
    height = len(labels)
    bands = [(start, min(start + rows, height)) for start in range(0, height, rows)]
    found, links, sizes, part_labels = [], [], [], []
    offset, last = 0, None
    for start, stop in bands:
        parts = _band_parts(labels[start:stop], offset)
        edges = _band_edges(read, start, stop, height)
        a, b = neighbour_pixel_pairs(parts)
        flat, strength = parts.ravel(), edges.ravel()
        found.append(summed_pairs(flat[a], flat[b], np.maximum(strength[a], strength[b])))
        if last is not None:  # the pixel pairs across the band's first row
            above, above_label, above_edges = last
            same = above_label == labels[start]
            links.append((above[same], parts[0][same]))
            across = ~same
            found.append(summed_pairs(above[across], parts[0][across],
                                      np.maximum(above_edges, edges[0])[across]))
        sizes.append(np.bincount(flat - offset))
        part_label = np.zeros(int(parts.max()) + 1 - offset, labels.dtype)
        part_label[flat - offset] = labels[start:stop].ravel()
        part_labels.append(part_label)
        last = (parts[-1].copy(), labels[stop - 1].copy(), edges[-1].copy())
        offset = int(parts.max()) + 1
    # A region cut by a band border is one region: its parts are linked.
    first = np.concatenate([link[0] for link in links]) if links else np.zeros(0, int)
    second = np.concatenate([link[1] for link in links]) if links else np.zeros(0, int)
    region = linked_groups(first, second, offset)
    n_regions = int(region.max()) + 1
    lo, hi, total, count = (np.concatenate(column) for column in zip(*found, strict=True))
    pairs = summed_pairs(region[lo], region[hi], total, count)
    size = np.bincount(region, np.concatenate(sizes), minlength=n_regions)
    region_label = np.zeros(n_regions, labels.dtype)
    region_label[region] = np.concatenate(part_labels)
    joined = joined_labels(pairs, size, region_label, threshold)[region]
    offset = 0
    for start, stop in bands:  # the same parts again: labelling is deterministic
        parts = _band_parts(labels[start:stop], offset)
        offset = int(parts.max()) + 1
        labels[start:stop] = joined[parts]


def summed_pairs(
    first: np.ndarray, second: np.ndarray, strength: np.ndarray,
    count: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each unordered pair of ids once: (lower id, higher id, summed strength, count), from
    pixel pairs (``count`` None) or from sums already made."""
    n_ids = int(max(first.max(initial=0), second.max(initial=0))) + 1
    low, high = np.minimum(first, second), np.maximum(first, second)
    keys, which = np.unique(low.astype(np.int64) * n_ids + high, return_inverse=True)
    weights = np.ones(len(which)) if count is None else count
    return (keys // n_ids, keys % n_ids, np.bincount(which, strength, len(keys)),
            np.bincount(which, weights, len(keys)))


def joined_labels(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], size: np.ndarray,
    region_label: np.ndarray, threshold: float,
) -> np.ndarray:
    """The label of each region once regions whose boundary (``pairs``, from
    :func:`summed_pairs`) is weaker on average than ``threshold`` are joined, chains of them
    included: each joined group takes the label of its largest region."""
    from ..base.images import linked_groups

    low, high, total, count = pairs
    weak = total / np.maximum(count, 1) < threshold
    group = linked_groups(low[weak], high[weak], len(size))
    order = np.lexsort((size, group))  # by group, then size
    in_order = group[order]
    largest = np.r_[np.flatnonzero(np.diff(in_order)), len(order) - 1]
    group_label = np.zeros(int(group.max()) + 1, region_label.dtype)
    group_label[in_order[largest]] = region_label[order[largest]]
    return group_label[group]


def _band_parts(band: np.ndarray, offset: int) -> np.ndarray:
    """The connected regions of a band of labels, numbered from ``offset``."""
    from skimage.measure import label

    return label(band, connectivity=1, background=-1).astype(np.int64) + (offset - 1)


def _band_edges(read: Callable[[int, int], np.ndarray], start: int, stop: int,
                height: int) -> np.ndarray:
    """:func:`colour_edges` of rows ``start:stop``, as on the whole plane."""
    from .boundaries import smoothed_colour

    low, high = max(0, start - _EDGE_MARGIN), min(height, stop + _EDGE_MARGIN)
    colour = smoothed_colour(read(low, high)[np.newaxis])[0]
    return colour_edges(colour)[start - low : stop - low]
