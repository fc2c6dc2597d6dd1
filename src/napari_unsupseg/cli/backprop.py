"""``napari-unsupseg backprop``: unsupervised segmentation by backpropagation."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.backprop import BackpropParams, segment
from ..core.base.errors import InputError
from ..core.base.io import read_image
from ._common import (
    add_image_arguments,
    add_params,
    load_channels_last,
    output_path,
    params_from_args,
    run_with_bar,
    write_result,
)

HELP = "Segment an image without training data (Kanezaki's backprop segmenter)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser, "backprop")
    parser.add_argument(
        "--scribbles",
        type=Path,
        default=None,
        help="Label image of the same height and width: 0 = unlabelled, k > 0 = class k.",
    )
    add_params(parser, BackpropParams)


def read_scribbles(path: Path) -> np.ndarray:
    data = read_image(path).data
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        # An RGB(A) drawing: any painted colour is one class per distinct colour.
        colours, index = np.unique(data.reshape(-1, data.shape[-1]), axis=0, return_inverse=True)
        black = np.flatnonzero((colours == 0).all(axis=1))
        index = index.reshape(data.shape[:2]) + 1
        if black.size:
            index[index == black[0] + 1] = 0
        data = index
    if not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"The scribbles in {path.name} must be an integer label image.")
    return data


def run(args: argparse.Namespace) -> int:
    params = params_from_args(BackpropParams, args)
    image = load_channels_last(args.image, args.channel_axis)
    scribbles = read_scribbles(args.scribbles) if args.scribbles else None
    result = run_with_bar(
        lambda control: segment(image, params, scribbles=scribbles, control=control),
        "backprop",
        args.quiet,
    )
    write_result(result, output_path(args, "backprop"), args.image)
    return 0
