"""Presegmentation: superpixels from a registry of classic methods.

Every method in :data:`PRESEG_METHODS` takes one channels-last plane ``(Y, X, C)``
with any number of channels and returns **int32 labels numbered 1..n** (no 0),
so a superpixel map can be used directly as a Labels layer. The methods expect
values in [0, 1] (as :func:`~napari_unsupseg.core.base.images.normalize` gives); any
other input is percentile-normalised first. Keyword arguments are each method's
own knobs, all with defaults, so ``PRESEG_METHODS[name](plane)`` just works.

Colour distances (slic, quickshift, watershed, kmeans) are measured on one scale
whatever the channel count: an RGB plane is converted to CIELAB, any other plane
is scaled to 0..100 per channel (the range of CIELAB lightness). One
``compactness`` therefore means the same thing for grey, RGB and 8-band images.

:func:`presegment` runs one method on a plane from a :class:`PresegParams`;
:func:`run_preseg` is the engine (a plane, or a stack plane by plane or as one volume).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ..base.engine import Progress, Result, RunControl, Stopwatch, provenance
from ..base.errors import InputError
from ..base.images import check_image, check_rank, normalize, relabel_sequential
from ..base.params import param, validate
from .methods import felzenszwalb, kmeans, quickshift, slic, watershed
from .spectral import spectral
from .volume import slic_volume, watershed_volume

PRESEG_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "felzenszwalb": felzenszwalb,
    "slic": slic,
    "quickshift": quickshift,
    "watershed": watershed,
    "kmeans": kmeans,
    "spectral": spectral,
}
#: The methods that segment a stack as one volume (``stack_mode="volume"``), by name.
VOLUME_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "slic": slic_volume,
    "watershed": watershed_volume,
}
STACK_MODES = ("planes", "volume")


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
        label="low percentile",
        advanced=True,
    )
    norm_high: float = param(
        99.0,
        "Upper percentile mapped to 1 when normalising each channel.",
        min=0.0,
        max=100.0,
        label="high percentile",
        advanced=True,
    )
    seed: int = param(0, "Random seed (quickshift, kmeans).", min=0, advanced=True)
    stack_mode: str = param(
        "planes",
        "For a stack (z or t): 'planes' segments each plane on its own; 'volume' (slic, "
        "watershed) segments a z-stack as one volume, so superpixels span planes and "
        "n_segments counts them in the whole volume.",
        choices=STACK_MODES,
    )
    spacing_z: float = param(
        1.0, "Volume mode: distance between planes, in the unit of spacing_y and spacing_x "
        "(only the ratios matter).", min=1e-6, label="z spacing")
    spacing_y: float = param(
        1.0, "Volume mode: voxel height (y).", min=1e-6, label="y spacing", advanced=True)
    spacing_x: float = param(
        1.0, "Volume mode: voxel width (x).", min=1e-6, label="x spacing", advanced=True)


def method_fields(method: str) -> frozenset[str]:
    """The :class:`PresegParams` fields that ``method`` reads (a form shows only these
    besides the shared ones: the others would change nothing)."""
    names = {f.name for f in dataclasses.fields(PresegParams)}
    return frozenset(inspect.signature(PRESEG_METHODS[method]).parameters) & names


def method_kwargs(params: PresegParams) -> dict[str, object]:
    """The fields of ``params`` that the chosen method accepts, as keyword arguments."""
    function = PRESEG_METHODS[params.method]
    accepted = inspect.signature(function).parameters
    return {name: getattr(params, name) for name in accepted if hasattr(params, name)}


def check_volume_mode(params: PresegParams) -> None:
    """Refuse volume mode for a method that only segments planes, in one sentence."""
    if params.stack_mode == "volume" and params.method not in VOLUME_METHODS:
        raise InputError(
            f"{params.method.capitalize()} segments one plane at a time; for volume mode "
            f"choose {' or '.join(VOLUME_METHODS)}, or segment the stack plane by plane."
        )


def segment_volume(volume: np.ndarray, params: PresegParams) -> np.ndarray:
    """Supervoxels (int32, 1..n) of a normalised channels-last volume ``(Z, Y, X, C)``."""
    check_volume_mode(params)
    function = VOLUME_METHODS[params.method]
    kwargs = method_kwargs(params)
    kwargs["spacing"] = (params.spacing_z, params.spacing_y, params.spacing_x)
    return function(volume, **kwargs)


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

    With ``stack_mode="volume"`` a stack is one volume ``(Z, Y, X, C)`` with the voxel
    spacing of the parameters (:mod:`.volume`): one step, supervoxels spanning planes.
    """
    params = params or PresegParams()
    validate(params)
    check_volume_mode(params)
    image = np.asarray(image)
    check_rank(image, "Presegmentation takes")
    check_image(image)
    clock = Stopwatch()
    stack = normalize(image, params.norm_low, params.norm_high)
    planes = stack[np.newaxis] if image.ndim == 3 else stack
    clock.lap("normalise")
    as_volume = params.stack_mode == "volume" and image.ndim == 4
    if as_volume:
        # One step that cannot be interrupted: a volume has no planes done to return.
        labels = segment_volume(planes, params).astype(np.int64)
        done = len(planes)
        yield Progress(step=1, total=1, n_labels=int(labels.max()),
                       message=f"volume: {int(labels.max())} supervoxels")
    else:
        labels, done = yield from _segment_planes(planes, params, control)
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
        segmented_as="volume" if as_volume else "planes",
        planes_done=done,
        stopped_early=done < len(planes),
    )
    return Result(labels=labels, metadata=metadata)


def _segment_planes(
    planes: np.ndarray, params: PresegParams, control: RunControl | None
) -> Generator[Progress, None, tuple[np.ndarray, int]]:
    """Each plane of a normalised stack on its own, ids running on; (labels, planes done)."""
    function = PRESEG_METHODS[params.method]
    kwargs = method_kwargs(params)
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
    return labels, done
