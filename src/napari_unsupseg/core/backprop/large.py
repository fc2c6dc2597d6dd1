"""The backprop segmenter for images whose whole-image run would not fit in memory.

The whole-image engine (:mod:`.engine`) trains on a shrunk copy of the image and then
labels every pixel in one forward pass, with that pass's batch statistics: the pass
holds every layer's activations for the whole image. Here the same network is

1. **trained on the same shrunk copy**, made a band of rows at a time: the same loop,
   stopping rules and previews as the whole-image engine, so that both paths see the
   same picture of the scene and find the same regions, whatever the image's size
   (training on random full-size crops instead found other regions: Hungarian mIoU
   0.76 against 0.88 on a 1,000^2 seven-region textured mosaic, in 19x the time);
2. **calibrated**: the batch-norm statistics are re-estimated over random full-size
   crops for the final weights, so that the network becomes one fixed per-pixel
   function with the statistics of the full-size pass;
3. **applied tile by tile** in evaluation mode. Each tile is read with a margin wider
   than the network's receptive field and than a superpixel, the superpixels are
   computed and vote on the whole extended tile, and only the tile's core is written:
   the response is identical on both sides of a tile border, so there is no seam.
   Superpixel ids are made unique across tiles. On single-channel images the labels are
   cut at the two-class level and the outlines placed on the extended tile, as the
   whole-image engine does (:mod:`.boundaries`; the level is read off the shrunk copy).
4. **joined across weak edges** as the whole-image engine's last step does, a band of rows
   at a time with the same result (:func:`.weak_edges.join_weak_edges_by_bands`).

Only the input, the labels and the superpixel map are image-sized; the rest is
bounded by the budget. ``n_labels`` merging is decided on a regular subsample of
pixels (colours smoothed at full resolution first) and applied to the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.device import describe, resolve_device
from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.images import check_image, check_rank, intensity_range, label_dtype, scale_to_unit
from ..base.memory import keep_heap_mapped
from ..preseg import absorb_small_regions
from .boundaries import (
    FINAL_ROUNDS,
    place_boundaries,
    smoothed_colour,
    split_at_levels,
    two_class_levels,
)
from .calibrate import calibrate, full_size_crops
from .finish import finish_labels
from .params import (
    DEFAULT_FEATURES,
    MERGE_SIGMA,
    NORMALISE_PERCENTILES,
    BackpropParams,
    level_split,
    outlines_placed,
    stabilise_intensities,
)
from .superpixels import (
    plane_superpixels,
    superpixel_method,
    training_ignore,
    training_pixels,
    training_planes,
    vote,
)
from .train import NetworkRun, train_network
from .weak_edges import join_weak_edges_by_bands

if TYPE_CHECKING:
    import torch

#: Tiles read this many pixels beyond their core: more than the networks' receptive
#: field (a few pixels) and room for a superpixel that crosses the border to vote whole.
TILE_MARGIN = 32
#: Pixels of each tile kept for deciding the n_labels merges (a regular subsample).
_MERGE_SAMPLE = 2_000_000
#: The smallest shrunk copy trained on, whatever the budget.
_MIN_TRAIN_PIXELS = 4096
#: Resident memory of the Python process with PyTorch, NumPy and scikit-image loaded
#: (measured: 330-380 MB on Linux, CPU build), counted in the budget.
RUNTIME_BYTES = 384 * 2**20


@dataclass(frozen=True)
class CropPlan:
    """How a large image is trained and labelled."""

    train_pixels: int  # pixels of the shrunk copy trained on (per plane)
    crop: int  # side of a full-size calibration crop
    tile: int  # side of a labelled tile's core


def _widths(params: BackpropParams) -> list[int]:
    features = params.n_features or DEFAULT_FEATURES[params.network]
    if params.network == "kanezaki":
        return [features] * (params.n_conv + 1)
    return [64, features, 64, features]


def training_bytes_per_pixel(params: BackpropParams, channels: int) -> int:
    """Training memory per pixel: each layer's conv, norm and gradient buffers, the
    loss's softmax. Fitted to whole-image CPU runs on 4-band images (peak resident
    memory: fast 3,430-3,550 B/px at 512^2 and 768^2, kanezaki 5,880 B/px)."""
    widths = _widths(params)
    return 4 * (4 * sum(widths) + 2 * widths[-1] + 4 * channels) + 64


def labelling_bytes_per_pixel(params: BackpropParams, channels: int) -> int:
    """Memory per pixel of one tile: two layers alive at a time, the superpixels, the vote."""
    return 4 * (3 * max(_widths(params)) + 2 * channels) + 160


def training_bytes(shape: tuple[int, ...], params: BackpropParams) -> int:
    """Memory of whole-image training of a ``(..., Y, X, C)`` image (what the budget checks)."""
    pixels = math.prod(shape[:-1])
    if params.stack_mode == "planes" and len(shape) == 4:
        pixels //= shape[0]  # one plane trains at a time
    channels = shape[-1]
    need = pixels * training_bytes_per_pixel(params, channels)
    area = math.prod(shape[-3:-1])
    trained_area = training_pixels(area, params.train_pixels)
    if trained_area is not None and area > trained_area:
        # Training on a shrunk copy, then one forward pass over the full-size planes.
        trained = trained_area * (pixels // area)
        need = (trained * training_bytes_per_pixel(params, channels)
                + pixels * labelling_bytes_per_pixel(params, channels))
    return need


def needs_crops(shape: tuple[int, ...], params: BackpropParams, itemsize: int = 2) -> bool:
    """Whether the whole-image run of a ``(..., Y, X, C)`` image, with the input and the
    runtime, exceeds the budget."""
    need = training_bytes(shape, params) + _input_bytes(shape, itemsize) + RUNTIME_BYTES
    return need > params.memory_budget_mb * 2**20


def _input_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


def crops_bytes(shape: tuple[int, ...], params: BackpropParams, itemsize: int = 2) -> int:
    """Memory the large path adds to the input and the runtime: the labels (uint16) and
    superpixel ids (uint32) of the whole image, and the larger of the shrunk copy's
    training and one tile's labelling (both sized by :func:`plan`)."""
    layout = plan(shape, params, itemsize)
    channels = shape[-1]
    training = layout.train_pixels * training_bytes_per_pixel(params, channels)
    tile = (layout.tile + 2 * TILE_MARGIN) ** 2 * labelling_bytes_per_pixel(params, channels)
    return math.prod(shape[:-1]) * (2 + 4) + max(training, tile)


def plan(shape: tuple[int, ...], params: BackpropParams, itemsize: int = 2) -> CropPlan:
    """Training size and tile size that keep the whole run within the budget, input and
    runtime included (a budget too small for them still runs, with the smallest sizes)."""
    channels = shape[-1]
    left = (params.memory_budget_mb * 2**20 - RUNTIME_BYTES - _input_bytes(shape, itemsize)
            - math.prod(shape[:-1]) * (2 + 4))
    fit = int(math.sqrt(max(left, 0) / labelling_bytes_per_pixel(params, channels)))
    tile = max(64, min(params.tile_size, fit - 2 * TILE_MARGIN))
    most = max(_MIN_TRAIN_PIXELS, left // training_bytes_per_pixel(params, channels))
    train = int(min(training_pixels(shape[-3] * shape[-2], params.train_pixels) or most, most))
    crop = max(16, min(params.crop_size, shape[-3], shape[-2]))
    return CropPlan(train_pixels=train, crop=crop, tile=tile)


def _scaled_superpixels(params: BackpropParams, area: int, image_area: int) -> BackpropParams:
    """The superpixel count means 'about this many in the image': scaled to a crop's area."""
    count = max(8, round(params.preseg.n_segments * area / image_area))
    return replace(params, preseg=replace(params.preseg, n_segments=count))


class _Normaliser:
    """Per-channel percentile scaling (as the whole-image engine) from a subsample, applied
    crop by crop, then the engine's intensity stabilisation."""

    def __init__(self, planes: np.ndarray, params: BackpropParams) -> None:
        self.low, self.high = intensity_range(planes, "percentile", NORMALISE_PERCENTILES)
        self.params = params

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        return stabilise_intensities(scale_to_unit(crop, self.low, self.high), self.params)


def segment_large(
    image: np.ndarray,
    params: BackpropParams,
    *,
    control: RunControl | None = None,
    excluded: np.ndarray | None = None,
) -> Generator[Progress, None, Result]:
    """The backprop engine in bounded memory, for a plane ``(Y, X, C)`` or stack ``(N, Y, X, C)``.

    Same parameters, stopping rules and output as :func:`.backprop.segment` (labels
    1..K, ``extras["superpixels"]``); ``metadata["mode"] == "crops"`` (the large-image
    path). One network per plane group (no restarts, no scribbles: the labels of several
    networks, or strokes, would need the whole image at once; nor the statistics merge,
    whose statistics would too): ``restarts`` or ``merge_threshold`` set are said in a
    progress message and listed in ``metadata["not_applied"]``. Finishing early ends the
    training; the labelling that follows always completes. Previews: the training labels
    at full size, as the whole-image engine shows them, then the label map as it is
    filled in, tile by tile (the array being written, not a copy). ``excluded``: pixels
    without data, left out of the training as in the whole-image engine.
    """
    control = control or no_control()
    image = np.asarray(image)
    check_rank(image, "The segmenter takes")
    _check_large(image)
    single = image.ndim == 3
    planes = image[np.newaxis] if single else image
    device = resolve_device(params.device)
    clock = Stopwatch()
    layout = plan(planes.shape, params, planes.dtype.itemsize)
    normalise = _Normaliser(planes, params)
    n_features = params.n_features or DEFAULT_FEATURES[params.network]
    groups = [list(range(len(planes)))] if params.stack_mode == "joint" else [
        [i] for i in range(len(planes))
    ]
    n_tiles = len(_tiles(planes.shape[1:3], layout.tile)) * len(planes)
    total = params.max_iter * len(groups) + n_tiles
    # What this path cannot do is said, not dropped in silence.
    not_applied = [name for name, asked in (("restarts", params.restarts > 1),
                                            ("merge_threshold", params.merge_threshold > 0))
                   if asked]
    if not_applied:
        yield Progress(0, total, message="over the memory budget: labelled tile by tile, "
                       f"without {' or '.join(not_applied)}")
    # Network classes of one run, each cut in two at the two-class level where that is on.
    cut = level_split(params, planes.shape[-1])
    per_run = n_features * (2 if cut else 1)
    # At least uint16, as the whole-image engine gives, so that painting can add labels.
    dtype = np.promote_types(label_dtype(per_run * len(groups)), np.uint16)
    classes = np.zeros(planes.shape[:3], dtype=dtype)
    superpixels = np.zeros(planes.shape[:3], dtype=np.uint32)
    runs: list[NetworkRun] = []
    sample: list[tuple[np.ndarray, np.ndarray]] = []
    state = {"step": 0, "sp_offset": 0}
    for number, group in enumerate(groups):
        # Training repeats one shape: keeping its buffers mapped is free speed. Not
        # while labelling, where it would only hold on to memory.
        with keep_heap_mapped(params.keep_heap and device.type == "cpu"):
            run, levels = yield from _train(
                planes, group, normalise, params, layout, device, n_features, control, state,
                total, preview_base=classes, excluded=excluded,
            )
        runs.append(run)
        model = run.model
        clock.lap("training")
        for index, level in zip(group, levels, strict=True):
            yield from _label_plane(
                model, planes[index], normalise, params, layout, device, classes[index],
                superpixels[index], state, total, control, sample,
                class_offset=number * per_run, level=level if cut else None,
            )
        clock.lap("labelling")
    if params.weak_edges > 0:  # as the whole-image engine's last step, band by band
        yield Progress(state["step"], total, message="joining regions across weak edges")
        for index, plane in enumerate(planes):
            join_weak_edges_by_bands(classes[index], _band_reader(plane, normalise),
                                     params.weak_edges)
        clock.lap("weak edges")
    labels, merged = finish_labels(classes, sample, params.n_labels)
    clock.lap("postprocess")
    metadata = provenance(
        "backprop", params, seed=params.seed, device=describe(device), timings=clock.total(),
        mode="crops", trained_at=list(runs[0].labels.shape[1:3]), crop_size=layout.crop,
        tile_size=layout.tile,
        tiles=n_tiles, iterations=[run.iterations for run in runs],
        stop_reason=sorted({run.stop_reason for run in runs}), n_labels=int(labels.max()),
        merged_to_n_labels=merged, superpixel_method=superpixel_method(params),
        stopped_early=control.stop_requested, not_applied=not_applied,
    )
    return Result(
        labels=labels[0] if single else labels,
        metadata=metadata,
        extras={"superpixels": superpixels[0] if single else superpixels},
    )


def _check_large(image: np.ndarray) -> None:
    """:func:`check_image`, band of rows by band of rows (no image-sized temporary)."""
    check_image(image[..., :2, :2, :])
    if np.issubdtype(image.dtype, np.floating):
        for start in range(0, image.shape[-3], 256):
            if not np.isfinite(image[..., start : start + 256, :, :]).all():
                raise InputError(
                    "The image contains NaN or infinite values; fill or crop them first."
                )


# ----------------------------------------------------------------------------- training


def _train(
    planes: np.ndarray, group: list[int], normalise: _Normaliser, params: BackpropParams,
    layout: CropPlan, device: torch.device, n_features: int, control: RunControl,
    state: dict[str, int], total: int, preview_base: np.ndarray,
    excluded: np.ndarray | None = None,
) -> Generator[Progress, None, tuple[NetworkRun, list[float]]]:
    """Train one network on the group's planes shrunk to the training size, exactly as the
    whole-image engine trains (same loop, stopping rules and previews), then calibrate it
    on full-size crops for labelling tile by tile. Also returns each plane's two-class
    level, read off the shrunk copy as the whole-image engine reads it."""
    # Groups are runs of consecutive planes: a slice is a view (a list index would copy).
    chosen = slice(group[0], group[-1] + 1)
    shrunk = training_planes(planes[chosen], params, normalise, pixels=layout.train_pixels)
    if excluded is not None and excluded.ndim == 3:
        excluded = excluded[chosen]
    ignore = training_ignore(excluded, planes[chosen], params, pixels=layout.train_pixels)
    small, small_params = shrunk if shrunk is not None else (
        np.stack([normalise(planes[i]) for i in group]), params)
    superpixels = [plane_superpixels(plane, small_params) for plane in small]
    yield Progress(state["step"], total,
                   message=f"training on {small.shape[1]} x {small.shape[2]} pixels")
    run = yield from train_network(
        small, superpixels, None, None, params, device=device, n_features=n_features,
        min_labels=params.min_labels, step_offset=state["step"], total=total, control=control,
        preview_base=preview_base, group=group, ignore=ignore,
    )
    state["step"] += params.max_iter
    rng = np.random.default_rng(params.seed)
    calibrate(run.model, full_size_crops(planes, group, normalise, layout.crop, rng), device)
    return run, list(two_class_levels(small, ignore))


# ----------------------------------------------------------------------------- labelling


def _band_reader(plane: np.ndarray, normalise: _Normaliser) -> Callable[[int, int], np.ndarray]:
    """Rows ``start:stop`` of ``plane`` scaled as the network saw them."""
    return lambda start, stop: normalise(plane[start:stop])


def _tiles(shape: tuple[int, int], tile: int) -> list[tuple[slice, slice]]:
    """Core regions (a partition of the plane) of at most ``tile`` pixels a side."""
    ny, nx = (max(1, math.ceil(n / tile)) for n in shape)
    ys = np.linspace(0, shape[0], ny + 1).astype(int)
    xs = np.linspace(0, shape[1], nx + 1).astype(int)
    return [
        (slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(ny) for j in range(nx)
    ]


def _grow(core: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(  # type: ignore[return-value]
        slice(max(0, s.start - TILE_MARGIN), min(n, s.stop + TILE_MARGIN))
        for s, n in zip(core, shape, strict=True)
    )


def _label_plane(
    model: Any, plane: np.ndarray, normalise: _Normaliser, params: BackpropParams,
    layout: CropPlan, device: torch.device, out: np.ndarray, sp_out: np.ndarray,
    state: dict[str, int], total: int, control: RunControl,
    sample: list[tuple[np.ndarray, np.ndarray]], *, class_offset: int, level: float | None,
) -> Iterator[Progress]:
    """Write network class + 1 (+ offset) and unique superpixel ids into ``out``/``sp_out``;
    classes cut at the two-class ``level`` (2k below, 2k + 1 above) when it is given."""
    import torch
    from scipy import ndimage as ndi

    shape = plane.shape[:2]
    area = (layout.tile + 2 * TILE_MARGIN) ** 2
    tile_params = _scaled_superpixels(params, area, math.prod(shape))
    stride = max(1, int(math.sqrt(math.prod(shape) / _MERGE_SAMPLE)))
    cores = _tiles(shape, layout.tile)
    # Outlines placed on each extended tile, as the whole-image engine places them on the
    # image (before the n_labels merge here, which is decided once all tiles are done).
    place = outlines_placed(params, plane.shape[-1])
    for number, core in enumerate(cores, 1):
        outer = _grow(core, shape)
        inner = tuple(slice(c.start - o.start, c.stop - o.start) for c, o in zip(core, outer,
                                                                               strict=True))
        pixels = normalise(plane[outer])
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
            found = model(tensor.to(device)).argmax(dim=1)[0].cpu().numpy()
        sp = plane_superpixels(pixels, tile_params)
        if sp is not None and params.labels_from == "refined":
            found = vote(sp, found)
        if params.min_size > 1:
            found = absorb_small_regions(found, params.min_size, keep_ids=True)
        colour = smoothed_colour(pixels[np.newaxis]) if place or level is not None else None
        if level is not None:
            found = split_at_levels(found[np.newaxis], colour, np.array([level]))[0]
        if place:
            found = place_boundaries(found[np.newaxis], colour, FINAL_ROUNDS, keep_ids=True)[0]
        out[core] = found[inner] + 1 + class_offset
        if sp is not None:
            _, compact = np.unique(sp[inner], return_inverse=True)
            sp_out[core] = compact.reshape(sp[inner].shape) + 1 + state["sp_offset"]
            state["sp_offset"] += int(compact.max()) + 1
        if params.n_labels is not None:
            # Colours smoothed as the whole-image merge does, sampled on a global grid.
            smooth = ndi.gaussian_filter(pixels, (MERGE_SIGMA, MERGE_SIGMA, 0))[inner]
            grid = tuple(slice((-c.start) % stride, None, stride) for c in core)
            sample.append((out[core][grid].copy(), smooth[grid].copy()))  # not tile views
        state["step"] += 1
        yield Progress(
            state["step"], total, preview=out if control.preview_due() else None,
            message=f"tile {number}/{len(cores)}",
        )
