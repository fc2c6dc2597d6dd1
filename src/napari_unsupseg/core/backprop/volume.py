"""The backprop segmenter on a z-stack as one volume (``stack_mode="volume"``).

One network of 3-D convolutions (:mod:`.nets3d`) is trained on the whole stack and its
labels are voted inside 3-D supervoxels (slic or watershed of :mod:`..preseg.volume`, with
the voxel spacing), so an object that crosses many planes keeps one label, where plane by
plane every plane numbers its own.

As in the plane engine, training sees a shrunk copy and the trained network labels the
volume at full size in one pass, voted by the full-size supervoxels. The copy is shrunk
towards cubic voxels: every axis is brought to one common physical step (an axis already
coarser than the step, as z usually is, is not shrunk), so that the copy has about
``train_pixels`` voxels per plane of the stack.

Settings as in the plane engine; besides: ``superpixel_n_segments`` counts supervoxels in
the whole volume (as presegmentation's volume mode does), ``min_size`` is applied plane by
plane, scribbles are refused, and a volume over the memory budget is refused (the tiled
large-image path labels planes, not volumes).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..base.device import describe, resolve_device, seed_everything
from ..base.engine import Progress, Result, RunControl, Stopwatch, provenance
from ..base.errors import InputError
from ..base.images import Spacing, check_image, normalize, relabel_sequential, relative_spacing
from ..base.memory import keep_heap_mapped
from ..base.params import validate
from ..preseg import PresegParams, absorb_small_regions, check_volume_mode, segment_volume
from .consensus import consensus, restart_seed
from .large import needs_crops
from .merge import merge_by_statistics, merge_labels
from .params import (
    DEFAULT_FEATURES,
    DEFAULT_LR,
    MERGE_SIGMA,
    NORMALISE_PERCENTILES,
    BackpropParams,
)
from .train import NetworkRun, runs_summary, sync_interval

if TYPE_CHECKING:
    import torch

#: The superpixels 'auto' stands for in volume mode (felzenszwalb segments planes only).
AUTO_VOLUME_SUPERPIXELS = "slic"


def voxel_spacing(params: BackpropParams) -> Spacing:
    return (params.spacing_z, params.spacing_y, params.spacing_x)


def check_volume_input(
    image: np.ndarray, params: BackpropParams, scribbles: np.ndarray | None
) -> None:
    """Refuse, in one sentence each, what volume mode does not take."""
    check_image(image)
    if scribbles is not None:
        raise InputError("Scribbles are not taken in volume mode; use stack mode 'joint' "
                         "or 'planes' to segment with scribbles.")
    if params.preseg.method != "none":
        check_volume_mode(supervoxel_params(params, voxel_spacing(params)))
    if needs_crops(image.shape, params, image.dtype.itemsize):
        raise InputError(
            f"A volume of shape {image.shape[:3]} needs more than the memory budget "
            f"({params.memory_budget_mb} MB) in volume mode; crop it, or use stack mode "
            "'planes' or 'joint', which label large images tile by tile.")


def supervoxel_params(params: BackpropParams, spacing: Spacing) -> PresegParams:
    """The presegmentation settings that draw the supervoxels at ``spacing``."""
    method = params.preseg.method
    method = AUTO_VOLUME_SUPERPIXELS if method == "auto" else method
    z, y, x = spacing
    return replace(params.preseg, method=method, stack_mode="volume", spacing_z=z,
                   spacing_y=y, spacing_x=x)


def supervoxels(volume: np.ndarray, params: BackpropParams, spacing: Spacing
                ) -> np.ndarray | None:
    """Supervoxels (int32, 1..n) of a normalised volume; None for superpixels 'none'."""
    if params.preseg.method == "none":
        return None
    return segment_volume(volume, supervoxel_params(params, spacing))


def shrink_factors(shape: tuple[int, int, int], spacing: Spacing,
                   train_pixels: int | None) -> np.ndarray | None:
    """Per-axis shrink factors (>= 1) that bring a volume to about ``train_pixels`` voxels
    per plane, every axis to one physical step where it is finer than that; None when the
    volume is small enough already."""
    voxels = float(np.prod(shape))
    # The budget that :func:`.large.training_bytes` counts for a stack trained as a whole.
    budget = None if train_pixels is None else float(train_pixels) * shape[0]
    if budget is None or voxels <= budget:
        return None
    sides = relative_spacing(spacing)
    # The voxel count falls as the common step grows: bisect it (in finest-voxel units).
    low, high = 1.0, float(max(shape) * sides.max())
    for _ in range(60):
        step = (low + high) / 2
        factors = np.maximum(1.0, step / sides)
        if np.prod(np.maximum(1.0, np.asarray(shape) / factors)) > budget:
            low = step
        else:
            high = step
    return np.maximum(1.0, high / sides)


def shrink_volume(volume: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """A channels-last volume shrunk by ``factors`` (z, y, x), anti-aliased, float32."""
    from skimage.transform import resize

    size = tuple(max(1, round(n / f)) for n, f in zip(volume.shape[:3], factors, strict=True))
    small = resize(volume, (*size, volume.shape[3]), order=1, anti_aliasing=True,
                   preserve_range=True)
    return small.astype(np.float32)


def segment_as_volume(
    image: np.ndarray, params: BackpropParams, *, scribbles: np.ndarray | None,
    control: RunControl,
) -> Generator[Progress, None, Result]:
    """The backprop engine on a stack ``(Z, Y, X, C)`` as one volume: labels ``(Z, Y, X)``
    1..K (uint16), ``extras["superpixels"]`` (the supervoxels) and the plane engine's
    metadata."""
    validate(params)
    check_volume_input(image, params, scribbles)
    device = resolve_device(params.device)
    clock = Stopwatch()
    spacing = voxel_spacing(params)
    volume = normalize(image, *NORMALISE_PERCENTILES)
    yield Progress(0, params.max_iter * params.restarts, message="supervoxels")
    full_voxels = supervoxels(volume, params, spacing)
    factors = shrink_factors(volume.shape[:3], spacing, params.train_pixels)
    small, small_voxels = volume, full_voxels
    if factors is not None:
        small = shrink_volume(volume, factors)
        shrunk = tuple(s * f for s, f in zip(spacing, factors, strict=True))
        small_voxels = supervoxels(small, params, shrunk)  # type: ignore[arg-type]
    clock.lap("superpixels")

    n_features = params.n_features or DEFAULT_FEATURES[params.network]
    runs: list[NetworkRun] = []
    with keep_heap_mapped(params.keep_heap and device.type == "cpu") as heap_kept:
        for index in range(params.restarts):
            if index and control.stop_requested:
                break
            run = yield from train_volume(
                small, small_voxels, replace(params, seed=restart_seed(params.seed, index)),
                device=device, n_features=n_features, step_offset=index * params.max_iter,
                control=control, full=(volume, full_voxels) if factors is not None else None,
            )
            runs.append(run)
    clock.lap("training")
    yield Progress(params.max_iter * params.restarts, params.max_iter * params.restarts,
                   message="finishing the labels")
    maps = [run.labels for run in runs]
    raw = maps[0] if len(maps) == 1 else consensus(maps)
    labels, merged = finish_volume(raw, volume, params)
    clock.lap("postprocess")

    metadata = provenance(
        "backprop",
        params,
        seed=params.seed,
        device=describe(device),
        timings=clock.total(),
        **runs_summary(runs),
        restarts=len(runs),
        n_labels=int(len(np.unique(labels[labels > 0]))),
        merged_to_n_labels=merged,
        scribble_classes=None,
        heap_kept_mapped=heap_kept,
        superpixel_method=supervoxel_params(params, spacing).method,
        trained_at=list(small.shape[:3]),
        stopped_early=control.stop_requested,
        planes_done=len(volume),
        planes_total=len(volume),
        stack_mode="volume",
        spacing=list(spacing),
    )
    out = full_voxels if full_voxels is not None else np.zeros(volume.shape[:3], np.int32)
    return Result(labels=labels, metadata=metadata, extras={"superpixels": out})


def finish_volume(raw: np.ndarray, volume: np.ndarray, params: BackpropParams
                  ) -> tuple[np.ndarray, bool]:
    """The plane engine's finish on the whole volume: labels merged by their statistics
    (or down to ``n_labels``), small pieces absorbed plane by plane, ids made 1..K (uint16
    or larger); and whether merging to ``n_labels`` removed labels."""
    labels = raw
    before = len(np.unique(labels))
    by_statistics = params.merge_threshold > 0
    if by_statistics:
        labels = merge_by_statistics(labels, volume, scale=params.texture_scale,
                                     threshold=params.merge_threshold, n_labels=params.n_labels)
    if params.min_size > 1:
        labels = np.stack([absorb_small_regions(p, params.min_size, keep_ids=True)
                           for p in labels])
    if params.n_labels is not None and not by_statistics:
        from scipy import ndimage as ndi

        # Colour smoothed over a few pixels' physical width along every axis, as in a plane.
        sigma = MERGE_SIGMA / relative_spacing(voxel_spacing(params))
        labels = merge_labels(labels, ndi.gaussian_filter(volume, (*sigma, 0)), params.n_labels)
    merged = params.n_labels is not None and len(np.unique(labels)) < before
    return relabel_sequential(labels + 1), merged


def train_volume(
    volume: np.ndarray, voxels: np.ndarray | None, params: BackpropParams, *,
    device: torch.device, n_features: int, step_offset: int, control: RunControl,
    full: tuple[np.ndarray, np.ndarray | None] | None,
) -> Generator[Progress, None, NetworkRun]:
    """Train one 3-D network on ``volume`` (the stopping rules of the plane engine's
    :func:`.train.train_network`); the labels (0-based, int64) are the network's on
    ``full`` (the full-size volume and its supervoxels) when given, voted."""
    import torch

    from .nets3d import VolumeTrainer, build_network3d

    seed_everything(params.seed)
    # Kernels follow the full-size spacing: the network is trained here but labels there.
    model = build_network3d(params.network, volume.shape[-1], n_features, params.n_conv,
                            voxel_spacing(params)).to(device)
    trainer = VolumeTrainer(
        model, _channels_first(volume, device), *_voters(voxels, device),
        lr=params.lr if params.lr is not None else DEFAULT_LR[params.network],
        momentum=params.momentum, w_con=params.w_con)
    total = params.max_iter * params.restarts
    n_voxels = int(np.prod(volume.shape[:3]))
    pending: list[torch.Tensor] = []
    stable, n_labels, iteration, stop_reason = 0, n_features, 0, "max_iter"
    target = None
    for step in range(1, params.max_iter + 1):
        if control.stop_requested and target is not None:
            stop_reason = "stopped"
            break
        iteration = step
        target, stats = trainer.step()
        pending.append(stats)
        loss_value = None
        synced = step % sync_interval(device) == 0 or step == params.max_iter
        if synced:
            history = torch.stack(pending).cpu().numpy()
            pending.clear()
            for loss, changed, count in history:
                previous, loss_value, n_labels = n_labels, float(loss), int(count)
                calm = n_labels == previous and changed / n_voxels < params.converge_tol
                stable = stable + 1 if calm else 0
                stop_reason = _stop_reason(n_labels, stable, params)
                if stop_reason != "max_iter":
                    break
        preview = None
        if control.preview_due():
            shape = volume.shape[:3] if full is None else full[0].shape[:3]
            preview = _nearest(target[0].cpu().numpy(), shape) + 1
        yield Progress(step=step_offset + step, total=total, loss=loss_value,
                       n_labels=n_labels if synced else None, preview=preview,
                       message=f"iteration {step}: {n_labels} labels" if synced else "")
        if stop_reason != "max_iter":
            break
    assert target is not None
    if full is not None:
        voters = (None, 0) if params.labels_from == "response" else _voters(full[1], device)
        target = trainer.label(_channels_first(full[0], device), *voters)
    elif params.labels_from == "response":
        target = trainer.response_argmax()
    labels = target[0].cpu().numpy().astype(np.int64)
    return NetworkRun(labels, iteration, stop_reason, int(len(np.unique(labels))), model)


def _stop_reason(n_labels: int, stable: int, params: BackpropParams) -> str:
    """The plane engine's stopping rules, in its order."""
    if n_labels <= params.min_labels:
        return "min_labels"
    if params.n_labels is not None and n_labels <= params.n_labels:
        return "n_labels"
    if params.patience and stable >= params.patience:
        return "converged"
    return "max_iter"


def _channels_first(volume: np.ndarray, device: torch.device) -> torch.Tensor:
    """A volume ``(Z, Y, X, C)`` as the network's input ``(1, C, Z, Y, X)`` on ``device``."""
    import torch

    batch = np.ascontiguousarray(volume.transpose(3, 0, 1, 2)[np.newaxis], dtype=np.float32)
    return torch.from_numpy(batch).to(device)


def _voters(voxels: np.ndarray | None, device: torch.device
            ) -> tuple[torch.Tensor | None, int]:
    """Supervoxels as one flat tensor of ids 0..S-1 (none: no vote)."""
    import torch

    if voxels is None:
        return None, 0
    _, compact = np.unique(voxels, return_inverse=True)
    flat = torch.from_numpy(compact.reshape(-1).astype(np.int64)).to(device)
    return flat, int(compact.max()) + 1


def _nearest(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Labels ``(z, y, x)`` brought to ``shape`` by nearest neighbour (previews)."""
    index = np.ix_(*(np.arange(n) * m // n for n, m in zip(shape, labels.shape, strict=True)))
    return labels[index]

