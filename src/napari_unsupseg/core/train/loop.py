"""The training engine: a generator like every engine of the package.

Each step draws a batch of augmented crops around labelled pixels, computes the
class-weighted cross-entropy with label 0 ignored, and takes an AdamW step with a
polynomially decaying learning rate (decayed over whichever of the epoch count and
the time limit comes first). After each epoch the held-out validation pixels are
scored; the weights with the lowest validation loss are kept (a later epoch within noise
of it - 5%, at least 0.002 - replaces them: as good, and trained longer), and training
stops early after ``patience`` epochs without a new lowest validation loss (never when no
pixels are held out), at the time limit, or when the driver asks
(:class:`~..engine.RunControl`): the result is then the best model so far.
Mixed precision (float16 autocast and a gradient scaler) is used on CUDA only.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.device import describe, resolve_device, seed_everything
from ..base.engine import (
    EngineRun,
    Progress,
    Result,
    RunControl,
    Stopwatch,
    no_control,
    provenance,
    run_to_end,
)
from ..base.memory import keep_heap_mapped
from ..base.params import validate
from ..models.islands import island_floors
from ..predict import PredictParams, predict
from .data import INTENSITY, TrainingSet, painted_windows, prepare, sample_batch, validation_batch
from .model import class_names, class_palette, loaded, silence_unused, start_model
from .params import TrainParams

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel


#: What a training step's :attr:`Progress.metrics` hold: ``epoch`` and ``elapsed``
#: (seconds) at every step; after each epoch ``val_loss`` and ``val_iou`` on the held-out
#: pixels, or ``epoch_loss`` (the epoch's mean training loss, what then picks the model)
#: when too few pixels were held out to validate.
TRAIN_METRICS = ("epoch", "elapsed", "val_loss", "val_iou", "epoch_loss")


@dataclass
class TrainResult(Result):
    """``labels``: the final model's prediction of the preview plane (empty when the driver
    asked for no previews); ``model``: the trained network, ready for ``predict``."""

    model: LoadedModel | None = None


def train(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
          params: TrainParams | None = None, *, control: RunControl | None = None,
          preview: tuple[int, int] = (0, 0), given_names: dict[int, str] | None = None,
          colours: dict[int, Any] | None = None, start: LoadedModel | None = None
          ) -> EngineRun:
    """Train a segmentation network on painted labels.

    ``images``: channels-last planes ``(Y, X, C)`` or stacks ``(N, Y, X, C)``, all with
    the same channels; ``labels``: integer label images of their spatial shapes (0 =
    unlabelled, k > 0 = class k). ``preview``: (image, plane) shown in previews.
    ``given_names`` / ``colours``: class names and RGB colours by label value (e.g. from
    the painted layer). ``start``: a model in memory to continue from (retraining after
    more corrections; it takes the place of ``params.init``). Returns a :class:`TrainResult`.
    """
    params = params or TrainParams()
    validate(params)
    control = control or no_control()
    watch = Stopwatch()

    import torch

    rng = seed_everything(params.seed)
    data = prepare(images, labels, params.crop_size, params.validation_fraction, rng)
    in_channels = data.planes[0].image.shape[-1]
    net, config, origin = start_model(params, in_channels, data.num_classes, data.mean,
                                      data.std, start)
    config.intensity = INTENSITY
    config.island_floors = {}  # measured anew for the new weights (core.islands)
    data.mean = np.asarray(config.mean, np.float32)
    data.std = np.asarray(config.std, np.float32)
    config.class_names = class_names(params.class_names, data.class_values, data.num_classes,
                                     given_names)
    config.palette = class_palette(data.num_classes, colours)
    silence_unused(net, config, data.class_values)
    device = resolve_device(params.device)
    net = net.to(device).train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=params.learning_rate,
                                  weight_decay=1e-4)
    use_amp = device.type == "cuda" and params.mixed_precision
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    weights = torch.from_numpy(data.weights).to(device)
    val_x, val_y = validation_batch(data) if data.windows else (None, None)
    preview_image = _preview_plane(images, preview)
    watch.lap("prepare")

    total = params.epochs * params.steps_per_epoch
    limit = params.time_limit or math.inf
    best = {"loss": math.inf, "iou": None, "epoch": 0,
            "state": copy.deepcopy(net.state_dict())}
    history: list[dict[str, float | None]] = []
    step, epoch, reason, bad_epochs, lowest = 0, 0, "epochs", 0, math.inf
    started = time.perf_counter()
    yield Progress(0, total, message=f"training {config.architecture} on "
                        f"{len(data.planes)} plane(s), {len(data.class_values)} classes, "
                        f"{device.type}")
    heap = contextlib.ExitStack()
    _keep_heap(heap, device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(params.threads))
    try:
        while epoch < params.epochs and reason == "epochs":
            losses = []
            for _ in range(params.steps_per_epoch):
                if control.stop_requested:
                    reason = "stopped"
                    break
                progress = min(1.0, max(step / total, (time.perf_counter() - started) / limit))
                for group in optimiser.param_groups:
                    group["lr"] = params.learning_rate * max(0.02, (1 - progress) ** 0.9)
                x, y = sample_batch(data, params.batch_size, rng)
                losses.append(_step(net, optimiser, scaler, weights, x, y, device, use_amp))
                step += 1
                shown = None
                if preview_image is not None and control.preview_due():
                    shown = _predict(net, config, preview_image, params.device)
                    _keep_heap(heap, device)  # prediction restores the allocator's defaults
                elapsed = time.perf_counter() - started
                yield Progress(step, _expected(step, total, elapsed, limit), loss=losses[-1],
                               preview=shown, message=f"epoch {epoch + 1}",
                               metrics={"epoch": epoch + 1, "elapsed": elapsed})
                if elapsed >= limit:
                    reason = "time limit"
                    break
            if not losses:
                break
            epoch += 1
            train_loss = float(np.mean(losses))
            val_loss, val_iou = (_evaluate(net, val_x, val_y, weights, device, data)
                                 if val_x is not None else (train_loss, None))
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                            "val_iou": val_iou, "seconds": time.perf_counter() - started})
            # Within noise of the lowest loss, a later (more trained) model is preferred.
            # Any new lowest resets the patience: late in a run the loss still falls,
            # by less than its noise per epoch but steadily.
            tolerance = max(2e-3, 0.05 * lowest)
            if val_loss <= lowest + tolerance or best["epoch"] == 0:
                best = {"loss": val_loss, "iou": val_iou, "epoch": epoch,
                        "state": copy.deepcopy(net.state_dict())}
            if val_loss < lowest:
                bad_epochs = 0
            else:
                bad_epochs += 1
                # The training loss cannot show over-fitting, and its noise would end runs
                # by chance: without validation pixels a run goes to its end.
                if (params.patience and val_x is not None and bad_epochs >= params.patience
                        and reason == "epochs"):
                    reason = "no improvement"
            lowest = min(lowest, val_loss)
            score = "" if val_iou is None else f", IoU {val_iou:.3f}"
            kind = "validation" if val_x is not None else "training"
            elapsed = time.perf_counter() - started
            scores = ({"val_loss": val_loss} if val_iou is None else
                      {"val_loss": val_loss, "val_iou": val_iou}) if val_x is not None \
                else {"epoch_loss": val_loss}
            yield Progress(step, _expected(step, total, elapsed, limit), loss=train_loss,
                           message=f"epoch {epoch}: {kind} loss {val_loss:.4f}{score}",
                           metrics={"epoch": epoch, "elapsed": elapsed, **scores})
    finally:
        heap.close()
        torch.set_num_threads(threads)
    watch.lap("train")
    net.load_state_dict(best["state"])
    net.eval()
    config.object_class = 0
    if reason != "stopped":  # a stop asks for the model now
        edges: list[np.ndarray] = []

        def predicted():  # one window at a time: only their edges are kept
            for image, painted in painted_windows(data):
                labels = _predict(net, config, image, params.device)
                edges.append(edge_pixels(labels))
                yield labels, painted

        config.island_floors = {str(v): f for v, f in island_floors(predicted()).items()}
        if params.separate_objects and len(data.class_values) == 2:
            config.object_class = object_class(edges, data.class_values)
    watch.lap("islands")
    result_labels = np.zeros((0, 0), np.uint8)
    if preview_image is not None and control.preview_interval is not None:
        result_labels = _predict(net, config, preview_image, params.device)
    watch.lap("predict")
    trained = loaded(net, config, "trained in this session")
    metadata = provenance(
        "train", params, stopped_early=reason == "stopped", stop_reason=reason,
        epochs_run=epoch, steps=step, best_epoch=best["epoch"], best_val_loss=best["loss"],
        best_val_iou=best["iou"], class_values=data.class_values,
        class_names=config.class_names, palette=config.palette, labelled_pixels=data.counts,
        validation_pixels=data.validation_pixels, crop_size=data.crop,
        loss_weights=data.weights, intensity=INTENSITY,
        architecture=config.architecture, in_channels=in_channels,
        object_class=config.object_class, device=describe(device),
        mixed_precision=use_amp, island_floors=config.island_floors, history=history,
        timings=watch.total(), **origin)
    return TrainResult(result_labels, metadata, model=trained)


def edge_pixels(labels: np.ndarray) -> np.ndarray:
    """The labels along a plane's four edges."""
    return np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def object_class(edges: list[np.ndarray], values: list[int]) -> int:
    """Of two painted classes, the objects' one: the class that covers less of the edges of
    the predicted planes (background surrounds objects; nuclei, cells, a photograph's
    subject)."""
    found = np.concatenate(edges) if edges else np.zeros(0, np.uint8)
    shares = [int((found == v).sum()) for v in values]
    return values[int(np.argmin(shares))]


def _expected(step: int, total: int, elapsed: float, limit: float) -> int:
    """The steps the run will likely make: the epochs' steps, or fewer at the time limit."""
    if math.isinf(limit) or elapsed <= 0:
        return total
    return max(step, min(total, int(step * limit / elapsed)))


def cpu_threads(asked: int) -> int:
    """``asked``, or (0) the cores not busy by the 1-minute load average, at least one.

    Two threads on two cores that other processes already use are several times slower
    than one: the threads wait for each other at every operation."""
    cores = os.cpu_count() or 1
    if asked > 0:
        return asked
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def _keep_heap(stack: contextlib.ExitStack, device: Any) -> None:
    stack.enter_context(keep_heap_mapped(device.type == "cpu"))


def _preview_plane(images: Sequence[np.ndarray], preview: tuple[int, int]) -> np.ndarray | None:
    index, plane = preview
    if not 0 <= index < len(images):
        return None
    image = images[index]
    if image.ndim == 4:
        plane = min(max(plane, 0), image.shape[0] - 1)
        return image[plane]
    return image


def _step(net, optimiser, scaler, weights, x, y, device, use_amp) -> float:
    """One optimisation step; returns the batch loss."""
    import torch
    import torch.nn.functional as F

    inputs = torch.from_numpy(x).to(device, non_blocking=True)
    target = torch.from_numpy(y).to(device, non_blocking=True)
    optimiser.zero_grad(set_to_none=True)
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
        logits = net(inputs)
    loss = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=0)
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()
    return float(loss.detach())


def _evaluate(net, x: np.ndarray, y: np.ndarray, weights, device, data: TrainingSet
              ) -> tuple[float, float]:
    """Validation loss and mean IoU over the painted classes (validation pixels only)."""
    import torch
    import torch.nn.functional as F

    net.eval()
    try:
        logits = []
        with torch.inference_mode():
            for start in range(0, len(x), 8):
                batch = torch.from_numpy(x[start:start + 8]).to(device)
                logits.append(net(batch).float().cpu())
        scores = torch.cat(logits)
        target = torch.from_numpy(y)
        loss = float(F.cross_entropy(scores, target, weight=weights.cpu(), ignore_index=0))
        predicted = scores.argmax(1).numpy()
    finally:
        net.train()
    scored = y > 0
    ious = []
    for v in data.class_values:
        truth, guess = y[scored] == v, predicted[scored] == v
        union = np.logical_or(truth, guess).sum()
        if truth.any():
            ious.append(np.logical_and(truth, guess).sum() / union)
    return loss, float(np.mean(ious)) if ious else 0.0


def _predict(net, config, plane: np.ndarray, device: str) -> np.ndarray:
    """The current network's labels for one plane, through the inference engine (so a
    preview is exactly what applying the model would give)."""
    was_training = net.training
    try:
        result = run_to_end(predict(plane, PredictParams(tile_size=512, overlap=32,
                                                            device=device),
                                    model=loaded_view(net, config)))
    finally:
        net.train(was_training)
    return result.labels


def loaded_view(net, config):
    """The network, in place, as a :class:`LoadedModel` (no copy, device unchanged)."""
    from ..models.loaded import LoadedModel

    return LoadedModel(net, config, "training", "napari-unsupseg", "")
