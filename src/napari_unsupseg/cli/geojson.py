"""``napari-unsupseg geojson``: a label image as GeoJSON polygons (for GIS software).

Example::

    napari-unsupseg geojson tile_backprop.tif -o tile_regions.geojson

One polygon per connected region of each label, with its ``label`` (and ``class``
when the JSON sidecar names the classes), in the map coordinates and CRS of a label
GeoTIFF (pixel coordinates for a plain TIFF).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..core.base.errors import InputError
from ..core.base.geo import class_names, read_georef, write_geojson
from ..core.base.io import read_image

HELP = "Write a label image as GeoJSON polygons (map coordinates for a GeoTIFF)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", type=Path, help="Label TIFF or GeoTIFF.")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="GeoJSON file; default: LABELS.geojson next to the labels.")


def run(args: argparse.Namespace) -> int:
    labels = read_image(args.labels).data
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{args.labels.name} is not a 2-D integer label image.")
    sidecar = args.labels.with_suffix(".json")
    metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    output = args.output or args.labels.with_suffix(".geojson")
    write_geojson(output, labels, read_georef(args.labels), class_names(metadata))
    print(f"wrote {output}")
    return 0
