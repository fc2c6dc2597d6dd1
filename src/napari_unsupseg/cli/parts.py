"""``napari-unsupseg parts``: find parts shared by a collection of images (SCOPS)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ..core.base.errors import InputError
from ..core.base.io import read_image, write_labels
from ..core.parts import PartsParams, discover_parts
from ._common import add_params, load_channels_last, params_from_args, run_with_bar

HELP = ("Find K parts shared by a collection of images of one object class, without "
        "annotation (SCOPS part discovery).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", type=Path, nargs="*",
        help="Image files of the same height and width (TIFF, PNG, JPEG), or one stacked "
        "TIFF whose first axis indexes the images.",
    )
    parser.add_argument("-o", "--output-dir", type=Path, required=True,
                        help="Folder for parts.tif (labels, one plane per image), parts.json "
                        "(metadata) and centres.csv (part centres).")
    parser.add_argument(
        "--channel-axis", default="auto",
        help="Axis of each input that holds channels: an integer, 'none' (grey images), or "
        "'auto' (the last axis of an RGB(A) file, else none). For a stacked TIFF count the "
        "image axis too.",
    )
    parser.add_argument("--saliency", type=Path, default=None,
                        help="A mask or label stack TIFF (N, Y, X) matching the images: "
                        "non-zero = object (overrides --saliency-threshold).")
    parser.add_argument("--synthetic", type=int, default=None, metavar="N",
                        help="Instead of files, use N images of the built-in synthetic "
                        "collection (objects with known parts); writes truth.tif too.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_params(parser, PartsParams)
    parser.add_argument("--parts", dest="n_parts", type=int, default=argparse.SUPPRESS,
                        metavar="K", help="Same as --n-parts.")


def load_stack(paths: list[Path], channel_axis: str) -> tuple[np.ndarray, list[str]]:
    """``(N, Y, X, C)`` from one stacked file or several single-image files, and names."""
    if not paths:
        raise InputError("Give image files (or --synthetic N).")
    if len(paths) == 1:
        stack = load_channels_last(paths[0], channel_axis)
        if stack.ndim != 4:
            raise InputError(
                f"{paths[0].name} holds one image (shape {stack.shape}); part discovery needs "
                "a collection: give several files, or a stacked TIFF (check --channel-axis)."
            )
        return stack, [f"{paths[0].name}[{i}]" for i in range(stack.shape[0])]
    planes = []
    for path in paths:
        plane = load_channels_last(path, channel_axis)
        if plane.ndim != 3:
            raise InputError(f"{path.name} is a stack (shape {plane.shape}); give single images "
                             "or one stacked file.")
        if planes and (plane.shape != planes[0].shape):
            raise InputError(
                f"{path.name} has shape {plane.shape} but {paths[0].name} has "
                f"{planes[0].shape}: images must share height, width and channels; resize "
                "or crop them first."
            )
        planes.append(plane)
    return np.stack(planes), [p.name for p in paths]


def write_centres(path: Path, centres: np.ndarray, names: list[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "file", "part", "row", "column"])
        for i, per_image in enumerate(centres):
            for k, (row, col) in enumerate(per_image, start=1):
                if np.isfinite(row):
                    writer.writerow([i, names[i], k, f"{row:.2f}", f"{col:.2f}"])
                else:
                    writer.writerow([i, names[i], k, "", ""])


def run(args: argparse.Namespace) -> int:
    params = params_from_args(PartsParams, args)
    truth = None
    if args.synthetic is not None:
        from ..core.samples.parts import part_collection

        if args.synthetic < 1:
            raise InputError("--synthetic needs a positive number of images.")
        stack, truth = part_collection(args.synthetic, 128, params.n_parts, seed=params.seed)
        names = [f"synthetic[{i}]" for i in range(len(stack))]
    else:
        stack, names = load_stack(list(args.images), args.channel_axis)
    saliency = None
    if args.saliency is not None:
        saliency = read_image(args.saliency).data
        if saliency.shape != stack.shape[:3]:
            raise InputError(f"The saliency stack {args.saliency.name} has shape {saliency.shape}; "
                             f"the images are {stack.shape[:3]} (N, Y, X).")
    result = run_with_bar(
        lambda control: discover_parts(stack, params, saliency=saliency, control=control),
        "parts", args.quiet)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels_path = out / "parts.tif"
    metadata = {**result.metadata, "sources": names}
    sidecar = write_labels(labels_path, result.labels, metadata)
    write_centres(out / "centres.csv", result.extras["centres"], names)
    if truth is not None:
        import tifffile

        tifffile.imwrite(out / "truth.tif", truth.astype(np.uint8), compression="zlib",
                         photometric="minisblack")
        from ..core.parts.saliency import foreground_iou
        from ..core.samples.parts import part_scores

        scores = part_scores(result.labels, truth)
        scores["foreground IoU"] = foreground_iou(result.labels, truth)
        summary = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        print(f"agreement with the true parts: {summary}")
    if result.metadata.get("stopped_early"):
        print(f"stopped early after {result.metadata.get('steps')} of {params.iterations} "
              "training steps; the parts so far are written")
    present = int((result.extras["centres"][..., 0] == result.extras["centres"][..., 0]).sum())
    print(f"wrote {labels_path} ({result.labels.shape[0]} images, {params.n_parts} parts, "
          f"{present} part centres found), {sidecar.name} and centres.csv in {out}")
    return 0
