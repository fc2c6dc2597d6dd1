"""Spectral clustering (normalised cut) of a superpixel graph: a few large regions.

Cutting the pixel graph itself (Shi & Malik, "Normalized cuts and image
segmentation", 2000) needs an eigensolver on millions of nodes. Like
scikit-image's ``graph.cut_normalized`` we cut a *region-adjacency graph* of
superpixels instead, so the cost depends on the superpixel count, not the image
size:

1. SLIC superpixels (``n_segments``; see :func:`.preseg.slic`);
2. each superpixel is described by its colour and texture (the local mean and
   standard deviation of each channel in a small window around each of its pixels,
   averaged over it), on the common 0..100 colour scale;
3. neighbouring superpixels are joined by an edge of weight
   ``exp(-(d_colour / s_c)^2 - (d_texture / s_t)^2)``, each scale ``s`` three times
   the median of that distance over all edges (self-tuning: most edges join
   superpixels of one region, so one setting suits any image), times the length
   of their shared border (long borders bind harder);
4. the graph is cut:

   - ``n_regions > 0``: into that many regions by the multiway relaxation of the
     normalised cut (Ng, Jordan & Weiss 2002): the ``n_regions`` leading
     eigenvectors of ``D^-1/2 W D^-1/2`` (degrees regularised, Qin & Rohe 2013;
     ``scipy.sparse.linalg.eigsh``), rows normalised to unit length, clustered by
     k-means (best of several restarts);
   - ``n_regions == 0``: by recursive two-way normalised cuts (Shi & Malik), each
     region split along its Fiedler vector at the threshold of least normalised
     cut, for as long as that cut costs less than ``cut_threshold``.

The labels are int32 ``1..n`` (a region may be several separate pieces when they
look alike). Implemented with numpy and scipy only: scikit-image's
``graph.cut_normalized`` is not in every version it supports.
"""

from __future__ import annotations

import numpy as np

from ..base.images import neighbour_pixel_pairs
from .methods import colour_features, from_one, slic, unit_float

#: Graphs up to this many superpixels are solved with a dense eigensolver (fast and
#: exact there); larger ones with scipy's sparse one.
_DENSE_UP_TO = 200
#: SLIC compactness of the graph's superpixels: compact tiles, so that a superpixel
#: spans a few periods of a texture instead of following one stripe of it.
SUPERPIXEL_COMPACTNESS = 30.0
#: Window (Gaussian sigma, pixels) in which each pixel's colour and texture are measured.
WINDOW = 1.0
#: Affinity scale, in medians of the edge distances: most edges join superpixels of
#: one region, so a few medians is "alike" and the borders between regions are far out.
SCALE = 3.0
#: Degree regularisation of the normalised affinity (a share of the mean degree).
REG = 0.1


def superpixel_graph(
    features: np.ndarray, superpixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region descriptors and the weighted adjacency of a superpixel map.

    ``features``: ``(Y, X, C)`` colour on the common 0..100 scale; ``superpixels``:
    ``(Y, X)`` labels 1..n. Returns per-region mean colour ``(n, C)``, texture
    ``(n, C)`` (per-channel standard deviation) and a sparse symmetric weight
    matrix ``(n, n)`` (CSR; no entry between regions that do not touch).
    """
    from scipy import sparse

    labels = superpixels.astype(np.int64) - 1
    n = int(labels.max()) + 1
    from scipy import ndimage as ndi

    # Colour and texture measured in a window around each pixel, then averaged over
    # each superpixel: a superpixel that follows one stripe of a striped region still
    # gets the region's colour and texture, not the stripe's.
    window = (WINDOW, WINDOW, 0)
    local = ndi.gaussian_filter(features.astype(np.float64), window)
    spread = np.sqrt(np.maximum(ndi.gaussian_filter(features.astype(np.float64) ** 2, window)
                                - local**2, 0.0))
    index = labels.ravel()
    count = np.bincount(index, minlength=n).astype(np.float64)[:, None]

    def average(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(-1, values.shape[-1])
        return np.stack([np.bincount(index, flat[:, c], n) for c in range(flat.shape[1])],
                        1) / count

    mean, texture = average(local), average(spread)
    # Shared border lengths from the horizontal and vertical neighbour pairs.
    first, second = neighbour_pixel_pairs(labels)
    pairs = np.stack([index[first], index[second]], 1)
    pairs = np.sort(pairs, axis=1)  # (low, high): each border counted on one side
    border = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                               shape=(n, n)).tocsr().tocoo()  # duplicates summed
    i, j, length = border.row, border.col, border.data
    d_colour = np.sqrt(((mean[i] - mean[j]) ** 2).sum(1))
    d_texture = np.sqrt(((texture[i] - texture[j]) ** 2).sum(1))
    s_colour = SCALE * max(float(np.median(d_colour)), 1e-3) if len(i) else 1.0
    s_texture = SCALE * max(float(np.median(d_texture)), 1e-3) if len(i) else 1.0
    affinity = np.exp(-(d_colour / s_colour) ** 2 - (d_texture / s_texture) ** 2)
    # Border length relative to a typical superpixel side, so the scale of the image
    # does not matter.
    side = np.sqrt(count.mean())
    weights = sparse.coo_matrix((affinity * length / side, (i, j)), shape=(n, n)).tocsr()
    return mean, texture, (weights + weights.T).tocsr()


def _normalised_affinity(weights):
    """``D^-1/2 W D^-1/2`` (sparse) and the degrees ``D`` of a sparse weight matrix."""
    from scipy import sparse

    degree = np.asarray(weights.sum(1)).ravel() + 1e-12
    # Regularised (Qin & Rohe 2013): every degree is raised by the mean degree, so a
    # superpixel that hardly resembles any neighbour (one straddling a border) does not
    # become a component of its own that takes an eigenvector.
    scale = sparse.diags(1.0 / np.sqrt(degree + REG * degree.mean()))
    return (scale @ weights @ scale).tocsr(), degree


def _leading_eigenvectors(matrix, k: int, seed: int) -> np.ndarray:
    """The ``k`` eigenvectors of the largest eigenvalues of ``M = D^-1/2 W D^-1/2``.

    Small graphs are solved densely. For large ones the leading eigenvalues of
    ``M`` crowd near 1 (regions that barely touch), where plain Lanczos iterations
    converge slowly, so ARPACK is run in shift-invert mode on the normalised
    Laplacian ``I - M`` just below 0: its smallest eigenvalues become the best
    separated ones.
    """
    n = matrix.shape[0]
    if n <= _DENSE_UP_TO or k >= n - 1:
        values, vectors = np.linalg.eigh(matrix.toarray())
        return vectors[:, np.argsort(values)[::-1][:k]]
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    laplacian = (sparse.identity(n, format="csc") - matrix.tocsc()).tocsc()
    start = np.random.default_rng(seed).uniform(0.5, 1.0, n)
    values, vectors = eigsh(laplacian, k=k, sigma=-1e-3, which="LM", v0=start)
    return vectors[:, np.argsort(values)]


def multiway_cut(weights, n_regions: int, seed: int = 0) -> np.ndarray:
    """Cluster a graph's nodes into ``n_regions`` (0-based ids) by spectral clustering."""
    from scipy.cluster.vq import kmeans2

    n = weights.shape[0]
    k = min(n_regions, n)
    if k <= 1:
        return np.zeros(n, np.int64)
    matrix, _ = _normalised_affinity(weights)
    embedding = _leading_eigenvectors(matrix, k, seed)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True) + 1e-12
    best, best_cost = None, np.inf
    rng = np.random.default_rng(seed)
    for _ in range(8):  # k-means restarts: the lowest within-cluster spread wins
        _, assignment = kmeans2(embedding, k, minit="++", seed=rng)
        centres = np.stack([embedding[assignment == c].mean(0) if (assignment == c).any()
                            else np.zeros(k) for c in range(k)])
        cost = float(((embedding - centres[assignment]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = assignment, cost
    return np.unique(best, return_inverse=True)[1]


def _ncut(weights, degree: np.ndarray, side: np.ndarray) -> float:
    """Normalised-cut cost of splitting a graph (sparse weights, degrees) into ``side``
    and the rest: ``cut / assoc(side) + cut / assoc(rest)``."""
    inside = np.flatnonzero(side)
    outside = np.flatnonzero(~side)
    cut = float(weights[inside][:, outside].sum())
    return cut / (degree[side].sum() + 1e-12) + cut / (degree[~side].sum() + 1e-12)


def recursive_cut(weights, threshold: float, max_regions: int = 256) -> np.ndarray:
    """Recursive two-way normalised cuts while a cut costs less than ``threshold``."""
    labels = np.zeros(weights.shape[0], np.int64)
    queue = [np.arange(weights.shape[0])]
    next_id = 1
    while queue and next_id < max_regions:
        nodes = queue.pop()
        if len(nodes) < 2:
            continue
        sub = weights[nodes][:, nodes]
        matrix, degree = _normalised_affinity(sub)
        vectors = _leading_eigenvectors(matrix, 2, seed=0)
        fiedler = vectors[:, 1] / np.sqrt(degree)  # back to the generalised problem
        best, best_cost = None, np.inf
        for level in np.unique(np.quantile(fiedler, np.linspace(0.05, 0.95, 19))):
            side = fiedler > level
            if side.all() or not side.any():
                continue
            cost = _ncut(sub, degree, side)
            if cost < best_cost:
                best, best_cost = side, cost
        if best is None or best_cost >= threshold:
            continue
        labels[nodes[best]] = next_id
        next_id += 1
        queue += [nodes[best], nodes[~best]]
    return np.unique(labels, return_inverse=True)[1]


def spectral(
    image: np.ndarray,
    *,
    n_regions: int = 8,
    cut_threshold: float = 0.05,
    n_segments: int = 400,
    sigma: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Normalised-cut regions (int32, 1..n) of one channels-last plane ``(Y, X, C)``.

    ``n_regions``: how many regions to cut the superpixel graph into; 0 cuts
    recursively while a two-way cut costs less than ``cut_threshold`` (0..2: a
    lower threshold gives fewer regions). ``n_segments`` and ``sigma`` are those of
    the SLIC superpixels the graph is built on (compact ones, see
    :data:`SUPERPIXEL_COMPACTNESS`); each should span a few periods of the
    coarsest texture.
    """
    plane = unit_float(image)
    superpixels = slic(plane, n_segments=n_segments, compactness=SUPERPIXEL_COMPACTNESS,
                       sigma=sigma)
    _, _, weights = superpixel_graph(colour_features(plane), superpixels)
    if n_regions > 0:
        regions = multiway_cut(weights, n_regions, seed)
    else:
        regions = recursive_cut(weights, cut_threshold)
    return from_one(regions[superpixels - 1])
