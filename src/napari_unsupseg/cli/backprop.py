"""``napari-unsupseg backprop``: unsupervised segmentation by backpropagation."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.backprop import BackpropParams, segment
from ..core.base.engine import EngineRun, RunControl
from ..core.base.errors import InputError
from ..core.base.io import read_image
from ..core.base.scene import Scene
from ._image_command import ImageCommand

HELP = "Segment an image without training data (Kanezaki's backprop segmenter)."


def _scribbles_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scribbles",
        type=Path,
        default=None,
        help="Label image of the same height and width: 0 = unlabelled, k > 0 = class k.",
    )


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


def _start(scene: Scene, params: BackpropParams, args: argparse.Namespace
           ) -> Callable[[RunControl], EngineRun]:
    scribbles = None
    if args.scribbles:
        # Cut to the area of interest like the image; no scribble counts on nodata.
        scribbles = scene.finish(scene.crop(read_scribbles(args.scribbles)), renumber=False)
    return lambda control: segment(scene.image, params, scribbles=scribbles, control=control,
                                   excluded=scene.excluded)


COMMAND = ImageCommand("backprop", HELP, start=_start, extra_arguments=_scribbles_option)
add_arguments, run = COMMAND.add_arguments, COMMAND.run
