"""Final merge of the backprop segmenter: labels joined by their colour and texture statistics.

The network's labels (and more so their intersection over several runs, see
:mod:`.backprop_consensus`) over-segment: a textured region (stripes, dots,
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

Last, a label left **thin** everywhere (almost nothing of it survives an erosion
of ``_THIN_WIDTH`` pixels) is no region but a transition: the blurred rim between
a bright object and its background, or the specks of a texture that were not
joined. Its pixels go to the nearest thick label, which puts the rim's split at
its middle, where the intensity is half-way between the two sides.
"""

from __future__ import annotations

import numpy as np

#: Variance floor (squared share of the normalised range): two flat, noise-free
#: labels of almost the same colour are then close, not infinitely far apart.
_VAR_FLOOR = 1e-4
#: Erosion (pixels) that a label must survive in part to count as a region ...
_THIN_WIDTH = 2
#: ... with at least this share of its pixels.
_THIN_SURVIVAL = 0.2


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

    The closest pair first while closer than ``threshold``, then thin labels absorbed;
    with ``n_labels``, then the closest pair first until that many remain, whatever
    their distance. Returns ids 0..K-1 in the shape of ``labels``.
    """
    features = texture_features(planes, scale)
    merged = absorb_thin(_merge_closest(labels, features, threshold, n_labels or 1))
    if n_labels is not None:
        merged = _merge_closest(merged, features, np.inf, n_labels)
    return merged


def _merge_closest(
    labels: np.ndarray, features: np.ndarray, threshold: float, keep_at_least: int
) -> np.ndarray:
    """Join the closest pair while it is within ``threshold`` and more than
    ``keep_at_least`` labels remain; ids 0..K-1."""
    _, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    stats = _LabelStats(compact, features)
    owner = np.arange(len(stats.count))
    for _ in range(len(owner) - keep_at_least):
        dist = stats.distances()
        a, b = np.unravel_index(int(np.argmin(dist)), dist.shape)
        if not dist[a, b] <= threshold:
            break
        keep, gone = (a, b) if stats.count[a] >= stats.count[b] else (b, a)
        stats.join(keep, gone)
        owner[owner == gone] = keep
    _, out = np.unique(owner[compact], return_inverse=True)
    return out.reshape(labels.shape)


def absorb_thin(labels: np.ndarray) -> np.ndarray:
    """Labels of a stack ``(N, Y, X)`` that are thin everywhere given to the nearest thick
    label in the same plane (see the module docstring); ids 0..K-1."""
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
        sampling = (float(compact.size), 1.0, 1.0)  # a step across planes costs the most
        _, nearest = ndi.distance_transform_edt(thin[compact], sampling, return_indices=True)
        compact = compact[tuple(nearest)]
    _, out = np.unique(compact, return_inverse=True)
    return out.reshape(labels.shape)


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
