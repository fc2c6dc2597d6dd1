"""``napari-unsupseg demo``: the main job on an embedded sample, headless, results to files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core import samples
from ..core.backprop import BackpropParams, segment
from ..core.base.images import as_channels_last, mean_colour, to_display_rgb
from ..core.base.io import overlay, write_labels, write_picture
from ._common import add_params, params_from_args, run_with_bar

HELP = "Segment an embedded sample image and write labels, an overlay and a mean-colour picture."

CHANNEL_AXIS = {"coffee": -1, "mosaic": -1, "cells": 0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sample",
        choices=samples.SAMPLE_NAMES,
        default="coffee",
        help="Which embedded sample to segment.",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("unsupseg-demo"),
        help="Folder for the results.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_params(parser, BackpropParams)


def run(args: argparse.Namespace) -> int:
    params = params_from_args(BackpropParams, args)
    image = as_channels_last(samples.load(args.sample), CHANNEL_AXIS[args.sample])
    result = run_with_bar(
        lambda control: segment(image, params, control=control),
        f"backprop on '{args.sample}'",
        args.quiet,
    )
    out = args.output_dir
    labels_path = out / f"{args.sample}_labels.tif"
    write_labels(labels_path, result.labels, {**result.metadata, "source": f"sample:{args.sample}"})
    picture = to_display_rgb(image)
    overlay_path = write_picture(
        out / f"{args.sample}_overlay.png", overlay(picture, result.labels)
    )
    means_path = write_picture(
        out / f"{args.sample}_mean_colour.png", mean_colour(picture, result.labels)
    )
    meta = result.metadata
    seconds = meta.get("timings", {}).get("total", float("nan"))
    print(
        f"segmented the '{args.sample}' sample into {int(result.labels.max())} labels in "
        f"{seconds:.1f} s ({meta.get('stop_reason', 'done')} after "
        f"{sum(meta.get('iterations', [])) or '?'} iterations); wrote:"
    )
    for path in (labels_path, labels_path.with_suffix(".json"), overlay_path, means_path):
        print(f"  {path}")
    return 0
