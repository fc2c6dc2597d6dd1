"""``napari-unsupseg preseg``: superpixels (felzenszwalb, slic, quickshift, watershed, k-means)."""

from __future__ import annotations

import argparse

from ..core.preseg import PresegParams, run_preseg
from ._common import (
    add_image_arguments,
    add_params,
    load_channels_last,
    output_path,
    params_from_args,
    run_with_bar,
    write_result,
)

HELP = "Split an image into superpixels."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser, "preseg")
    add_params(parser, PresegParams)


def run(args: argparse.Namespace) -> int:
    params = params_from_args(PresegParams, args)
    image = load_channels_last(args.image, args.channel_axis)
    result = run_with_bar(run_preseg(image, params), f"preseg {params.method}", args.quiet)
    write_result(result, output_path(args, "preseg"), args.image)
    return 0
