"""``napari-unsupseg train``: train a U-Net or DeepLab on painted label images.

Example::

    napari-unsupseg train cells.tif --labels cells_painted.tif -o cells_model.pt
    napari-unsupseg predict other_cells.tif --checkpoint cells_model.pt -o other_labels.tif

Label images: 0 = unlabelled (ignored), k > 0 = class k; predictions hold the same
values. Each image may be a plane or a stack of planes (then its labels are a stack
of the same shape). Nothing is written when the input is refused. Trained on GeoTIFFs,
the model records their pixel size: prediction resamples other resolutions to it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.base.engine import run_to_end
from ..core.base.io import read_image
from ..core.registry import plan_run
from ..core.train import TrainParams, check_model_path, save_model, train
from ._common import add_params, announce, load_channels_last, params_from_args

HELP = "Train a U-Net or DeepLab on painted labels (0 = unlabelled, k = class k)."
EXPORTS = ("pt2", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="Images to train on: TIFF, PNG or JPEG (planes or stacks).")
    parser.add_argument("--labels", nargs="+", type=Path, required=True, metavar="LABELS",
                        help="One label image per image, same height and width (and planes): "
                        "0 = unlabelled, k > 0 = class k.")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="MODEL",
                        help="Model file to write (.pt); default: IMAGE_model.pt next to the "
                        "first image.")
    parser.add_argument("--channel-axis", default="auto",
                        help="Axis of the images that holds channels: an integer, 'none' (grey "
                        "planes or stacks), or 'auto' (the last axis of RGB(A) files, else none).")
    parser.add_argument("--export", nargs="+", choices=EXPORTS, default=(),
                        help="Also write the model as a torch.export program (MODEL.pt2) and/or "
                        "ONNX (MODEL.onnx).")
    parser.add_argument("--quiet", action="store_true",
                        help="No progress bar, and no line on the device and memory.")
    parser.add_argument("--force", action="store_true",
                        help="Train even when the estimated peak memory is over the memory "
                        "available.")
    add_params(parser, TrainParams)


def run(args: argparse.Namespace) -> int:
    params = params_from_args(TrainParams, args)
    first = args.images[0]
    output = check_model_path(args.output or first.with_name(f"{first.stem}_model.pt"))
    if not output.suffix:
        output = output.with_suffix(".pt")
    images = [load_channels_last(path, args.channel_axis) for path in args.images]
    labels = [np.asarray(read_image(path).data) for path in args.labels]
    # Training's estimate grows with the images' pixels only (the crops are fixed): all
    # images count as one plane of their total pixels.
    pixels = sum(math.prod(image.shape[:-1]) for image in images)
    shape = (pixels, 1, images[0].shape[-1])
    params = announce(plan_run("train", shape, images[0].dtype, params), args.force, args.quiet)
    result = _run(train(images, labels, params), args.quiet)
    _record_resolution(result.model.config, args.images)
    meta = result.metadata
    saved = save_model(output, result.model, {**meta, "images": [str(p) for p in args.images],
                                              "labels": [str(p) for p in args.labels]})
    names = result.model.config.class_names
    classes = ", ".join(f"{v}={names[v]}" for v in meta["class_values"])
    score = meta.get("best_val_iou")
    score = "" if score is None else f", validation IoU {score:.3f}"
    print(f"wrote {saved} ({meta['architecture']}; classes {classes}; best epoch "
          f"{meta['best_epoch']} of {meta['epochs_run']}{score}; ended by {meta['stop_reason']})")
    for kind in args.export:
        from ..core.models.export import export_onnx, export_program

        if kind == "pt2":
            path = export_program(result.model, saved.with_suffix(".pt2"))
        else:
            path = export_onnx(result.model, saved.with_suffix(".onnx"))
        print(f"wrote {path}")
    print(f"apply it: napari-unsupseg predict IMAGE --checkpoint {saved} -o IMAGE_labels.tif")
    return 0


def _record_resolution(config: Any, paths: list[Path]) -> None:
    """The pixel size of the GeoTIFFs trained on, kept in the model so that prediction
    resamples images of another resolution to it; not kept (with a note) when the
    images do not share one."""
    from ..core.base.geo import carried_georef
    from ..core.predict.resolution import georef_pixel_size, model_grid

    georefs = [carried_georef(path) for path in paths]
    sizes = [georef_pixel_size(g) for g in georefs if g is not None]
    if not sizes:
        return
    first = sizes[0]
    same = len(sizes) == len(paths) and all(
        s.unit == first.unit and model_grid((1000, 1000), s, first) is None for s in sizes)
    if not same:
        print("note: the training images do not share one pixel size (or some have no "
              "georeference); the model does not record a resolution")
        return
    config.resolution, config.resolution_unit = [first.x, first.y], first.unit
    print(f"the model records its training resolution: {first.describe()}")


def _run(run, quiet: bool):
    """Drive training with a tqdm bar: step, training loss, validation loss and IoU."""
    from tqdm import tqdm

    with tqdm(desc="train", disable=quiet, unit="step", leave=True) as bar:
        shown: dict[str, str] = {}

        def show(event) -> None:
            bar.total = event.total
            bar.n = event.step
            judged = event.metrics.get("val_loss", event.metrics.get("epoch_loss"))
            if judged is not None:
                shown["val"] = f"{judged:.3f}"
                if "val_iou" in event.metrics:
                    shown["IoU"] = f"{event.metrics['val_iou']:.3f}"
            elif event.loss is not None:
                shown["loss"] = f"{event.loss:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.refresh()

        return run_to_end(run, show)
