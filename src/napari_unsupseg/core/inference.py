"""Model inference: tiled prediction of a DeepLabV3(+) / U-Net checkpoint.

The engine :func:`predict` takes a channels-last plane ``(Y, X, C)`` or stack
``(N, Y, X, C)``, splits each plane into overlapping tiles, runs batches of tiles
through the network (``torch.inference_mode``; float16 autocast on CUDA), blends the
softmax probabilities of overlapping tiles with a smooth window and writes the
arg-max class as labels (plus, optionally, the winning probability as a float16
confidence image).

Memory is bounded by the tile, not the image: tiles are read and normalised one at
a time from the caller's array (no float copy of the image), and blending keeps only
the overlap strips not yet finished (about ``overlap x width x classes`` floats);
the outputs are the label image (uint8 for up to 255 classes) and the optional
confidence.

Tiled and whole-image predictions agree exactly (up to float rounding) wherever
every tile covering a pixel sees the pixel's whole receptive field - e.g. for a
U-Net whose receptive field is smaller than the overlap. DeepLab's receptive field
is larger than any practical overlap and its ASPP image-pooling branch averages over
the tile rather than the image, so tiled DeepLab predictions differ slightly from a
whole-image forward; the blending hides the seams. Use tiles as large as memory
allows for DeepLab (measured on the CPU with DeepLabV3+ MobileNetV2 and the default
1024 px tiles: about 0.6 GiB above the image and labels, the same for 4096^2 and
10,000^2 images; see ``benchmarks/bench_inference.py``).

This module does not import torch at import time (the parameters are read by the
widgets at start-up); the models are imported inside :func:`predict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .device import DEVICE_CHOICES
from .engine import EngineRun, Progress, Result, Stopwatch, provenance
from .errors import InputError
from .images import check_image, label_dtype
from .memory import keep_heap_mapped
from .models.presets import ARCHITECTURES, resolve_classes
from .params import param, validate

if TYPE_CHECKING:
    from .models.checkpoints import LoadedModel

__all__ = ["InferenceParams", "predict", "plan_tiles", "TilePlan", "intensity_range",
           "class_table"]

INTENSITY_CHOICES = ("auto", "dtype", "percentile")


@dataclass
class InferenceParams:
    """Parameters of :func:`predict` (shared by the widget and ``napari-unsupseg predict``)."""

    checkpoint: str = param(
        "", "Model file (.pth / .pt): a DeepLabV3Plus-Pytorch checkpoint, a state dict, a "
        "TorchScript archive, or a model saved by this plugin.")
    architecture: str = param(
        "auto", "Network architecture; 'auto' recognises it from the checkpoint's keys.",
        choices=("auto", *ARCHITECTURES))
    classes: str = param(
        "auto", "Class names: 'auto' (the checkpoint's own, else VOC for 21 classes, "
        "Cityscapes for 19), 'voc', 'cityscapes', 'pets', or names separated by commas.")
    tile_size: int = param(
        1024, "Largest tile side in pixels; larger tiles are faster and closer to a "
        "whole-image prediction but need more memory.", min=64, max=16384)
    overlap: int = param(
        64, "Pixels shared by neighbouring tiles, blended smoothly to hide seams (at most "
        "half the tile size is used).",
        min=0, max=4096)
    output_stride: str = param(
        "auto", "DeepLab output stride: 'auto' (the checkpoint's; 16 for DeepLabV3Plus-Pytorch "
        "files), 16, or 8 (finer, slower).", choices=("auto", "16", "8"),
        advanced=True)
    channels: str = param(
        "", "Image channels fed to the model, e.g. '0,1,2' (empty: all; a grey image is "
        "repeated for an RGB model).", advanced=True)
    intensity: str = param(
        "auto", "How intensities are scaled to [0, 1] before the model's normalisation: "
        "'dtype' (by the type's range, e.g. /255), 'percentile' (1st-99th percentile per "
        "channel), 'auto' (dtype for 8-bit images, else percentile).",
        choices=INTENSITY_CHOICES, advanced=True)
    batch_size: int = param(1, "Tiles per forward pass (more helps on a GPU).", min=1,
                            max=256, advanced=True)
    confidence: bool = param(
        False, "Also return the confidence (probability of the chosen class) as an image.")
    device: str = param("auto", "Where to run the model: auto (CUDA, then Apple MPS, then "
                        "CPU), or a named device.", choices=DEVICE_CHOICES)
    mixed_precision: bool = param(True, "Half-precision arithmetic on CUDA (ignored elsewhere).",
                                  advanced=True)


# --------------------------------------------------------------------------- tiling


@dataclass
class TilePlan:
    """Tile extents along one axis, their blending windows and the segments they share.

    ``starts[i]:ends[i]`` is tile ``i``; ``segments`` are the pieces between all tile
    edges, ``covering[k]`` the tiles over segment ``k``; ``tile_segments[i]`` the
    segments inside tile ``i``.
    """

    starts: list[int]
    ends: list[int]
    windows: list[np.ndarray]
    segments: list[tuple[int, int]]
    covering: list[list[int]]
    tile_segments: list[list[int]]


def _ramp(n: int, ramp: int) -> np.ndarray:
    """Window of length n rising smoothly (sin^2) over the first ``ramp`` pixels."""
    if ramp <= 0:
        return np.ones(n, np.float32)
    u = (np.arange(n, dtype=np.float64) + 0.5) / ramp
    w = np.where(u < 1.0, np.sin(0.5 * np.pi * np.clip(u, 0, 1)) ** 2, 1.0)
    return np.maximum(w, 1e-3).astype(np.float32)


def plan_tiles(length: int, tile: int, overlap: int, multiple: int = 1) -> TilePlan:
    """Fewest tiles of at most ``tile`` px (plus < ``multiple`` for the last) covering
    ``length`` with about ``overlap`` px shared; starts and inner lengths are multiples of
    ``multiple`` so that each tile's feature grid lines up with the whole image's."""
    multiple = max(1, int(multiple))
    tile = max(multiple, tile // multiple * multiple)
    overlap = max(0, min(overlap, tile // 2))
    if length <= tile:
        starts, ends = [0], [length]
    else:
        starts, ends = _spread(length, tile, overlap, multiple)
    n = len(starts)
    windows = []
    for i in range(n):
        lo = max(0, ends[i - 1] - starts[i]) if i > 0 else 0
        hi = max(0, ends[i] - starts[i + 1]) if i < n - 1 else 0
        size = ends[i] - starts[i]
        windows.append(np.minimum(_ramp(size, lo), _ramp(size, hi)[::-1]))
    edges = sorted(set(starts) | set(ends))
    segments = list(zip(edges[:-1], edges[1:], strict=True))
    covering = [[i for i in range(n) if starts[i] <= a and b <= ends[i]] for a, b in segments]
    tile_segments = [[k for k, cov in enumerate(covering) if i in cov] for i in range(n)]
    return TilePlan(starts, ends, windows, segments, covering, tile_segments)


def _spread(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], list[int]]:
    """Tile starts and ends: the fewest tiles, evenly spread and as small as they can be."""
    first = max(2, math.ceil((length - overlap) / (tile - overlap)))
    for n in range(first, first + 4):
        size = math.ceil((length + (n - 1) * overlap) / n)
        size = min(tile, math.ceil(size / multiple) * multiple)
        starts = [int(i * (length - size) / (n - 1)) // multiple * multiple for i in range(n)]
        ends = [s + size for s in starts[:-1]] + [length]
        if len(set(starts)) == n and all(
                starts[i + 1] <= ends[i] - min(overlap, multiple) for i in range(n - 1)):
            return starts, ends
    # Fallback (coarse multiples): fixed step, the last tile flush with the end.
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, step))
    last = (length - tile) // multiple * multiple
    if last > starts[-1]:
        starts.append(last)
    ends = [s + tile for s in starts[:-1]] + [length]
    return starts, ends


class _Blender:
    """Streams tile probabilities into labels (and confidence), keeping only unfinished
    overlap pieces in memory."""

    def __init__(self, ys: TilePlan, xs: TilePlan, labels: np.ndarray,
                 confidence: np.ndarray | None, offset: int) -> None:
        self.ys, self.xs = ys, xs
        self.labels, self.confidence, self.offset = labels, confidence, offset
        self.pending: dict[tuple[int, int], list[Any]] = {}

    def add(self, ty: int, tx: int, logits: Any) -> None:
        """``logits``: (classes, tile height, tile width) float32 CPU tensor of tile (ty, tx).

        Pieces only this tile covers take the arg-max of the logits directly (the softmax
        is only computed where needed: overlaps, and the confidence when asked for)."""
        import torch

        ys, xs = self.ys, self.xs
        y0, x0 = ys.starts[ty], xs.starts[tx]
        for sy in ys.tile_segments[ty]:
            ya, yb = ys.segments[sy]
            for sx in xs.tile_segments[tx]:
                xa, xb = xs.segments[sx]
                part = logits[:, ya - y0:yb - y0, xa - x0:xb - x0]
                expected = len(ys.covering[sy]) * len(xs.covering[sx])
                if expected == 1:
                    best = part.argmax(0).numpy()
                    confidence = None
                    if self.confidence is not None:
                        confidence = torch.softmax(part, 0).amax(0).numpy()
                    self._write(ya, yb, xa, xb, best, confidence)
                    continue
                probs = torch.softmax(part, 0).numpy()
                weight = np.outer(ys.windows[ty][ya - y0:yb - y0],
                                  xs.windows[tx][xa - x0:xb - x0])
                entry = self.pending.get((sy, sx))
                if entry is None:
                    entry = self.pending[(sy, sx)] = [probs * weight, weight.copy(), 1]
                else:
                    entry[0] += probs * weight
                    entry[1] += weight
                    entry[2] += 1
                if entry[2] == expected:
                    del self.pending[(sy, sx)]
                    blended = entry[0] / entry[1]
                    self._write(ya, yb, xa, xb, blended.argmax(axis=0),
                                None if self.confidence is None else blended.max(axis=0))

    def _write(self, ya: int, yb: int, xa: int, xb: int, best: np.ndarray,
               confidence: np.ndarray | None) -> None:
        if self.offset:
            best = best + self.offset
        self.labels[ya:yb, xa:xb] = best
        if confidence is not None:
            self.confidence[ya:yb, xa:xb] = confidence


# --------------------------------------------------------------------------- intensities


def intensity_range(image: np.ndarray, mode: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) that map intensities to [0, 1], from at most ~1 M pixels.

    ``image`` is channels-last (any number of leading axes); nothing the size of the
    image is allocated.
    """
    if mode not in INTENSITY_CHOICES:
        raise InputError(f"intensity must be one of {', '.join(INTENSITY_CHOICES)}.")
    channels = image.shape[-1]
    dtype = image.dtype
    if mode == "auto":
        mode = "dtype" if dtype in (np.uint8, np.bool_) else "percentile"
    if mode == "dtype":
        if dtype == np.bool_:
            high = 1.0
        elif np.issubdtype(dtype, np.integer):
            high = float(np.iinfo(dtype).max)
        else:
            high = 1.0
        low = float(np.iinfo(dtype).min) if np.issubdtype(dtype, np.signedinteger) else 0.0
        return (np.full(channels, low, np.float32), np.full(channels, high, np.float32))
    pixels = int(np.prod(image.shape[:-1]))
    step = max(1, int(math.sqrt(pixels / 1_000_000)))
    sample = np.asarray(image[..., ::step, ::step, :]).reshape(-1, channels)
    low, high = np.percentile(sample.astype(np.float32), [1.0, 99.0], axis=0)
    return low.astype(np.float32), high.astype(np.float32)


def _select_channels(image: np.ndarray, spec: str, model_channels: int) -> tuple[list[int], str]:
    """Indices of the image channels fed to the model, and a note for the metadata."""
    available = image.shape[-1]
    if spec.strip():
        try:
            chosen = [int(c) for c in spec.replace(" ", "").split(",") if c != ""]
        except ValueError:
            raise InputError(
                f"channels must be integers separated by commas, like '0,1,2'; got '{spec}'."
            ) from None
        bad = [c for c in chosen if not -available <= c < available]
        if bad:
            raise InputError(f"The image has {available} channel(s); channel(s) {bad} do not "
                             "exist.")
        chosen = [c % available for c in chosen]
    else:
        chosen = list(range(available))
    note = ""
    if len(chosen) == 1 and model_channels == 3:
        chosen, note = chosen * 3, "grey image repeated to 3 channels"
    if len(chosen) != model_channels:
        raise InputError(
            f"The model takes {model_channels} channel(s) but {len(chosen)} were given "
            f"(the image has {available}); choose {model_channels} with the channels "
            f"setting, e.g. '{','.join(str(i) for i in range(model_channels))}'.")
    return chosen, note


def class_table(names: list[str], offset: int) -> dict[int, str]:
    """Label value -> class name."""
    return {i + offset: name for i, name in enumerate(names)}


# --------------------------------------------------------------------------- engine


def predict(image: np.ndarray, params: InferenceParams, model: LoadedModel | None = None,
            previews: bool = False) -> EngineRun:
    """Segment a channels-last plane ``(Y, X, C)`` or stack ``(N, Y, X, C)`` with a model.

    ``model``: an already loaded :class:`~.models.checkpoints.LoadedModel` (then
    ``params.checkpoint`` is not read). ``previews``: attach the label image filled so
    far to each :class:`Progress`.

    Returns a :class:`Result` whose ``labels`` have the image's spatial shape (label =
    class index, + 1 when class 0 is not a background class); ``extras["confidence"]``
    (float16) when asked for; ``metadata`` holds the parameters, model description,
    class names, palette and timings.
    """
    validate(params)
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise InputError(f"Expected a channels-last plane (Y, X, C) or stack (N, Y, X, C); "
                         f"got shape {image.shape}.")
    if image.dtype != np.bool_ and not np.issubdtype(image.dtype, np.number):
        raise InputError(f"The image must hold numbers; its type is {image.dtype}.")
    if min(image.shape[-3:-1]) < 2:
        raise InputError(f"The image is too small to segment (plane size {image.shape[-3:-1]}).")
    stack = image if image.ndim == 4 else image[np.newaxis]
    if np.issubdtype(stack.dtype, np.floating) and stack.size <= 50_000_000:
        check_image(stack)

    import torch

    from .device import describe, resolve_device
    from .models.checkpoints import load_checkpoint
    from .models.unet import pad_to_multiple

    watch = Stopwatch()
    if model is None:
        if not params.checkpoint:
            raise InputError("Choose a checkpoint file for the model.")
        stride = None if params.output_stride == "auto" else int(params.output_stride)
        model = load_checkpoint(params.checkpoint, params.architecture, stride)
    config = model.config
    watch.lap("load")
    device = resolve_device(params.device)
    net = model.model.to(device).eval()
    multiple = int(getattr(net, "size_multiple", 32))
    in_channels = int(getattr(net, "in_channels", config.in_channels))
    chosen, note = _select_channels(stack, params.channels, in_channels)
    names, palette, background = resolve_classes(params.classes, config.num_classes, config)
    offset = 0 if background else 1
    low, high = intensity_range(stack, params.intensity)
    low, high = low[chosen], high[chosen]
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    mean = np.asarray(config.mean, np.float32)
    std = np.asarray(config.std, np.float32)
    if mean.shape != (in_channels,) or std.shape != (in_channels,):
        if in_channels == 1 and mean.shape == (3,):
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        else:
            mean, std = np.zeros(in_channels, np.float32), np.ones(in_channels, np.float32)
    scale = (1.0 / (span * std)).astype(np.float32)
    shift = (-(low / span) / std - mean / std).astype(np.float32)
    constant = high <= low

    ys = plan_tiles(stack.shape[1], params.tile_size, params.overlap, multiple)
    xs = plan_tiles(stack.shape[2], params.tile_size, params.overlap, multiple)
    tiles = [(ty, tx) for ty in range(len(ys.starts)) for tx in range(len(xs.starts))]
    batches_per_plane = _count_batches(tiles, ys, xs, params.batch_size)
    total = batches_per_plane * stack.shape[0]
    dtype = label_dtype(config.num_classes - 1 + offset)
    labels = np.zeros(stack.shape[:3], dtype)
    confidence = np.zeros(stack.shape[:3], np.float16) if params.confidence else None
    use_amp = device.type == "cuda" and params.mixed_precision
    chan_index = np.asarray(chosen)
    shown = labels if image.ndim == 4 else labels[0]  # previews have the result's shape

    def load_tile(plane: int, ty: int, tx: int) -> torch.Tensor:
        part = stack[plane, ys.starts[ty]:ys.ends[ty], xs.starts[tx]:xs.ends[tx]]
        part = np.asarray(part)[..., chan_index].astype(np.float32)
        part = np.clip(part, low, high, out=part)
        part *= scale
        part += shift
        if constant.any():
            part[..., constant] = (-mean / std)[constant]
        return torch.from_numpy(np.ascontiguousarray(part.transpose(2, 0, 1)))

    watch.lap("prepare")
    step = 0
    yield Progress(step, total, message=f"{len(tiles)} tile(s) per plane on {device.type}")
    # Tiles reuse the same large buffers: keeping them mapped saves the page faults
    # of every forward on the CPU (a process-wide setting, restored at the end).
    with keep_heap_mapped(device.type == "cpu"):
        for plane in range(stack.shape[0]):
            blender = _Blender(ys, xs, labels[plane],
                               None if confidence is None else confidence[plane], offset)
            for batch in _batches(tiles, ys, xs, params.batch_size):
                x = torch.stack([load_tile(plane, ty, tx) for ty, tx in batch]).to(device)
                x, (h, w) = pad_to_multiple(x, multiple)
                # Grad modes are per thread: never hold one across a yield, or a worker
                # thread that is reused (or a generator closed elsewhere) inherits it.
                with (torch.inference_mode(),
                      torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp)):
                    try:
                        logits = net(x)
                    except torch.OutOfMemoryError as error:
                        raise InputError(
                            f"The {device.type} device ran out of memory on tiles of "
                            f"{tuple(x.shape[-2:])} px; lower the tile size or batch size."
                        ) from error
                    logits = logits[..., :h, :w].float().cpu()
                for (ty, tx), tile_logits in zip(batch, logits, strict=True):
                    blender.add(ty, tx, tile_logits)
                step += 1
                yield Progress(step, total, preview=shown if previews else None,
                               message=f"plane {plane + 1}/{stack.shape[0]}")
    watch.lap("predict")
    if image.ndim == 3:
        labels = labels[0]
        confidence = None if confidence is None else confidence[0]
    metadata = provenance(
        "inference", params,
        model={"architecture": config.architecture, "num_classes": config.num_classes,
               "in_channels": config.in_channels, "output_stride": config.output_stride,
               "separable": config.separable, "source": model.source, "format": model.format,
               "sha256": model.sha256},
        class_names=names, palette=palette, label_offset=offset,
        classes=class_table(names, offset), channels=chosen, channel_note=note,
        intensity={"low": low, "high": high}, tiles=len(tiles),
        overlap_used=min(params.overlap, params.tile_size // 2),
        tile_grid=[len(ys.starts), len(xs.starts)], device=describe(device),
        timings=watch.total())
    extras = {} if confidence is None else {"confidence": confidence}
    return Result(labels, metadata, extras)


def _batches(tiles: list[tuple[int, int]], ys: TilePlan, xs: TilePlan, size: int):
    """Consecutive tiles of the same shape, at most ``size`` at a time (row-major order)."""
    batch: list[tuple[int, int]] = []
    shape = None
    for ty, tx in tiles:
        this = (ys.ends[ty] - ys.starts[ty], xs.ends[tx] - xs.starts[tx])
        if batch and (this != shape or len(batch) == size):
            yield batch
            batch = []
        batch.append((ty, tx))
        shape = this
    if batch:
        yield batch


def _count_batches(tiles, ys, xs, size) -> int:
    return sum(1 for _ in _batches(tiles, ys, xs, size))

