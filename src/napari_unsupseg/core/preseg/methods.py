"""The classic superpixel methods of presegmentation, one function each, and the helpers
they share (colour scale, renumbering, absorbing specks).

Every method takes one channels-last plane ``(Y, X, C)`` with any number of channels
and returns **int32 labels numbered 1..n** (no 0). Colour distances (slic, quickshift,
watershed, kmeans) are measured on one scale whatever the channel count: an RGB plane
is converted to CIELAB, any other plane is scaled to 0..100 per channel (the range of
CIELAB lightness), so one ``compactness`` means the same for grey, RGB and 8-band images.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..base.errors import InputError
from ..base.images import check_image, gradient_magnitude, normalize

#: CIELAB lightness spans 0..100; non-RGB channels are scaled to the same span.
_COLOUR_SPAN = 100.0


def unit_float(image: np.ndarray) -> np.ndarray:
    """The plane as float in [0, 1]: kept when it already is, else percentile-normalised."""
    if image.ndim != 3:
        raise InputError(
            f"Presegmentation takes one channels-last plane (Y, X, C); got shape {image.shape}."
        )
    check_image(image)
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0.0 and image.max() <= 1.0:
        return image.astype(np.float32, copy=False)
    return normalize(image)


def colour_features(image: np.ndarray) -> np.ndarray:
    """Channels on a common 0..100 scale: CIELAB for RGB, linear scaling otherwise."""
    if image.shape[-1] == 3:
        from skimage.color import rgb2lab

        return rgb2lab(image).astype(np.float32)
    return (image * _COLOUR_SPAN).astype(np.float32)


def _grid_step(shape: tuple[int, ...], n_segments: int) -> float:
    """The side of a square superpixel when ``n_segments`` of them tile the plane."""
    return float(np.sqrt(shape[0] * shape[1] / max(n_segments, 1)))


def from_one(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n (int32) whatever the method's own numbering."""
    _, inverse = np.unique(labels, return_inverse=True)
    return (inverse.reshape(labels.shape) + 1).astype(np.int32)


def felzenszwalb(
    image: np.ndarray, *, scale: float = 64.0, sigma: float = 0.5, min_size: int = 64
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation; any channel count (joint colour distance)."""
    from skimage.segmentation import felzenszwalb as _felzenszwalb

    plane = unit_float(image)
    with warnings.catch_warnings():
        # scikit-image warns that more than 3 channels "may not be intended"; here it is.
        warnings.simplefilter("ignore", RuntimeWarning)
        labels = _felzenszwalb(
            plane, scale=scale, sigma=sigma, min_size=int(min_size), channel_axis=-1
        )
    return from_one(labels)


def slic(
    image: np.ndarray,
    *,
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """SLIC superpixels; any channel count (RGB in CIELAB, others scaled to 0..100)."""
    return slic_of_features(colour_features(unit_float(image)), n_segments=n_segments,
                            compactness=compactness, sigma=sigma)


def slic_of_features(
    features: np.ndarray,
    *,
    n_segments: int,
    compactness: float,
    sigma: float,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """scikit-image's SLIC on colour features ``(..., C)`` of a plane or a volume (with the
    voxel ``spacing``), labels 1..n."""
    from skimage.segmentation import slic as _slic

    # scikit-image rescales its input to [0, 1] before measuring colour distances;
    # scaling compactness the same way keeps it in the 0..100 colour units documented.
    span = float(features.max() - features.min()) or 1.0
    labels = _slic(
        features,
        n_segments=int(n_segments),
        compactness=compactness / span,
        # A scalar sigma is divided by the spacing: it is in units of the finest axis.
        sigma=sigma,
        spacing=None if spacing is None else np.asarray(spacing, dtype=float),
        channel_axis=-1,
        convert2lab=False,
        start_label=1,
        enforce_connectivity=True,
    )
    return from_one(labels)


def quickshift(
    image: np.ndarray,
    *,
    kernel_size: float = 3.0,
    max_dist: float = 6.0,
    ratio: float = 0.5,
    sigma: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Quick shift mode seeking; any channel count.

    scikit-image's own Lab conversion only takes RGB, so the conversion is done
    here (RGB in CIELAB, other channel counts scaled to 0..100) and handed over
    with ``convert2lab=False``: grey and multichannel planes work too.
    """
    from skimage.segmentation import quickshift as _quickshift

    features = colour_features(unit_float(image))
    labels = _quickshift(
        features.astype(np.float64),
        kernel_size=kernel_size,
        max_dist=max_dist,
        ratio=ratio,
        sigma=sigma,
        convert2lab=False,
        channel_axis=-1,
        rng=seed,
    )
    return from_one(labels)


def watershed(
    image: np.ndarray,
    *,
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """Compact watershed of the colour gradient from a regular grid of ``n_segments`` seeds.

    The gradient is the Sobel magnitude summed in quadrature over channels (on
    the common 0..100 scale); ``compactness`` is divided by the grid step, as in
    SLIC's distance, so the same value gives similar shapes at any image size.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed as _watershed

    features = colour_features(unit_float(image))
    if sigma > 0:
        features = ndi.gaussian_filter(features, sigma=(sigma, sigma, 0))
    gradient = gradient_magnitude(features).astype(np.float32)
    step = _grid_step(gradient.shape, n_segments)
    labels = _watershed(gradient, markers=int(n_segments), compactness=compactness / step)
    return from_one(labels)


def kmeans(
    image: np.ndarray,
    *,
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
    n_iter: int = 10,
    seed: int = 0,
    max_samples: int = 20000,
) -> np.ndarray:
    """k-means on colour + position, then split into connected superpixels.

    Features are the smoothed colour (common 0..100 scale) and the pixel position
    weighted by ``compactness / grid step`` (SLIC's distance without its search
    window). The centres are fitted on at most ``max_samples`` pixels, then every
    pixel is assigned to its nearest centre. A cluster that falls apart gives one
    superpixel per piece, and pieces smaller than a quarter of the grid cell (noise
    specks) are absorbed by their nearest neighbour, as SLIC enforces connectivity.
    Pure numpy/scipy.
    """
    from scipy import ndimage as ndi
    from scipy.cluster.vq import kmeans2, vq

    features = colour_features(unit_float(image))
    if sigma > 0:
        features = ndi.gaussian_filter(features, sigma=(sigma, sigma, 0))
    height, width, channels = features.shape
    weight = compactness / _grid_step((height, width), n_segments)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    data = np.concatenate(
        [features.reshape(-1, channels), yy.reshape(-1, 1) * weight, xx.reshape(-1, 1) * weight],
        axis=1,
    )
    n_pixels = data.shape[0]
    k = int(min(n_segments, n_pixels))
    rng = np.random.default_rng(seed)
    sample = data[rng.choice(n_pixels, size=min(max_samples, n_pixels), replace=False)]
    k = min(k, sample.shape[0])
    # Centres on a regular grid (like SLIC's) converge faster than random ones.
    init = _grid_centres(features, weight, k)
    with warnings.catch_warnings():
        # An empty cluster only means fewer superpixels; not worth a warning.
        warnings.simplefilter("ignore", UserWarning)
        centres, _ = kmeans2(sample, init, iter=int(n_iter), minit="matrix", seed=seed)
    assignment, _ = vq(data, centres, check_finite=False)
    clusters = assignment.reshape(height, width).astype(np.int32)
    min_pieces = max(1, int(_grid_step((height, width), n_segments) ** 2 / 4))
    return from_one(absorb_small_regions(clusters, min_pieces))


def absorb_small_regions(
    labels: np.ndarray, min_size: int, *, keep_ids: bool = False
) -> np.ndarray:
    """Give connected pieces of a plane ``(Y, X)`` under ``min_size`` pixels to their neighbours.

    Each pixel of a small piece takes the value of the nearest pixel of a piece
    that is kept (an exact Euclidean distance transform), so a speck joins the
    region around it and a thin sliver is shared among its neighbours. Returns
    one id per connected piece, or with ``keep_ids`` the original label values
    (a label may then still be several pieces, each at least ``min_size``).
    When no piece is large enough, nothing is absorbed.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label as connected

    pieces = connected(labels, background=-1, connectivity=1)
    source = labels if keep_ids else pieces
    if min_size <= 1:
        return source
    sizes = np.bincount(pieces.ravel())
    small = sizes[pieces] < min_size
    if not small.any() or small.all():
        return source
    _, (iy, ix) = ndi.distance_transform_edt(small, return_indices=True)
    return source[iy, ix]


def _grid_centres(features: np.ndarray, weight: float, k: int) -> np.ndarray:
    """``k`` initial centres on a regular grid: the colour there plus the weighted position."""
    height, width, _ = features.shape
    rows = max(1, int(round(np.sqrt(k * height / width))))
    cols = max(1, int(np.ceil(k / rows)))
    ys = ((np.arange(rows) + 0.5) * height / rows).astype(int)
    xs = ((np.arange(cols) + 0.5) * width / cols).astype(int)
    gy, gx = (a.ravel()[:k] for a in np.meshgrid(ys, xs, indexing="ij"))
    return np.concatenate(
        [features[gy, gx], gy[:, None] * weight, gx[:, None] * weight], axis=1
    ).astype(np.float64)
