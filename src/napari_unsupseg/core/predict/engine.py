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

Inputs are never padded for networks that take any size (DeepLab, FCN, LR-ASPP): an
image that fits one tile gives exactly the whole-image forward. Only architectures that
need a size multiple (U-Net: 2^depth) get their tiles padded, and a model with a fixed
input size (some ONNX models) is run tile by tile at that size.

Tiled and whole-image predictions agree exactly (up to float rounding) wherever
every tile covering a pixel sees the pixel's whole receptive field - e.g. for a
U-Net whose receptive field is smaller than the overlap. DeepLab's receptive field
is larger than any practical overlap and its ASPP image-pooling branch averages over
the tile rather than the image, so tiled DeepLab predictions differ slightly from a
whole-image forward; the blending hides the seams. Use tiles as large as memory
allows for DeepLab (measured on the CPU with DeepLabV3+ MobileNetV2 and the default
1024 px tiles: about 0.6 GiB above the image and labels, the same for 4096^2 and
10,000^2 images; see ``benchmarks/bench_inference.py``).

A run asked to stop (:class:`~.engine.RunControl`) returns a finished result: the
tiles done so far, the rest 0, ``stopped_early`` and the tile counts in its metadata.

This module does not import torch at import time (the parameters are read by the
widgets at start-up); the models are imported inside :func:`predict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..base.device import DEVICE_CHOICES
from ..base.engine import EngineRun, Progress, Result, RunControl, Stopwatch, provenance
from ..base.errors import InputError
from ..base.images import (
    INTENSITY_CHOICES,
    check_image,
    check_rank,
    intensity_range,
    label_dtype,
)
from ..base.memory import keep_heap_mapped
from ..base.params import param, validate
from ..models.architectures import ARCHITECTURES, input_geometry
from ..models.presets import resolve_classes
from .tiles import Blender, TilePlan, batches, count_batches, plan_tiles

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel

@dataclass
class PredictParams:
    """Parameters of :func:`predict` (shared by the widget and ``napari-unsupseg predict``)."""

    checkpoint: str = param(
        "", "Model file: a PyTorch checkpoint (.pth / .pt: DeepLabV3Plus-Pytorch, torchvision, "
        "pytorch-fcn or this plugin), a TorchScript archive, an ONNX model (.onnx) or a "
        "bioimage.io package.")
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
    bands: str = param(
        "", "Bands fed to the model's channels in order, numbered from 1 as GIS software "
        "does, e.g. '4,3,2' (instead of channels).", advanced=True)
    resolution: str = param(
        "", "The image's pixel size in the model's unit (metres for most models), as 'S' or "
        "'X,Y', for files without a georeference (empty: the GeoTIFF's own).", advanced=True)
    resample: bool = param(
        True, "Resample an image whose pixel size differs from the model's by more than 5 "
        "percent to the model's, and the labels back to the image.", advanced=True)
    intensity: str = param(
        "auto", "How intensities are scaled to [0, 1] before the model's normalisation: "
        "'dtype' (by the type's range, e.g. /255), 'percentile' (1st-99th percentile per "
        "channel), 'auto' (the model's own; else dtype for 8-bit images, percentile "
        "otherwise), 'stretch' (1st-99.8th percentile: models trained here).",
        choices=INTENSITY_CHOICES, advanced=True)
    batch_size: int = param(1, "Tiles per forward pass (more helps on a GPU).", min=1,
                            max=256, advanced=True)
    confidence: bool = param(
        False, "Also return the confidence (probability of the chosen class) as an image.")
    absorb_islands: bool = param(
        True, "Models trained in this plugin: small, uncertain islands of a class (far "
        "smaller than its regions around the training labels) take the class around them.",
        advanced=True)
    objects: bool = param(
        True, "Models trained here on objects vs background: also return every object as "
        "its own label (touching objects split), ready for review.")
    objects_mode: str = param(
        "planes", "Objects of a z-stack: 'planes' finds each plane's on its own; 'volume' "
        "splits them in 3-D with the voxel spacing, so an object is one label through "
        "every plane it crosses (the model still sees one plane at a time).",
        choices=("planes", "volume"))
    spacing_z: float = param(
        1.0, "Objects in volume mode: distance between planes, in the unit of spacing_y and "
        "spacing_x (only the ratios matter).", min=1e-6, label="z spacing")
    spacing_y: float = param(1.0, "Objects in volume mode: voxel height (y).", min=1e-6,
                             label="y spacing", advanced=True)
    spacing_x: float = param(1.0, "Objects in volume mode: voxel width (x).", min=1e-6,
                             label="x spacing", advanced=True)
    device: str = param("auto", "Where to run the model: auto (CUDA, then Apple MPS, then "
                        "CPU), or a named device.", choices=DEVICE_CHOICES)
    mixed_precision: bool = param(True, "Half-precision arithmetic on CUDA (ignored elsewhere).",
                                  advanced=True)


def select_channels(image: np.ndarray, spec: str, model_channels: int, bands: str = ""
                     ) -> tuple[list[int], str]:
    """Indices of the image channels fed to the model, and a note for the metadata;
    ``bands`` (numbered from 1) is the one place where band numbers become channels."""
    available = image.shape[-1]
    if bands.strip():
        if spec.strip():
            raise InputError("Give either bands (numbered from 1) or channels (from 0), "
                             "not both.")
        try:
            numbers = [int(b) for b in bands.replace(" ", "").split(",") if b != ""]
        except ValueError:
            raise InputError(f"bands must be numbers separated by commas, like '4,3,2'; got "
                             f"'{bands}'.") from None
        missing = [b for b in numbers if not 1 <= b <= available]
        if missing:
            raise InputError(f"The image has {available} band(s), numbered 1 to {available}; "
                             f"band(s) {missing} do not exist.")
        spec = ",".join(str(b - 1) for b in numbers)
    if not spec.strip() and model_channels > available > 1:
        raise InputError(f"The model takes {model_channels} channels but the image has only "
                         f"{available} band(s); it cannot be applied to this image.")
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


def load_model(params: PredictParams) -> LoadedModel:
    """The model that ``params`` name (checkpoint, architecture, output stride)."""
    from ..models.checkpoints import load_checkpoint

    if not params.checkpoint:
        raise InputError("Choose a checkpoint file for the model.")
    stride = None if params.output_stride == "auto" else int(params.output_stride)
    return load_checkpoint(params.checkpoint, params.architecture, stride)


def class_table(names: list[str], offset: int) -> dict[int, str]:
    """Label value -> class name."""
    return {i + offset: name for i, name in enumerate(names)}


# --------------------------------------------------------------------------- engine


def predict(image: np.ndarray, params: PredictParams, model: LoadedModel | None = None, *,
            control: RunControl | None = None) -> EngineRun:
    """Segment a channels-last plane ``(Y, X, C)`` or stack ``(N, Y, X, C)`` with a model.

    ``model``: an already loaded :class:`~.models.checkpoints.LoadedModel` (then
    ``params.checkpoint`` is not read). ``control``: the driver's
    :class:`~.engine.RunControl` - a preview (the labels so far) is attached to a
    :class:`Progress` only when ``control.preview_due()``; ``control.request_stop()``
    ends the run after the current batch with a finished result (tiles done so far, the
    rest 0, ``stopped_early: True``).

    Returns a :class:`Result` whose ``labels`` have the image's spatial shape (label =
    class index, + 1 when class 0 is not a background class); ``extras["confidence"]``
    (float16) when asked for; ``extras["objects"]`` (uint32, one label per object, touching
    ones split: :mod:`.objects`) for a model trained here on objects vs background;
    ``metadata`` holds the parameters, model description,
    class names, palette, tile counts and timings.
    """
    validate(params)
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    check_rank(image, "Expected")
    if image.dtype != np.bool_ and not np.issubdtype(image.dtype, np.number):
        raise InputError(f"The image must hold numbers; its type is {image.dtype}.")
    if min(image.shape[-3:-1]) < 2:
        raise InputError(f"The image is too small to segment (plane size {image.shape[-3:-1]}).")
    stack = image if image.ndim == 4 else image[np.newaxis]
    if np.issubdtype(stack.dtype, np.floating) and stack.size <= 50_000_000:
        check_image(stack)

    import torch

    from ..base.device import describe, resolve_device

    control = control or RunControl()
    watch = Stopwatch()
    model = model if model is not None else load_model(params)
    config = model.config
    watch.lap("load")
    device = resolve_device(params.device)
    net = model.model.to(device).eval()
    pad_multiple, align, fixed = input_geometry(config, net)
    in_channels = int(getattr(net, "in_channels", config.in_channels))
    chosen, note = select_channels(stack, params.channels, in_channels, params.bands)
    if config.bgr and len(chosen) == 3:
        chosen = chosen[::-1]
    names, palette, background = resolve_classes(params.classes, config.num_classes, config)
    offset = 0 if background else 1
    intensity = config.intensity if params.intensity == "auto" else params.intensity
    low, high = intensity_range(stack, intensity)
    load_tile = _tile_loader(stack, chosen, low[chosen], high[chosen], config.mean, config.std)

    tile_y, tile_x = fixed or (params.tile_size, params.tile_size)
    ys = plan_tiles(stack.shape[1], tile_y, min(params.overlap, tile_y // 2), align)
    xs = plan_tiles(stack.shape[2], tile_x, min(params.overlap, tile_x // 2), align)
    tiles = [(ty, tx) for ty in range(len(ys.starts)) for tx in range(len(xs.starts))]
    total = count_batches(tiles, ys, xs, params.batch_size) * stack.shape[0]
    labels = np.zeros(stack.shape[:3], label_dtype(config.num_classes - 1 + offset))
    floors = {int(v) + offset: int(f) for v, f in config.island_floors.items()} \
        if params.absorb_islands else {}
    confidence = np.zeros(stack.shape[:3], np.float16) \
        if params.confidence or floors else None
    use_amp = device.type == "cuda" and params.mixed_precision
    shown = labels if image.ndim == 4 else labels[0]  # previews have the result's shape
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

    watch.lap("prepare")
    step = done = 0
    yield Progress(step, total, message=f"{len(tiles)} tile(s) per plane on {device.type}")
    # Tiles reuse the same large buffers: keeping them mapped saves the page faults
    # of every forward on the CPU (a process-wide setting, restored at the end).
    with keep_heap_mapped(device.type == "cpu"):
        for plane in range(stack.shape[0]):
            blender = Blender(ys, xs, labels[plane],
                              None if confidence is None else confidence[plane], offset)
            for batch in batches(tiles, ys, xs, params.batch_size):
                if control.stop_requested:
                    break
                x = torch.stack([load_tile(plane, ys, xs, t) for t in batch]).to(device)
                x, (h, w) = _pad(x, pad_multiple, fixed)
                # Grad modes are per thread: never hold one across a yield, or a worker
                # thread that is reused (or a generator closed elsewhere) inherits it.
                with (torch.inference_mode(),
                      torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp)):
                    try:
                        logits = net(x)
                    except out_of_memory as error:
                        raise InputError(
                            f"The {device.type} device ran out of memory on tiles of "
                            f"{tuple(x.shape[-2:])} px; lower the tile size or batch size."
                        ) from error
                    logits = logits[..., :h, :w].float().cpu()
                for (ty, tx), tile_logits in zip(batch, logits, strict=True):
                    blender.add(ty, tx, tile_logits)
                step += 1
                done += len(batch)
                preview = shown.copy() if control.preview_due() else None
                yield Progress(step, total, preview=preview,
                               message=f"plane {plane + 1}/{stack.shape[0]}")
            if control.stop_requested:
                blender.flush()  # overlaps of the tiles done, from those tiles
                break
    watch.lap("predict")
    islands = 0
    if floors and done == len(tiles) * stack.shape[0]:
        from ..models.islands import absorb_islands

        islands = sum(absorb_islands(labels[p], confidence[p], floors)
                      for p in range(stack.shape[0]))
        watch.lap("islands")
    if image.ndim == 3:
        labels = labels[0]
        confidence = None if confidence is None else confidence[0]
    metadata = provenance(
        "predict", params,
        model={"architecture": config.architecture, "num_classes": config.num_classes,
               "in_channels": config.in_channels, "output_stride": config.output_stride,
               "separable": config.separable, "source": model.source, "format": model.format,
               "sha256": model.sha256},
        class_names=names, palette=palette, label_offset=offset,
        classes=class_table(names, offset), channels=chosen, channel_note=note,
        intensity={"mode": intensity, "low": low[chosen], "high": high[chosen]},
        tiles=len(tiles), overlap_used=min(params.overlap, min(tile_y, tile_x) // 2),
        tile_grid=[len(ys.starts), len(xs.starts)], padded_to_multiple=pad_multiple,
        stopped_early=done < len(tiles) * stack.shape[0], tiles_done=done,
        tiles_total=len(tiles) * stack.shape[0], islands_absorbed=islands,
        device=describe(device),
        timings=watch.total())
    extras = {} if not params.confidence else {"confidence": confidence}
    if params.objects and config.object_class and not metadata["stopped_early"]:
        from .objects import objects_of_class

        spacing = (params.spacing_z, params.spacing_y, params.spacing_x)
        objects, metadata["objects"] = objects_of_class(
            labels, config.object_class, spacing if params.objects_mode == "volume" else None)
        if objects is not None:
            extras["objects"] = objects
            watch.lap("objects")
            metadata["timings"] = watch.total()
    return Result(labels, metadata, extras)


def _pad(x, multiple: int, fixed: tuple[int, int] | None):
    """Pad a batch of tiles only where the model needs it; returns it and the true size."""
    h, w = x.shape[-2:]
    if fixed is not None:
        ph, pw = fixed[0] - h, fixed[1] - w
    else:
        ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        import torch.nn.functional as F

        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def _tile_loader(stack: np.ndarray, chosen: list[int], low: np.ndarray, high: np.ndarray,
                 mean_: list[float], std_: list[float]):
    """A function (plane, ys, xs, (ty, tx)) -> normalised (C, h, w) float32 tensor read
    from the caller's array (one tile at a time: no float copy of the image)."""
    import torch

    channels = len(chosen)
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    mean = np.asarray(mean_, np.float32)
    std = np.asarray(std_, np.float32)
    if mean.shape != (channels,) or std.shape != (channels,):
        if channels == 1 and mean.shape == (3,):
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        else:
            mean, std = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    scale = (1.0 / (span * std)).astype(np.float32)
    shift = (-(low / span) / std - mean / std).astype(np.float32)
    constant = high <= low
    chan_index = np.asarray(chosen)

    def load(plane: int, ys: TilePlan, xs: TilePlan, tile: tuple[int, int]) -> torch.Tensor:
        ty, tx = tile
        part = stack[plane, ys.starts[ty]:ys.ends[ty], xs.starts[tx]:xs.ends[tx]]
        part = np.asarray(part)[..., chan_index].astype(np.float32)
        part = np.clip(part, low, high, out=part)
        part *= scale
        part += shift
        if constant.any():
            part[..., constant] = (-mean / std)[constant]
        return torch.from_numpy(np.ascontiguousarray(part.transpose(2, 0, 1)))

    return load


#: The earlier name of :class:`PredictParams` (scripts written against it keep working).
InferenceParams = PredictParams
