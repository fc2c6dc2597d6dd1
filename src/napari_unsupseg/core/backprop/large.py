"""The backprop segmenter for images whose whole-image training would not fit in memory.

The whole-image engine (:mod:`.backprop`) trains on every pixel at once: activations
and gradients for the whole image, about 4 KB per pixel with the fast network. Here
the same small networks are instead

1. **trained on sampled crops**: a pool of random crops (with their superpixels) is
   cut from the image, and each iteration trains on a mini-batch drawn from it, the
   superpixel vote taken inside each crop. The batch is sized from a memory budget;
2. **calibrated**: the batch-norm statistics are re-estimated over crops for the
   final weights, so that the network becomes one fixed per-pixel function;
3. **applied tile by tile** in evaluation mode. Each tile is read with a margin wider
   than the network's receptive field and than a superpixel, the superpixels are
   computed and vote on the whole extended tile, and only the tile's core is written:
   the response is identical on both sides of a tile border, so there is no seam.
   Superpixel ids are made unique across tiles.

Only the input, the labels and the superpixel map are image-sized; the rest is
bounded by the budget. ``n_labels`` merging is decided on a regular subsample of
pixels (colours smoothed at full resolution first) and applied to the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.device import describe, resolve_device, seed_everything
from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.images import check_image, check_rank, intensity_range, label_dtype
from ..base.memory import keep_heap_mapped
from ..preseg import absorb_small_regions
from .finish import finish_labels
from .params import DEFAULT_FEATURES, DEFAULT_LR, MERGE_SIGMA, BackpropParams
from .superpixels import plane_superpixels, superpixel_method, vote

if TYPE_CHECKING:
    import torch

#: Tiles read this many pixels beyond their core: more than the networks' receptive
#: field (a few pixels) and room for a superpixel that crosses the border to vote whole.
TILE_MARGIN = 32
#: Pixels of each tile kept for deciding the n_labels merges (a regular subsample).
_MERGE_SAMPLE = 2_000_000
_CALIBRATION_BATCHES = 8
_POOL_BATCHES = 8  # crops in the pool, in mini-batches


@dataclass
class CropRun:
    """One network trained on crops: the network, its iterations and why it stopped."""

    model: Any
    iterations: int
    stop_reason: str


@dataclass(frozen=True)
class CropPlan:
    """How a large image is trained and labelled."""

    crop: int  # side of a training crop
    batch: int  # crops per mini-batch
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
    if params.train_pixels is not None and area > params.train_pixels:
        # Training on a shrunk copy, then one forward pass over the full-size planes.
        trained = params.train_pixels * (pixels // area)
        need = (trained * training_bytes_per_pixel(params, channels)
                + pixels * labelling_bytes_per_pixel(params, channels))
    return need


def needs_crops(shape: tuple[int, ...], params: BackpropParams) -> bool:
    """Whether whole-image training of a ``(..., Y, X, C)`` image exceeds the budget."""
    return training_bytes(shape, params) > params.memory_budget_mb * 2**20


def crops_bytes(shape: tuple[int, ...], params: BackpropParams) -> int:
    """Memory of the crop path: the budget-bounded batch and tile, plus the image-sized
    labels, superpixels and (n_labels) merge sample."""
    layout = plan(shape, params)
    channels = shape[-1]
    batch = layout.batch * layout.crop**2 * training_bytes_per_pixel(params, channels)
    tile = (layout.tile + 2 * TILE_MARGIN) ** 2 * labelling_bytes_per_pixel(params, channels)
    pool = _POOL_BATCHES * layout.batch * layout.crop**2 * (4 * channels + 8)
    return max(batch, tile) + pool + math.prod(shape[:-1]) * (4 + 4)


def plan(shape: tuple[int, ...], params: BackpropParams) -> CropPlan:
    """Crop, batch and tile sizes that keep training and labelling within the budget."""
    budget = params.memory_budget_mb * 2**20
    height, width, channels = shape[-3], shape[-2], shape[-1]
    crop = max(16, min(params.crop_size, height, width))
    per_crop = crop * crop * training_bytes_per_pixel(params, channels)
    batch = int(max(1, min(16, budget // per_crop)))
    fit = int(math.sqrt(budget / labelling_bytes_per_pixel(params, channels))) - 2 * TILE_MARGIN
    tile = max(64, min(params.tile_size, fit))
    return CropPlan(crop=crop, batch=batch, tile=tile)


def _scaled_superpixels(params: BackpropParams, area: int, image_area: int) -> BackpropParams:
    """The superpixel count means 'about this many in the image': scaled to a crop's area."""
    count = max(8, round(params.preseg.n_segments * area / image_area))
    return replace(params, preseg=replace(params.preseg, n_segments=count))


class _Normaliser:
    """Per-channel percentile scaling (1-99 %) from a subsample, applied crop by crop."""

    def __init__(self, planes: np.ndarray) -> None:
        self.low, high = intensity_range(planes, "percentile")
        self.span = np.where(high > self.low, high - self.low, 1.0).astype(np.float32)
        self.flat = high <= self.low

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        out = (crop.astype(np.float32) - self.low) / self.span
        np.clip(out, 0.0, 1.0, out=out)
        out[..., self.flat] = 0.0
        return out


def segment_large(
    image: np.ndarray,
    params: BackpropParams,
    *,
    control: RunControl | None = None,
) -> Generator[Progress, None, Result]:
    """The backprop engine on crops and tiles, for a plane ``(Y, X, C)`` or stack ``(N, Y, X, C)``.

    Same parameters, stopping rules and output as :func:`.backprop.segment` (labels
    1..K, ``extras["superpixels"]``); ``metadata["mode"] == "crops"``. Finishing early
    ends the training; the labelling that follows always completes. Previews: the label
    map as it is filled in, tile by tile (the array being written, not a copy).
    """
    control = control or no_control()
    image = np.asarray(image)
    check_rank(image, "The segmenter takes")
    _check_large(image)
    single = image.ndim == 3
    planes = image[np.newaxis] if single else image
    device = resolve_device(params.device)
    clock = Stopwatch()
    layout = plan(planes.shape, params)
    normalise = _Normaliser(planes)
    n_features = params.n_features or DEFAULT_FEATURES[params.network]
    groups = [list(range(len(planes)))] if params.stack_mode == "joint" else [
        [i] for i in range(len(planes))
    ]
    n_tiles = len(_tiles(planes.shape[1:3], layout.tile)) * len(planes)
    total = params.max_iter * len(groups) + n_tiles
    # At least uint16, as the whole-image engine gives, so that painting can add labels.
    dtype = np.promote_types(label_dtype(n_features * len(groups)), np.uint16)
    classes = np.zeros(planes.shape[:3], dtype=dtype)
    superpixels = np.zeros(planes.shape[:3], dtype=np.uint32)
    runs: list[CropRun] = []
    sample: list[tuple[np.ndarray, np.ndarray]] = []
    state = {"step": 0, "sp_offset": 0}
    for number, group in enumerate(groups):
        # Training repeats one batch shape: keeping its buffers mapped is free speed. Not
        # while labelling, where it would only hold on to memory.
        with keep_heap_mapped(params.keep_heap and device.type == "cpu"):
            run = yield from _train(
                planes, group, normalise, params, layout, device, n_features, control, state,
                total,
            )
        runs.append(run)
        model = run.model
        clock.lap("training")
        for index in group:
            yield from _label_plane(
                model, planes[index], normalise, params, layout, device, classes[index],
                superpixels[index], state, total, control, sample,
                class_offset=number * n_features,
            )
        clock.lap("labelling")
    labels, merged = finish_labels(classes, sample, params.n_labels)
    clock.lap("postprocess")
    metadata = provenance(
        "backprop", params, seed=params.seed, device=describe(device), timings=clock.total(),
        mode="crops", crop_size=layout.crop, batch_size=layout.batch, tile_size=layout.tile,
        tiles=n_tiles, iterations=[run.iterations for run in runs],
        stop_reason=sorted({run.stop_reason for run in runs}), n_labels=int(labels.max()),
        merged_to_n_labels=merged, superpixel_method=superpixel_method(params),
        stopped_early=control.stop_requested,
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


def _crop_pool(
    planes: np.ndarray, group: list[int], normalise: _Normaliser, params: BackpropParams,
    layout: CropPlan, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Random crops of the group's planes, normalised, and their superpixels (ids 0..n-1)."""
    _, height, width, _ = planes.shape
    # A crop stops at a side thinner than it (a strip of a few rows or columns).
    rows, cols = min(layout.crop, height), min(layout.crop, width)
    crop_params = _scaled_superpixels(params, rows * cols, height * width)
    crops, sps = [], []
    for _ in range(layout.batch * _POOL_BATCHES):
        index = group[int(rng.integers(len(group)))]
        y = int(rng.integers(height - rows + 1))
        x = int(rng.integers(width - cols + 1))
        crop = normalise(planes[index, y : y + rows, x : x + cols])
        sp = plane_superpixels(crop, crop_params)
        crops.append(crop)
        sps.append(np.zeros(crop.shape[:2], np.int64) if sp is None else sp.astype(np.int64) - 1)
    return np.stack(crops), np.stack(sps)


def _train(
    planes: np.ndarray, group: list[int], normalise: _Normaliser, params: BackpropParams,
    layout: CropPlan, device: torch.device, n_features: int, control: RunControl,
    state: dict[str, int], total: int,
) -> Generator[Progress, None, CropRun]:
    """Train one network on mini-batches of crops; the same stopping rules as a whole image."""
    import torch

    from .nets import Trainer, build_network

    seed_everything(params.seed)
    rng = np.random.default_rng(params.seed)
    crops, sps = _crop_pool(planes, group, normalise, params, layout, rng)
    yield Progress(state["step"], total, message=f"{len(crops)} training crops ready")
    model = build_network(params.network, planes.shape[-1], n_features, params.n_conv).to(device)
    lr = params.lr if params.lr is not None else DEFAULT_LR[params.network]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=params.momentum)
    vote = superpixel_method(params) != "none"
    sp_span = int(sps.max()) + 1
    # Labels are counted over the last few batches together: one batch of crops seldom
    # shows every region, so its own count would stop the training far too early.
    seen: list[np.ndarray] = []
    n_labels, stable, stop_reason, iteration = n_features, 0, "max_iter", 0
    for iteration in range(1, params.max_iter + 1):
        if control.stop_requested:
            stop_reason = "stopped"
            break
        pick = rng.choice(len(crops), layout.batch, replace=False)
        images = torch.from_numpy(np.ascontiguousarray(crops[pick].transpose(0, 3, 1, 2)))
        # Superpixel ids made unique across the crops of the batch, then compacted.
        sp = sps[pick] + (np.arange(len(pick)) * sp_span)[:, None, None]
        _, compact = np.unique(sp, return_inverse=True)
        trainer = Trainer(
            model, images.to(device),
            torch.from_numpy(compact.reshape(-1)).to(device) if vote else None,
            int(compact.max()) + 1,
            lr=lr, momentum=params.momentum, w_sim=1.0, w_con=params.w_con,
        )
        trainer.optimizer = optimizer  # one optimizer (its momentum) across batches
        target, stats = trainer.step()
        loss = float(stats[0])
        seen = [*seen[1 - _POOL_BATCHES :], np.bincount(target.cpu().numpy().ravel(),
                                                        minlength=n_features) > 0]
        previous, n_labels = n_labels, int(np.logical_or.reduce(seen).sum())
        stable = stable + 1 if n_labels == previous and len(seen) == _POOL_BATCHES else 0
        if len(seen) < _POOL_BATCHES:
            pass  # not every crop seen yet: no decision
        elif n_labels <= params.min_labels:
            stop_reason = "min_labels"
        elif params.n_labels and n_labels <= params.n_labels:
            stop_reason = "n_labels"
        elif params.patience and stable >= params.patience * _POOL_BATCHES:
            stop_reason = "converged"
        yield Progress(
            state["step"] + iteration, total, loss=loss, n_labels=n_labels,
            message=f"iteration {iteration}: {n_labels} labels",
        )
        if stop_reason != "max_iter":
            break
    state["step"] += params.max_iter
    _calibrate(model, crops, layout.batch, rng, device)
    return CropRun(model, iteration, stop_reason)


def _calibrate(model: Any, crops: np.ndarray, batch: int, rng: np.random.Generator,
               device: torch.device) -> None:
    """Batch-norm statistics of the final weights, averaged over crops, then eval mode:
    every tile is then labelled by one and the same per-pixel function."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(_CALIBRATION_BATCHES):
            pick = rng.choice(len(crops), batch, replace=False)
            model(torch.from_numpy(np.ascontiguousarray(crops[pick].transpose(0, 3, 1, 2)))
                  .to(device))
    model.eval()


# ----------------------------------------------------------------------------- labelling


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
    sample: list[tuple[np.ndarray, np.ndarray]], *, class_offset: int,
) -> Iterator[Progress]:
    """Write network class + 1 (+ offset) and unique superpixel ids into ``out``/``sp_out``."""
    import torch
    from scipy import ndimage as ndi

    shape = plane.shape[:2]
    area = (layout.tile + 2 * TILE_MARGIN) ** 2
    tile_params = _scaled_superpixels(params, area, math.prod(shape))
    stride = max(1, int(math.sqrt(math.prod(shape) / _MERGE_SAMPLE)))
    cores = _tiles(shape, layout.tile)
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
