"""Final merge of the backprop segmenter: labels joined by their colour and texture statistics.

The network's labels (and more so their intersection over several runs, see
:mod:`.consensus`) over-segment: a textured region (stripes, dots,
blotches) often comes back as two labels, its light and its dark parts, because
one pixel of it looks like another. Here every label is described by **local**
statistics, which are about the same everywhere in one textured region: each
channel averaged over a Gaussian window of ``texture_scale`` pixels, and its local
standard deviation there (the texture's contrast). Labels are then joined, the
closest pair first, while they are indistinguishable; labels are classes of
appearance, as the network's are, so the two need not touch (separate nuclei of
one kind end with one label).

How far apart two labels ``a`` and ``b`` are: the largest, over the features
``c``, of ``|m_a - m_b| / sqrt(min(v_a, v_b) + floor)`` with ``m`` the mean and ``v``
the variance of the feature over the label's pixels. It is scale-free (1 = the
means differ by one standard deviation of the more uniform label), so one
threshold serves 8-bit, 16-bit and float images and flat or busy textures; and
taking the more uniform label's spread means a broad label (many nuclei of
varied brightness) never swallows a uniform one (the background) on the grounds
of its own breadth. Merging stops when the closest pair is farther apart than
``threshold``: **this decides the number of regions** when none is asked for.

Local statistics blur a small object into its surroundings: over a window of 4
pixels a nucleus of a few dozen pixels has the local mean of the halo around a
bright one. So two labels are compared by their own lightly smoothed **colour**
too, the larger distance counting, unless they are **mixed**: each has on average
at least ``_MIXED_SHARE`` of the other in its texture window, as the light and dark
parts of one texture have (their colours differ by design). A small nucleus and the
background, or two regions that merely touch, are not mixed. Mixed labels are
compared over a window ``_COARSE`` times as wide as well, the smaller distance
counting: blotches larger than the texture window look alike over the wider one.

Last, a label left **thin** everywhere (almost nothing of it survives an erosion
of ``_THIN_WIDTH`` pixels) is no region but a transition: the blurred rim between
a bright object and its background, or the specks of a texture that were not
joined. Its pixels go to the nearest thick label, which puts the rim's split at
its middle, where the intensity is half-way between the two sides. Not its
**islands**, though: a piece enclosed by one other label (a rim lies between two)
and wider than a rim is a small object, a nucleus of a few dozen pixels that
shares a label with the rims of the larger ones; it keeps its label.

Last of all the boundaries are **placed by colour** (:mod:`.boundaries`),
not where whichever run drew them. What is left of a rim or a bridge (the background
between two close objects, kept apart by the high local contrast of the edges in it)
then looks like the background, and a second pass of the merge joins it there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .boundaries import grown_box, place_boundaries, smoothed_colour

#: Variance floor (squared share of the normalised range): two flat, noise-free
#: labels of almost the same colour are then close, not infinitely far apart.
_VAR_FLOOR = 1e-4
#: Erosion (pixels) that a label must survive in part to count as a region ...
_THIN_WIDTH = 2
#: ... with at least this share of its pixels.
_THIN_SURVIVAL = 0.2
#: Two labels whose windows hold at least this share of each other (on average) are mixed:
#: the light and dark parts of one texture. Others are compared by their colour too.
_MIXED_SHARE = 0.1
#: Mixed labels are also compared over a texture window this many times as wide.
_COARSE = 2.0
#: Merge, thin labels absorbed and boundaries placed this many times: a rim or bridge
#: kept apart by its edge-like statistics looks like its surroundings once its
#: edge pixels have gone to the object, and is joined in the next pass.
_MERGE_PASSES = 2


def texture_features(planes: np.ndarray, scale: float) -> np.ndarray:
    """Local mean and local standard deviation of every channel, plane by plane.

    ``planes``: ``(N, Y, X, C)`` in [0, 1]; returns ``(N, Y, X, 2C)`` float32.
    """
    from scipy import ndimage as ndi

    planes = planes.astype(np.float32, copy=False)
    window = (0, scale, scale, 0)
    mean = ndi.gaussian_filter(planes, window)
    square = ndi.gaussian_filter(planes * planes, window)
    std = np.sqrt(np.clip(square - mean * mean, 0.0, None))
    return np.concatenate([mean, std], axis=-1)


class _LabelStats:
    """Pixel count and per-feature sum and sum of squares of every label."""

    def __init__(self, labels: np.ndarray, features: np.ndarray) -> None:
        flat = labels.ravel()
        feats = features.reshape(-1, features.shape[-1]).astype(np.float64)
        size = int(flat.max()) + 1
        self.count = np.bincount(flat, minlength=size).astype(np.float64)
        sums, squares = [], []
        for c in range(feats.shape[1]):
            sums.append(np.bincount(flat, feats[:, c], minlength=size))
            squares.append(np.bincount(flat, feats[:, c] ** 2, minlength=size))
        self.total = np.stack(sums, 1)
        self.square = np.stack(squares, 1)

    def distances(self) -> np.ndarray:
        """All pairwise distances (see the module docstring); inf for empty labels."""
        count = np.maximum(self.count, 1.0)[:, None]
        mean = self.total / count
        var = np.maximum(self.square / count - mean**2, 0.0)
        spread = np.minimum(var[:, None], var[None]) + _VAR_FLOOR
        dist = np.sqrt(((mean[:, None] - mean[None]) ** 2 / spread).max(axis=-1))
        empty = self.count == 0
        dist[empty] = np.inf
        dist[:, empty] = np.inf
        np.fill_diagonal(dist, np.inf)
        return dist

    def join(self, keep: int, gone: int) -> None:
        for table in (self.count, self.total, self.square):
            table[keep] += table[gone]
            table[gone] = 0


def merge_by_statistics(
    labels: np.ndarray,
    planes: np.ndarray,
    *,
    scale: float = 4.0,
    threshold: float = 2.5,
    n_labels: int | None = None,
) -> np.ndarray:
    """Join the labels of ``labels`` ``(N, Y, X)`` (ints >= 0) seen on ``planes`` ``(N, Y, X, C)``.

    The closest pair first while closer than ``threshold``, then thin labels absorbed and
    the boundaries placed by colour, twice (see the module docstring); with ``n_labels``,
    then the closest pair first until that many remain, whatever their distance.
    Returns ids 0..K-1 in the shape of ``labels``.
    """
    looks = _Looks(
        texture=texture_features(planes, scale),
        coarse=texture_features(planes, _COARSE * scale),
        colour=smoothed_colour(planes),
        scale=scale,
    )
    merged = labels
    for _ in range(_MERGE_PASSES):
        merged = _merge_closest(merged, looks, threshold, n_labels or 1)
        merged = place_boundaries(absorb_thin(merged), looks.colour)
    if n_labels is not None:
        merged = place_boundaries(_merge_closest(merged, looks, np.inf, n_labels), looks.colour)
    return merged


class _Looks(NamedTuple):
    """What the merge compares (see the module docstring)."""

    texture: np.ndarray  # local statistics over the texture window
    coarse: np.ndarray  # the same over a window _COARSE times as wide
    colour: np.ndarray  # the colour, lightly smoothed
    scale: float  # the texture window (Gaussian sigma, pixels)


def _merge_closest(
    labels: np.ndarray, looks: _Looks, threshold: float, keep_at_least: int
) -> np.ndarray:
    """Join the closest pair while it is within ``threshold`` and more than
    ``keep_at_least`` labels remain; ids 0..K-1."""
    _, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    tables = [_LabelStats(compact, looks.texture), _LabelStats(compact, looks.coarse),
              _LabelStats(compact, looks.colour)]
    texture, coarse, colour = tables
    shares = _window_shares(compact, looks.scale)
    owner = np.arange(len(texture.count))
    for _ in range(len(owner) - keep_at_least):
        share = shares / np.maximum(texture.count, 1.0)[:, None]
        mixed = np.minimum(share, share.T) >= _MIXED_SHARE
        dist = texture.distances()
        dist = np.where(
            mixed,
            np.minimum(dist, coarse.distances()),
            np.maximum(dist, colour.distances()),
        )
        a, b = np.unravel_index(int(np.argmin(dist)), dist.shape)
        if not dist[a, b] <= threshold:
            break
        keep, gone = (a, b) if texture.count[a] >= texture.count[b] else (b, a)
        for table in tables:
            table.join(keep, gone)
        shares[keep] += shares[gone]
        shares[:, keep] += shares[:, gone]
        shares[gone] = 0
        shares[:, gone] = 0
        owner[owner == gone] = keep
    _, out = np.unique(owner[compact], return_inverse=True)
    return out.reshape(labels.shape)


def _window_shares(compact: np.ndarray, scale: float) -> np.ndarray:
    """``(K, K)``: row a, column b, the sum over label a's pixels of label b's share of the
    Gaussian window of ``scale`` pixels around them (each label's box plus the window's reach)."""
    from scipy import ndimage as ndi

    size = int(compact.max()) + 1
    shares = np.zeros((size, size))
    reach = int(4.0 * scale + 0.5) + 1
    for b, box in enumerate(ndi.find_objects(compact + 1)):
        if box is None:
            continue
        box = grown_box(box, reach, compact.shape)
        share = ndi.gaussian_filter((compact[box] == b).astype(np.float32), (0, scale, scale))
        shares[:, b] = np.bincount(compact[box].ravel(), share.ravel(), minlength=size)
    return shares


def absorb_thin(labels: np.ndarray) -> np.ndarray:
    """Labels of a stack ``(N, Y, X)`` that are thin everywhere given to the nearest thick
    label in the same plane, but for their islands (see the module docstring); ids 0..K-1."""
    from scipy import ndimage as ndi

    _, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    struct = np.zeros((3, 3, 3), bool)
    struct[1] = ndi.generate_binary_structure(2, 1)  # erode within each plane only
    survival = np.array(
        [
            ndi.binary_erosion(compact == k, struct, _THIN_WIDTH, border_value=1).sum()
            / max(int((compact == k).sum()), 1)
            for k in range(int(compact.max()) + 1)
        ]
    )
    thin = survival < _THIN_SURVIVAL
    if thin.any() and not thin.all():
        absorbed = thin[compact] & ~_islands(compact, thin)
        sampling = (float(compact.size), 1.0, 1.0)  # a step across planes costs the most
        _, nearest = ndi.distance_transform_edt(absorbed, sampling, return_indices=True)
        compact = compact[tuple(nearest)]
    _, out = np.unique(compact, return_inverse=True)
    return out.reshape(labels.shape)


#: The four neighbours in a plane, as (here, there) slices of a (Y, X) array.
_NEIGHBOURS = (
    (np.s_[1:, :], np.s_[:-1, :]),
    (np.s_[:-1, :], np.s_[1:, :]),
    (np.s_[:, 1:], np.s_[:, :-1]),
    (np.s_[:, :-1], np.s_[:, 1:]),
)


def _islands(compact: np.ndarray, thin: np.ndarray) -> np.ndarray:
    """The pixels of the pieces of ``thin`` labels (by id) that one other label encloses
    and that are wider than a rim (some pixel with its four neighbours in the piece)."""
    from skimage.measure import label as connected_pieces

    keep = np.zeros(compact.shape, bool)
    for index, plane in enumerate(compact):
        pieces = connected_pieces(np.where(thin[plane], plane + 1, 0), connectivity=1)
        n = int(pieces.max())
        if n == 0:
            continue
        lowest = np.full(n + 1, np.iinfo(np.int64).max)
        highest = np.full(n + 1, -1)
        core = pieces > 0
        for here, there in _NEIGHBOURS:
            piece, other = pieces[here], plane[there]
            core[here] &= piece == pieces[there]
            edge = (piece > 0) & (plane[here] != other)
            np.minimum.at(lowest, piece[edge], other[edge])
            np.maximum.at(highest, piece[edge], other[edge])
        wide = np.bincount(pieces[core], minlength=n + 1) > 0
        enclosed = (highest >= 0) & (lowest == highest) & wide
        enclosed[0] = False
        keep[index] = enclosed[pieces]
    return keep


def wide_pieces(labels: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The pixels of ``candidates`` (a mask over ``labels`` ``(N, Y, X)``) whose piece, the
    connected pixels of one label in one plane, is no sliver: at least ``_THIN_SURVIVAL`` of
    it is ``_THIN_WIDTH`` pixels or more from any other label."""
    from skimage.measure import label as connected_pieces

    keep = np.zeros(labels.shape, bool)
    for index, plane in enumerate(labels):
        pieces = connected_pieces(np.where(candidates[index], plane + 1, 0), connectivity=1)
        n = int(pieces.max())
        if n == 0:
            continue
        # Pixels whose neighbours within _THIN_WIDTH steps all have their label (the plane's
        # edge counts as the same label, as in the erosions above).
        core = np.ones(plane.shape, bool)
        for _ in range(_THIN_WIDTH):
            grown = core.copy()
            for here, there in _NEIGHBOURS:
                grown[here] &= core[there] & (plane[here] == plane[there])
            core = grown
        size = np.bincount(pieces.ravel(), minlength=n + 1)
        inner = np.bincount(pieces.ravel(), core.ravel(), minlength=n + 1)
        wide = inner >= _THIN_SURVIVAL * size
        wide[0] = False
        keep[index] = wide[pieces]
    return keep


def merge_labels(
    labels: np.ndarray, image: np.ndarray, n_labels: int, protected: np.ndarray | None = None
) -> np.ndarray:
    """Merge labels pairwise until ``n_labels`` remain (Ward's criterion on mean colour).

    Ward's cost ``n_a n_b / (n_a + n_b) * |mean_a - mean_b|^2`` is the increase of
    the within-label colour variance, so it merges the smallest and most similar
    labels first, whether or not they touch. Labels in ``protected`` (scribbled
    classes) are never merged with each other. Returns the same ids (a merged
    pair keeps the protected id, else the larger label's).
    """
    values, inverse = np.unique(labels, return_inverse=True)
    if len(values) <= n_labels:
        return labels
    flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.stack([np.bincount(inverse, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    alive = np.ones(len(values), bool)
    keep = np.isin(values, protected) if protected is not None else np.zeros(len(values), bool)
    parent = np.arange(len(values))
    while alive.sum() > n_labels:
        means = sums / counts[:, None]
        cost = counts[:, None] * counts[None, :] / (counts[:, None] + counts[None, :])
        cost = cost * ((means[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        blocked = ~(alive[:, None] & alive[None, :]) | (keep[:, None] & keep[None, :])
        np.fill_diagonal(blocked, True)
        cost[blocked] = np.inf
        a, b = np.unravel_index(np.argmin(cost), cost.shape)
        if not np.isfinite(cost[a, b]):
            break  # only protected labels are left
        # The survivor is the protected label if there is one, else the larger.
        if (keep[b], counts[b]) > (keep[a], counts[a]):
            a, b = b, a
        sums[a] += sums[b]
        counts[a] += counts[b]
        keep[a] |= keep[b]
        alive[b] = False
        parent[parent == b] = a
    return values[parent][inverse].reshape(labels.shape)
