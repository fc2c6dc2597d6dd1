"""The unsupervised backprop segmenter (Kanezaki, ICASSP 2018; TIP 2020 extension).

A small convolutional network is trained on the image itself: each iteration
takes the argmax of its response as labels, refines them by a majority vote
inside each superpixel, and pulls the response towards that target with a
cross-entropy loss (plus, optionally, the TIP 2020 continuity loss and a
scribble term). Labels merge as training goes on; the run stops when few enough
labels remain, when the label map has stopped changing, or at ``max_iter``.

Output: the final **refined target** (the superpixel-voted argmax of the last
iteration), not the argmax of one more unrefined forward pass as in the Kanezaki
scripts: the refined map follows the superpixel boundaries, has no speckle, and
is the map on which the stopping rules were decided. ``labels_from="response"`` gives
the reference behaviour.

This module does not import torch at import time (the napari widgets import the
parameters at start-up); the torch code is in :mod:`.backprop_nets`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .device import DEVICE_CHOICES, describe, resolve_device, seed_everything
from .engine import Progress, Result, Stopwatch, provenance
from .errors import InputError
from .images import check_image, normalize, relabel_sequential
from .memory import keep_heap_mapped
from .params import param, validate
from .preseg import PRESEG_METHODS, PresegParams, absorb_small_regions, presegment

if TYPE_CHECKING:
    import torch

NETWORKS = ("fast", "kanezaki")
SUPERPIXEL_CHOICES = ("auto", *PRESEG_METHODS, "none")
# What 'auto' superpixels are for each network: as in the fast variant and Kanezaki 2018.
AUTO_SUPERPIXELS = {"fast": "felzenszwalb", "kanezaki": "slic"}
DEFAULT_FEATURES = {"fast": 32, "kanezaki": 100}
DEFAULT_LR = {"fast": 0.05, "kanezaki": 0.1}
# Statistics are brought to the host every iteration on the CPU (free there) and
# every few iterations on a GPU, so the training loop never waits on the device.
_SYNC_EVERY_GPU = 8
# Smoothing (pixels) of the colours compared when merging labels down to n_labels.
_MERGE_SIGMA = 2.0


@dataclass
class BackpropParams:
    """Settings of the backprop segmenter; the defaults are fast and work on photos."""

    network: str = param(
        "fast",
        "Network: 'fast' (4 small layers, up to 32 labels, quick on a CPU) or "
        "'kanezaki' (the ICASSP 2018 net: n_conv 3x3 layers of 100 channels).",
        choices=NETWORKS,
    )
    max_iter: int = param(
        64, "Most training iterations (per plane when stack_mode is 'planes').", min=1
    )
    min_labels: int = param(
        3,
        "Stop once this many labels or fewer remain (with scribbles: the number of "
        "scribbled classes).",
        min=1,
    )
    n_labels: int | None = param(
        None,
        "Wanted number of labels: training stops when it is reached, and if more remain "
        "at the end the most similar labels (Ward distance on mean colour) are merged down "
        "to it (colour smoothed over 2 px, so textures count as one colour). Empty = "
        "whatever the training gives.",
        min=1,
    )
    min_size: int = param(
        0,
        "Merge connected regions smaller than this many pixels into their neighbours "
        "(0 = keep everything).",
        min=0,
    )
    superpixels: str = param(
        "auto",
        "Presegmentation whose superpixels vote on the labels: auto (felzenszwalb for the "
        "fast network, slic for kanezaki), felzenszwalb, slic, quickshift, watershed, "
        "kmeans, or 'none' (no vote, TIP 2020 style; use with w_con > 0).",
        choices=SUPERPIXEL_CHOICES,
    )
    superpixel_scale: float = param(
        64.0,
        "Felzenszwalb superpixels: larger gives fewer, bigger superpixels.",
        min=0.0,
    )
    superpixel_count: int = param(
        2000,
        "About how many superpixels for slic, watershed and kmeans (Kanezaki 2018 used "
        "10000 slic superpixels with compactness 100).",
        min=2,
    )
    superpixel_compactness: float = param(
        10.0,
        "Shape versus colour for slic, watershed and kmeans superpixels (higher = rounder).",
        min=0.0,
        advanced=True,
    )
    w_con: float = param(
        0.0,
        "Weight of the continuity loss (TIP 2020: L1 of neighbouring response "
        "differences); smooths labels, about 30% slower. 0 = off.",
        min=0.0,
    )
    w_scribble: float = param(
        0.5,
        "Weight of the scribble loss (only used when scribbles are given).",
        min=0.0,
    )
    n_features: int | None = param(
        None,
        "Output channels of the network, the most labels possible. Empty = the "
        "network's default (fast 32, kanezaki 100).",
        min=2,
        advanced=True,
    )
    n_conv: int = param(
        2, "Number of 3x3 conv blocks in the kanezaki network.", min=1, advanced=True
    )
    lr: float | None = param(
        None,
        "SGD learning rate. Empty = the network's default (fast 0.05, kanezaki 0.1).",
        min=0.0,
        advanced=True,
    )
    momentum: float = param(0.9, "SGD momentum.", min=0.0, max=1.0, advanced=True)
    converge_tol: float = param(
        0.025,
        "Convergence: an iteration counts as stable when the number of labels is "
        "unchanged and fewer than this fraction of pixels change label.",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    patience: int = param(
        3,
        "Stop after this many stable iterations in a row "
        "(0 = no convergence stop, run to max_iter or min_labels).",
        min=0,
        advanced=True,
    )
    labels_from: str = param(
        "refined",
        "Which map to return: 'refined' (the superpixel-voted labels of the last "
        "iteration) or 'response' (the argmax of one more forward pass, as the Kanezaki "
        "scripts do).",
        choices=("refined", "response"),
        advanced=True,
    )
    stack_mode: str = param(
        "planes",
        "For a stack (z or t): 'planes' trains one network per plane (ids differ between "
        "planes); 'joint' trains one network on all planes, so a label means the same "
        "thing in every plane.",
        choices=("planes", "joint"),
    )
    seed: int = param(0, "Random seed; the same seed on the CPU gives identical labels.", min=0)
    device: str = param(
        "auto", "Where to train: auto (CUDA, then Apple MPS, then CPU), cpu, cuda or mps.",
        choices=DEVICE_CHOICES,
    )
    keep_heap: bool = param(
        True,
        "CPU speed-up on Linux: keep freed memory mapped during the run instead of "
        "returning it to the system every iteration (given back at the end).",
        advanced=True,
    )


# ----------------------------------------------------------------------------- vote


def vote_reference(superpixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The reference vote: for each superpixel, the most frequent label of its pixels.

    A loop over ``np.unique(superpixels)`` as in the Kanezaki scripts; a tie goes
    to the lowest label (``np.argmax`` returns the first maximum of the counts).
    """
    superpixels = np.asarray(superpixels).ravel()
    flat = np.asarray(labels).ravel()
    target = flat.copy()
    for sp in np.unique(superpixels):
        inside = np.flatnonzero(superpixels == sp)
        values, counts = np.unique(flat[inside], return_counts=True)
        target[inside] = values[np.argmax(counts)]
    return target.reshape(np.shape(labels))


def vote(superpixels: Any, labels: Any, n_classes: int | None = None) -> Any:
    """The vectorised vote: one 2-D histogram (superpixel x label) and an argmax per row.

    Takes non-negative integer numpy arrays (returns numpy) or torch tensors
    (returns a tensor on the same device). Equal to :func:`vote_reference`,
    ties included.
    """
    import torch

    from .backprop_nets import vote_torch

    as_numpy = not isinstance(labels, torch.Tensor)
    lab = torch.as_tensor(np.asarray(labels) if as_numpy else labels).long()
    sp = torch.as_tensor(np.asarray(superpixels) if as_numpy else superpixels).long()
    sp = sp.to(lab.device).reshape(-1)
    flat = lab.reshape(-1)
    if flat.numel() == 0:
        return labels
    if int(sp.min()) < 0 or int(flat.min()) < 0:
        raise InputError("Superpixels and labels must be non-negative integers.")
    if sp.numel() != flat.numel():
        raise InputError("Superpixels and labels must have the same number of pixels.")
    classes = int(flat.max()) + 1 if n_classes is None else n_classes
    # Compact superpixel ids so that the histogram has one row per superpixel that exists.
    _, compact = torch.unique(sp, return_inverse=True)
    n_sp = int(compact.max()) + 1
    target = vote_torch(compact, flat, n_sp, classes).reshape(lab.shape)
    return target.numpy().astype(np.asarray(labels).dtype) if as_numpy else target


# ---------------------------------------------------------------------- engine


def _check_inputs(image: np.ndarray, scribbles: np.ndarray | None) -> np.ndarray | None:
    if image.ndim not in (3, 4):
        raise InputError(
            "The segmenter takes a channels-last plane (Y, X, C) or stack (N, Y, X, C); "
            f"got shape {image.shape}."
        )
    check_image(image)
    if scribbles is None:
        return None
    scribbles = np.asarray(scribbles)
    spatial = image.shape[:-1]
    if scribbles.shape != spatial:
        raise InputError(
            f"The scribbles must have the image's spatial shape {spatial}; "
            f"got {scribbles.shape}."
        )
    if not np.issubdtype(scribbles.dtype, np.integer) and scribbles.dtype != bool:
        raise InputError("The scribbles must be a label image of integers (0 = unlabelled).")
    if (scribbles < 0).any():
        raise InputError("Scribble labels must be 0 (unlabelled) or positive class ids.")
    if not (scribbles > 0).any():
        raise InputError("The scribble layer is empty: paint at least one class.")
    return scribbles.astype(np.int64)


def superpixel_method(params: BackpropParams) -> str:
    """The presegmentation method that ``params`` stands for ('auto' resolved)."""
    if params.superpixels == "auto":
        return AUTO_SUPERPIXELS[params.network]
    return params.superpixels


def plane_superpixels(plane: np.ndarray, params: BackpropParams) -> np.ndarray | None:
    """The superpixels (int32, 1..n) that vote on one normalised plane; None for 'none'."""
    method = superpixel_method(params)
    if method == "none":
        return None
    preseg = PresegParams(
        method=method,
        n_segments=params.superpixel_count,
        compactness=params.superpixel_compactness,
        scale=params.superpixel_scale,
    )
    return presegment(plane, preseg)


def _plane_groups(n_planes: int, stack_mode: str) -> list[list[int]]:
    """Which planes train together: all at once (joint) or one at a time."""
    if stack_mode == "joint":
        return [list(range(n_planes))]
    return [[index] for index in range(n_planes)]


def segment(
    image: np.ndarray,
    params: BackpropParams | None = None,
    *,
    scribbles: np.ndarray | None = None,
    preview_every: int = 0,
) -> Generator[Progress, None, Result]:
    """The backprop segmenter engine for a plane ``(Y, X, C)`` or a stack ``(N, Y, X, C)``.

    ``scribbles``: optional label image of the spatial shape (0 = unlabelled, k > 0 =
    class k); scribbled classes keep their ids in the output. ``preview_every``: attach
    the current label map to every n-th :class:`Progress` (0 = never).

    Returns labels 1..K (uint16 or uint32) of shape ``(Y, X)`` or ``(N, Y, X)``,
    ``extras["superpixels"]`` and provenance metadata (iterations, stop reason,
    final number of labels, timings).
    """
    params = params or BackpropParams()
    validate(params)
    image = np.asarray(image)
    scribbles = _check_inputs(image, scribbles)
    device = resolve_device(params.device)
    clock = Stopwatch()

    single = image.ndim == 3
    planes = normalize(image[np.newaxis] if single else image)
    scribble_planes = None
    if scribbles is not None:
        scribble_planes = scribbles[np.newaxis] if single else scribbles
    groups = _plane_groups(len(planes), params.stack_mode)
    total = params.max_iter * len(groups)
    superpixels = []
    for index, plane in enumerate(planes):
        superpixels.append(plane_superpixels(plane, params))
        if len(planes) > 1:  # a long stack must stay stoppable before training starts
            yield Progress(0, total, message=f"superpixels {index + 1}/{len(planes)}")
    clock.lap("superpixels")

    n_features = params.n_features or DEFAULT_FEATURES[params.network]
    classes = None
    if scribble_planes is not None:
        classes = np.unique(scribble_planes[scribble_planes > 0])
    if classes is not None and len(classes) > n_features:
        raise InputError(
            f"There are {len(classes)} scribbled classes but the network has only "
            f"{n_features} outputs; raise n_features."
        )
    min_labels = len(classes) if classes is not None else params.min_labels

    raw = np.zeros(planes.shape[:3], dtype=np.int64)
    shown = np.zeros(planes.shape[:3], dtype=np.int64)  # finished planes, for previews
    runs: list[dict[str, Any]] = []
    done = 0
    with keep_heap_mapped(params.keep_heap and device.type == "cpu") as heap_kept:
        for group in groups:
            run = yield from _train_group(
                planes[group],
                [superpixels[i] for i in group],
                None if scribble_planes is None else scribble_planes[group],
                classes,
                params,
                device=device,
                n_features=n_features,
                min_labels=min_labels,
                step_offset=done,
                total=total,
                preview_every=preview_every,
                preview_base=shown,
                group=group,
            )
            raw[group] = run.pop("labels")
            shown[group] = raw[group] + 1
            runs.append(run)
            done += params.max_iter
    clock.lap("training")

    labels, n_merged = _postprocess(raw, planes, params, classes, per_plane=len(groups) > 1)
    clock.lap("postprocess")

    stop_reasons = sorted({run["stop_reason"] for run in runs})
    metadata = provenance(
        "backprop",
        params,
        seed=params.seed,
        device=describe(device),
        timings=clock.total(),
        iterations=[run["iterations"] for run in runs],
        stop_reason=stop_reasons[0] if len(stop_reasons) == 1 else stop_reasons,
        n_labels=int(len(np.unique(labels[labels > 0]))),
        n_labels_trained=[run["n_labels"] for run in runs],
        merged_to_n_labels=n_merged,
        scribble_classes=None if classes is None else classes.tolist(),
        heap_kept_mapped=heap_kept,
        superpixel_method=superpixel_method(params),
    )
    sp_stack = np.stack(
        [sp if sp is not None else np.zeros(planes.shape[1:3], np.int32) for sp in superpixels]
    )
    sp_out = relabel_sequential(_offset_per_plane(sp_stack))
    extras = {"superpixels": sp_out[0] if single else sp_out}
    return Result(labels=labels[0] if single else labels, metadata=metadata, extras=extras)


def _offset_per_plane(stack: np.ndarray) -> np.ndarray:
    """Per-plane ids made unique across the stack by adding the previous planes' maxima."""
    out = stack.astype(np.int64)
    offset = 0
    for index in range(len(out)):
        plane_max = int(out[index].max())
        out[index] += offset * (out[index] > 0)
        offset += plane_max
    return out


def _train_group(
    planes: np.ndarray,
    superpixels: list[np.ndarray | None],
    scribbles: np.ndarray | None,
    classes: np.ndarray | None,
    params: BackpropParams,
    *,
    device: torch.device,
    n_features: int,
    min_labels: int,
    step_offset: int,
    total: int,
    preview_every: int,
    preview_base: np.ndarray,
    group: list[int],
) -> Generator[Progress, None, dict[str, Any]]:
    """Train one network on ``planes`` (one plane, or all for a joint stack)."""
    import torch

    from .backprop_nets import Trainer, build_network

    seed_everything(params.seed)
    images = torch.from_numpy(np.ascontiguousarray(planes.transpose(0, 3, 1, 2))).to(device)
    model = build_network(params.network, planes.shape[-1], n_features, params.n_conv).to(device)
    sp_tensor, n_sp = _superpixel_tensor(superpixels, device)
    scribble_tensor = None
    if scribbles is not None and classes is not None:
        # Class k becomes network output index(k); unlabelled pixels are -1.
        index = np.full(int(scribbles.max()) + 1, -1, dtype=np.int64)
        index[classes] = np.arange(len(classes))
        scribble_tensor = torch.from_numpy(index[scribbles]).to(device)
    trainer = Trainer(
        model,
        images,
        sp_tensor,
        n_sp,
        lr=params.lr if params.lr is not None else DEFAULT_LR[params.network],
        momentum=params.momentum,
        w_sim=1.0,
        w_con=params.w_con,
        scribbles=scribble_tensor,
        w_scribble=params.w_scribble,
    )
    target_labels = params.n_labels if params.n_labels is not None else 0
    sync_every = _sync_interval(device)
    n_pixels = int(np.prod(planes.shape[:3]))
    pending: list[torch.Tensor] = []
    stable = 0
    stop_reason = "max_iter"
    n_labels = n_features
    iteration = 0
    target = None
    for iteration in range(1, params.max_iter + 1):
        target, stats = trainer.step()
        pending.append(stats)
        loss_value: float | None = None
        last_sync = iteration % sync_every == 0 or iteration == params.max_iter
        if last_sync:
            history = torch.stack(pending).cpu().numpy()
            pending.clear()
            for loss, changed, count in history:
                previous, (loss_value, n_labels) = n_labels, (float(loss), int(count))
                # Converged: the same labels, and only a few boundary pixels flipping.
                calm = n_labels == previous and changed / n_pixels < params.converge_tol
                stable = stable + 1 if calm else 0
                if n_labels <= min_labels:
                    stop_reason = "min_labels"
                elif target_labels and n_labels <= target_labels:
                    stop_reason = "n_labels"
                elif params.patience and stable >= params.patience:
                    stop_reason = "converged"
                if stop_reason != "max_iter":
                    break
        preview = None
        if preview_every and iteration % preview_every == 0:
            preview = preview_base.copy()
            preview[group] = target.cpu().numpy() + 1
            preview = preview[0] if preview.shape[0] == 1 and len(preview_base) == 1 else preview
        yield Progress(
            step=step_offset + iteration,
            total=total,
            loss=loss_value,
            n_labels=n_labels if last_sync else None,
            preview=preview,
            message=f"iteration {iteration}: {n_labels} labels" if last_sync else "",
        )
        if stop_reason != "max_iter":
            break
    assert target is not None
    if params.labels_from == "response":
        target = trainer.response_argmax()
    labels = target.cpu().numpy().astype(np.int64)
    return {
        "labels": labels,
        "iterations": iteration,
        "stop_reason": stop_reason,
        "n_labels": int(len(np.unique(labels))),
    }


def _sync_interval(device: torch.device) -> int:
    """Iterations between reading the statistics back: every one on the CPU (free there),
    every few on a GPU so that the device never waits for the host. The stopping rules
    are then applied to each of those iterations in turn, as if read one by one."""
    return 1 if device.type == "cpu" else _SYNC_EVERY_GPU


def _superpixel_tensor(
    superpixels: list[np.ndarray | None], device: torch.device
) -> tuple[torch.Tensor | None, int]:
    """All planes' superpixels as one flat tensor of ids 0..S-1, unique across planes."""
    import torch

    if superpixels[0] is None:
        return None, 0
    stacked = _offset_per_plane(np.stack(superpixels))
    _, compact = np.unique(stacked, return_inverse=True)
    return torch.from_numpy(compact.reshape(-1).astype(np.int64)).to(device), int(compact.max()) + 1


def _postprocess(
    raw: np.ndarray,
    planes: np.ndarray,
    params: BackpropParams,
    classes: np.ndarray | None,
    *,
    per_plane: bool,
) -> tuple[np.ndarray, bool]:
    """Small regions absorbed, merged down to ``n_labels``, ids made 1..K (or scribble ids)."""
    labels = raw
    if params.min_size > 1:
        labels = np.stack([absorb_small_regions(p, params.min_size, keep_ids=True) for p in labels])
    groups = [np.s_[i : i + 1] for i in range(len(labels))] if per_plane else [np.s_[:]]
    merged = False
    if params.n_labels is not None:
        from scipy import ndimage as ndi

        protected = None if classes is None else np.arange(len(classes))
        # Colour smoothed over a few pixels: a striped or speckled region split into
        # light and dark labels then looks like one colour and is merged back first.
        smooth = ndi.gaussian_filter(planes, (0, _MERGE_SIGMA, _MERGE_SIGMA, 0))
        for where in groups:
            before = len(np.unique(labels[where]))
            labels[where] = merge_labels(labels[where], smooth[where], params.n_labels, protected)
            merged = merged or len(np.unique(labels[where])) < before
    if classes is not None:
        return _scribble_ids(labels, classes, groups), merged
    if per_plane:
        # Plane-by-plane networks: an id means nothing across planes, so keep them apart.
        labels = _offset_per_plane(labels + 1)
    return relabel_sequential(labels + 1 if not per_plane else labels), merged


def _scribble_ids(labels: np.ndarray, classes: np.ndarray, groups: list[Any]) -> np.ndarray:
    """Network output j < len(classes) becomes scribble class ``classes[j]`` in every plane;
    the other labels are numbered after the largest class id, apart in each group."""
    out = np.zeros(labels.shape, dtype=np.int64)
    next_id = int(classes.max()) + 1
    for where in groups:
        part = labels[where]
        values = np.unique(part)
        lut = np.zeros(int(values.max()) + 1, dtype=np.int64)
        scribbled = values[values < len(classes)]
        lut[scribbled] = classes[scribbled]
        others = values[values >= len(classes)]
        lut[others] = next_id + np.arange(len(others))
        next_id += len(others)
        out[where] = lut[part]
    return out.astype(np.promote_types(np.uint16, relabel_sequential(out).dtype))


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


def default_params(**changes: Any) -> BackpropParams:
    """The default parameters with some changed (validated)."""
    params = replace(BackpropParams(), **changes)
    validate(params)
    return params
