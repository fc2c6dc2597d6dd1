"""``napari-unsupseg measure``: the object table of a label image, as CSV.

Example::

    napari-unsupseg measure nuclei_labels.tif --image cells.tif --channel-axis 0 -o nuclei.csv

writes one row per label: ``label``, ``area`` (``volume`` for 3-D), ``centroid-*``,
``bbox-*`` and, with an image, ``mean_intensity-<channel>`` for each channel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.base.errors import InputError
from ..core.base.io import read_image
from ..core.review import measure, write_csv
from ..core.review.table import check_labels
from ._common import load_channels_last

HELP = "Measure every object of a label image (area, centroid, box, mean intensities) to CSV."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", type=Path, help="Label image: TIFF or PNG of integer labels.")
    parser.add_argument("--image", type=Path, default=None,
                        help="Intensity image of the same size, for mean intensities.")
    parser.add_argument(
        "--channel-axis", default="auto",
        help="Axis of --image that holds channels: an integer, 'none', or 'auto' (the last "
        "axis of an RGB(A) picture, else none).",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="CSV file to write; default: LABELS_table.csv next to the labels.")


def read_labels(path: Path) -> np.ndarray:
    """A label image from a file, refusing colour pictures and non-integer pixels."""
    loaded = read_image(path)
    if loaded.rgb:
        raise InputError(f"{path.name} is a colour picture, not a label image.")
    return check_labels(loaded.data, f"The label image {path.name}")


def channel_images(path: Path, channel_axis: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The image's channels by name (``0``, ``1`` ...), each of the labels' ``shape``."""
    image = load_channels_last(path, channel_axis)
    if image.shape[:-1] != shape:
        raise InputError(
            f"The image {path.name} has {image.shape[-1]} channel(s) of shape "
            f"{image.shape[:-1]} but the labels have shape {shape}; check --channel-axis."
        )
    return {str(c): image[..., c] for c in range(image.shape[-1])}


def run(args: argparse.Namespace) -> int:
    labels = read_labels(args.labels)
    images = channel_images(args.image, args.channel_axis, labels.shape) if args.image else None
    table = measure(labels, images)
    output = args.output or args.labels.with_name(f"{args.labels.stem}_table.csv")
    write_csv(table, output)
    print(f"wrote {output} ({table['label'].size} objects, {len(table)} columns)")
    return 0
