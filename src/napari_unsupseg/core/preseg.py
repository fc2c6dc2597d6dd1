"""Presegmentation: superpixels from a registry of classic methods.

Every method in :data:`PRESEG_METHODS` takes one channels-last plane ``(Y, X, C)``
with any number of channels and returns **int32 labels numbered 1..n** (no 0),
so a superpixel map can be used directly as a Labels layer. The methods expect
values in [0, 1] (as :func:`~napari_unsupseg.core.images.normalize` gives); any
other input is percentile-normalised first. Keyword arguments are each method's
own knobs, all with defaults, so ``PRESEG_METHODS[name](plane)`` just works.

Colour distances (slic, quickshift, watershed, kmeans) are measured on one scale
whatever the channel count: an RGB plane is converted to CIELAB, any other plane
is scaled to 0..100 per channel (the range of CIELAB lightness). One
``compactness`` therefore means the same thing for grey, RGB and 8-band images.

:func:`presegment` runs one method on a plane from a :class:`PresegParams`;
:func:`run_preseg` is the engine (a plane or a stack, plane by plane).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from .engine import Progress, Result, RunControl, Stopwatch, provenance
from .errors import InputError
from .images import check_image, check_rank, normalize, relabel_sequential
from .params import param, validate

#: CIELAB lightness spans 0..100; non-RGB channels are scaled to the same span.
_COLOUR_SPAN = 100.0


def _unit_float(image: np.ndarray) -> np.ndarray:
    """The plane as float in [0, 1]: kept when it already is, else percentile-normalised."""
    if image.ndim != 3:
        raise InputError(
            f"Presegmentation takes one channels-last plane (Y, X, C); got shape {image.shape}."
        )
    check_image(image)
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0.0 and image.max() <= 1.0:
        return image.astype(np.float32, copy=False)
    return normalize(image)


def _colour_features(image: np.ndarray) -> np.ndarray:
    """Channels on a common 0..100 scale: CIELAB for RGB, linear scaling otherwise."""
    if image.shape[-1] == 3:
        from skimage.color import rgb2lab

        return rgb2lab(image).astype(np.float32)
    return (image * _COLOUR_SPAN).astype(np.float32)


def _grid_step(shape: tuple[int, ...], n_segments: int) -> float:
    """The side of a square superpixel when ``n_segments`` of them tile the plane."""
    return float(np.sqrt(shape[0] * shape[1] / max(n_segments, 1)))


def _from_one(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n (int32) whatever the method's own numbering."""
    _, inverse = np.unique(labels, return_inverse=True)
    return (inverse.reshape(labels.shape) + 1).astype(np.int32)


def felzenszwalb(
    image: np.ndarray, *, scale: float = 64.0, sigma: float = 0.5, min_size: int = 64
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation; any channel count (joint colour distance)."""
    from skimage.segmentation import felzenszwalb as _felzenszwalb

    plane = _unit_float(image)
    with warnings.catch_warnings():
        # scikit-image warns that more than 3 channels "may not be intended"; here it is.
        warnings.simplefilter("ignore", RuntimeWarning)
        labels = _felzenszwalb(
            plane, scale=scale, sigma=sigma, min_size=int(min_size), channel_axis=-1
        )
    return _from_one(labels)


def slic(
    image: np.ndarray,
    *,
    n_segments: int = 1000,
    compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """SLIC superpixels; any channel count (RGB in CIELAB, others scaled to 0..100)."""
    from skimage.segmentation import slic as _slic

    features = _colour_features(_unit_float(image))
    # scikit-image rescales its input to [0, 1] before measuring colour distances;
    # scaling compactness the same way keeps it in the 0..100 colour units documented.
    span = float(features.max() - features.min()) or 1.0
    labels = _slic(
        features,
        n_segments=int(n_segments),
        compactness=compactness / span,
        sigma=sigma,
        channel_axis=-1,
        convert2lab=False,
        start_label=1,
        enforce_connectivity=True,
    )
    return _from_one(labels)


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

    features = _colour_features(_unit_float(image))
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
    return _from_one(labels)


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
    from skimage.filters import sobel
    from skimage.segmentation import watershed as _watershed

    features = _colour_features(_unit_float(image))
    if sigma > 0:
        features = ndi.gaussian_filter(features, sigma=(sigma, sigma, 0))
    gradient = np.sqrt(
        sum(sobel(features[..., c]) ** 2 for c in range(features.shape[-1]))
    ).astype(np.float32)
    step = _grid_step(gradient.shape, n_segments)
    labels = _watershed(gradient, markers=int(n_segments), compactness=compactness / step)
    return _from_one(labels)


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

    features = _colour_features(_unit_float(image))
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
    return _from_one(absorb_small_regions(clusters, min_pieces))


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


from .preseg_spectral import spectral  # noqa: E402 - it reuses slic and the helpers above

PRESEG_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "felzenszwalb": felzenszwalb,
    "slic": slic,
    "quickshift": quickshift,
    "watershed": watershed,
    "kmeans": kmeans,
    "spectral": spectral,
}


@dataclass
class PresegParams:
    """Settings of the presegmentation engine (each method reads the fields it uses)."""

    method: str = param(
        "slic",
        "Superpixel method: slic (compact, regular), felzenszwalb (follows edges, "
        "varied sizes), quickshift (mode seeking, slow), watershed (compact watershed "
        "on the colour gradient), kmeans (k-means on colour and position) or spectral "
        "(normalised cut of a superpixel graph into a few large regions).",
        choices=tuple(PRESEG_METHODS),
    )
    n_segments: int = param(
        1000,
        "About how many superpixels to make (slic, watershed, kmeans; spectral: of "
        "the graph it cuts).",
        min=2,
    )
    compactness: float = param(
        10.0,
        "Shape versus colour (slic, watershed, kmeans): higher gives rounder, more "
        "regular superpixels; colour is measured on a 0..100 scale.",
        min=0.0,
    )
    scale: float = param(
        32.0,
        "Felzenszwalb: larger values give fewer, larger superpixels.",
        min=0.0,
    )
    sigma: float = param(
        0.5,
        "Gaussian smoothing (pixels) before segmenting (all methods but kmeans).",
        min=0.0,
    )
    min_size: int = param(
        64,
        "Felzenszwalb: smallest superpixel in pixels; smaller ones are merged.",
        min=1,
    )
    n_regions: int = param(
        8,
        "Spectral: how many regions to cut the superpixel graph into; 0 = as many as "
        "the cut threshold allows.",
        min=0,
    )
    cut_threshold: float = param(
        0.05,
        "Spectral with 0 regions: keep splitting a region while its best two-way "
        "normalised cut costs less than this (0..2; higher gives more regions).",
        min=0.0,
        max=2.0,
        advanced=True,
    )
    kernel_size: float = param(
        3.0,
        "Quickshift: width of the Gaussian kernel; larger gives fewer superpixels.",
        min=0.5,
        advanced=True,
    )
    max_dist: float = param(
        6.0,
        "Quickshift: cut-off distance; larger gives fewer superpixels.",
        min=0.0,
        advanced=True,
    )
    ratio: float = param(
        0.5,
        "Quickshift: colour versus position (0..1); higher weighs colour more.",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    norm_low: float = param(
        1.0,
        "Lower percentile mapped to 0 when normalising each channel.",
        min=0.0,
        max=100.0,
        advanced=True,
    )
    norm_high: float = param(
        99.0,
        "Upper percentile mapped to 1 when normalising each channel.",
        min=0.0,
        max=100.0,
        advanced=True,
    )
    seed: int = param(0, "Random seed (quickshift, kmeans).", min=0, advanced=True)


def method_kwargs(params: PresegParams) -> dict[str, object]:
    """The fields of ``params`` that the chosen method accepts, as keyword arguments."""
    function = PRESEG_METHODS[params.method]
    accepted = inspect.signature(function).parameters
    return {name: getattr(params, name) for name in accepted if hasattr(params, name)}


def presegment(image: np.ndarray, params: PresegParams | None = None) -> np.ndarray:
    """Superpixels (int32, 1..n) of one channels-last plane ``(Y, X, C)``."""
    params = params or PresegParams()
    validate(params)
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(
            f"Presegmentation takes one channels-last plane (Y, X, C); got shape {image.shape}."
        )
    check_image(image)
    plane = normalize(image, params.norm_low, params.norm_high)
    return PRESEG_METHODS[params.method](plane, **method_kwargs(params))


def run_preseg(
    image: np.ndarray, params: PresegParams | None = None, *, control: RunControl | None = None
) -> Generator[Progress, None, Result]:
    """The presegmentation engine for a plane ``(Y, X, C)`` or a stack ``(N, Y, X, C)``.

    Planes are segmented one by one (one :class:`Progress` each) after one
    normalisation of the whole stack, so every plane shares one intensity scale.
    The labels are numbered 1..K in order of first appearance, unique across the
    stack, as uint16 or uint32; the shape is ``(Y, X)`` or ``(N, Y, X)``. Asked to
    finish early (``control``), it returns the planes done so far and 0 elsewhere.
    """
    params = params or PresegParams()
    validate(params)
    image = np.asarray(image)
    check_rank(image, "Presegmentation takes")
    check_image(image)
    clock = Stopwatch()
    stack = normalize(image, params.norm_low, params.norm_high)
    planes = stack[np.newaxis] if image.ndim == 3 else stack
    function = PRESEG_METHODS[params.method]
    kwargs = method_kwargs(params)
    clock.lap("normalise")
    labels = np.zeros(planes.shape[:3], dtype=np.int64)
    offset = 0
    done = 0
    for index, plane in enumerate(planes):
        if control is not None and control.stop_requested:
            break
        plane_labels = function(plane, **kwargs)
        done = index + 1
        labels[index] = plane_labels.astype(np.int64) + offset
        offset = int(labels[index].max())
        yield Progress(
            step=index + 1,
            total=len(planes),
            n_labels=int(plane_labels.max()),
            message=f"plane {index + 1}/{len(planes)}: {int(plane_labels.max())} superpixels",
        )
    clock.lap("segment")
    labels = relabel_sequential(labels)
    if image.ndim == 3:
        labels = labels[0]
    n_labels = int(labels.max())
    metadata = provenance(
        "preseg",
        params,
        seed=params.seed,
        device="cpu",
        timings=clock.total(),
        n_labels=n_labels,
        n_planes=len(planes),
        planes_done=done,
        stopped_early=done < len(planes),
    )
    return Result(labels=labels, metadata=metadata)
