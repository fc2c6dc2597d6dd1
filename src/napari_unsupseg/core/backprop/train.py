"""One network of the backprop segmenter trained on one plane or a joint stack.

:func:`train_network` runs the iterations (Kanezaki's loop, with the vote on the
device and the statistics read back every few iterations on a GPU), applies the
stopping rules and returns the label map; :mod:`.engine` drives it over planes and
restarts and finishes the result.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.device import seed_everything
from ..base.engine import Progress, RunControl
from ..base.images import offset_per_plane
from .params import DEFAULT_LR, SYNC_EVERY_GPU, BackpropParams

if TYPE_CHECKING:
    import torch


@dataclass
class NetworkRun:
    """What one network's training gives: its label map (0-based classes), the iterations
    it ran, why it stopped, how many labels it ended with, and the network itself (the
    large-image path labels the full-size image with it, tile by tile)."""

    labels: np.ndarray
    iterations: int
    stop_reason: str
    n_labels: int
    model: Any = None


def train_network(
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
    control: RunControl,
    preview_base: np.ndarray,
    group: list[int],
    full: tuple[np.ndarray, list[np.ndarray | None]] | None = None,
    ignore: np.ndarray | None = None,
) -> Generator[Progress, None, NetworkRun]:
    """Train one network on ``planes`` (one plane, or all for a joint stack).

    ``full``: the same planes at full size and their superpixels, when ``planes`` is a
    shrunk copy to train on: the labels returned are then the trained network's on the
    full-size planes, voted by their superpixels. ``ignore``: ``(n, h, w)`` bool of
    ``planes``' pixels left out of the loss and the label count (no data there)."""
    import torch

    from .nets import Trainer, build_network

    seed_everything(params.seed)
    images = _channels_first(planes, device)
    model = build_network(params.network, planes.shape[-1], n_features, params.n_conv).to(device)
    sp_tensor, n_sp = superpixel_tensor(superpixels, device)
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
        ignore=None if ignore is None else torch.from_numpy(ignore).to(device),
    )
    target_labels = params.n_labels if params.n_labels is not None else 0
    sync_every = sync_interval(device)
    n_pixels = int(np.prod(planes.shape[:3])) if ignore is None else max(1, int((~ignore).sum()))
    pending: list[torch.Tensor] = []
    stable = 0
    stop_reason = "max_iter"
    n_labels = n_features
    iteration = 0
    target = None
    for step in range(1, params.max_iter + 1):
        if control.stop_requested and target is not None:
            stop_reason = "stopped"  # asked between two iterations: keep the last one
            break
        iteration = step
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
        if control.preview_due():
            preview = preview_base.copy()
            preview[group] = _resized(target.cpu().numpy(), preview.shape[1:]) + 1
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
    if full is not None:
        full_planes, full_superpixels = full
        if params.labels_from == "response":
            full_superpixels = [None]  # the unvoted argmax, as the Kanezaki scripts give
        voters, n_voters = superpixel_tensor(full_superpixels, device)
        target = trainer.label(_channels_first(full_planes, device), voters, n_voters)
    elif params.labels_from == "response":
        target = trainer.response_argmax()
    labels = target.cpu().numpy().astype(np.int64)
    return NetworkRun(labels, iteration, stop_reason, int(len(np.unique(labels))), model)


def runs_summary(runs: list[NetworkRun]) -> dict[str, Any]:
    """What a result's metadata says of its networks' training: iterations, why they
    stopped (one reason, or the sorted reasons; "stopped" when none ran) and labels left."""
    reasons = sorted({run.stop_reason for run in runs}) or ["stopped"]
    return {
        "iterations": [run.iterations for run in runs],
        "stop_reason": reasons[0] if len(reasons) == 1 else reasons,
        "n_labels_trained": [run.n_labels for run in runs],
    }


def _channels_first(planes: np.ndarray, device: torch.device) -> torch.Tensor:
    """Planes ``(n, h, w, c)`` as the network's input ``(n, c, h, w)`` on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(planes.transpose(0, 3, 1, 2))).to(device)


def _resized(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Label planes ``(n, h, w)`` brought to ``shape`` ``(H, W)`` by nearest neighbour."""
    if labels.shape[1:] == tuple(shape):
        return labels
    rows = np.arange(shape[0]) * labels.shape[1] // shape[0]
    cols = np.arange(shape[1]) * labels.shape[2] // shape[1]
    return labels[:, rows][:, :, cols]


def sync_interval(device: torch.device) -> int:
    """Iterations between reading the statistics back: every one on the CPU (free there),
    every few on a GPU so that the device never waits for the host. The stopping rules
    are then applied to each of those iterations in turn, as if read one by one."""
    return 1 if device.type == "cpu" else SYNC_EVERY_GPU


def superpixel_tensor(
    superpixels: list[np.ndarray | None], device: torch.device
) -> tuple[torch.Tensor | None, int]:
    """All planes' superpixels as one flat tensor of ids 0..S-1, unique across planes."""
    import torch

    if superpixels[0] is None:
        return None, 0
    stacked = offset_per_plane(np.stack(superpixels))
    _, compact = np.unique(stacked, return_inverse=True)
    return torch.from_numpy(compact.reshape(-1).astype(np.int64)).to(device), int(compact.max()) + 1
