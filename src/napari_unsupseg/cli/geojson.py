"""``napari-unsupseg geojson`` (or ``vectorize``): a label image as polygons for GIS software.

Example::

    napari-unsupseg geojson tile_backprop.tif -o tile_regions.gpkg --image tile.tif \
        --min-area 500

One polygon per connected region of each label, written as GeoJSON, GeoPackage or
Shapefile by the output's suffix, in the map coordinates and CRS of a label GeoTIFF
(pixel coordinates for a plain TIFF). Attributes: ``label``, ``class`` (when the JSON
sidecar names the classes), ``area`` (map units squared), ``engine`` and ``model`` (from
the sidecar) and, with ``--image``, each band's mean, std, min and max over the polygon.
The raster is read strip by strip, so large scenes keep memory bounded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.base.errors import InputError
from ..core.base.geo import class_names
from ..core.base.vectors import VectorOptions, provenance_fields, write_vectors
from ._common import add_region_arguments, region_from_args

HELP = ("Write a label image as polygons: GeoJSON, GeoPackage or Shapefile (map coordinates "
        "for a GeoTIFF), with areas, classes and band statistics.")
ALIASES = ("vectorize",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", type=Path, help="Label TIFF or GeoTIFF.")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="Polygon file: .geojson, .gpkg or .shp; default: LABELS.geojson "
                        "next to the labels.")
    parser.add_argument("--simplify", type=float, default=None, metavar="TOLERANCE",
                        help="Simplify the outlines by this distance in map units (0: keep "
                        "every pixel step); default: one pixel.")
    parser.add_argument("--min-area", type=float, default=0.0, metavar="AREA",
                        help="Leave out polygons smaller than this, in map units squared.")
    parser.add_argument("--image", type=Path, default=None,
                        help="The image the labels were made from: each band's mean, std, "
                        "min and max per polygon (its nodata left out).")
    add_region_arguments(parser, polygons=True)


def run(args: argparse.Namespace) -> int:
    if not args.labels.exists():
        raise InputError(f"The file {args.labels} does not exist.")
    if args.image is not None and not args.image.exists():
        raise InputError(f"The image {args.image} does not exist.")
    if args.simplify is not None and args.simplify < 0 or args.min_area < 0:
        raise InputError("--simplify and --min-area must not be negative.")
    sidecar = args.labels.with_suffix(".json")
    metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    output = args.output or args.labels.with_suffix(".geojson")
    options = VectorOptions(simplify=args.simplify, min_area=args.min_area,
                            classes=class_names(metadata), provenance=provenance_fields(metadata))
    count = write_vectors(args.labels, output, image_path=args.image,
                          region=region_from_args(args), options=options)
    print(f"wrote {output} ({count} polygons)")
    return 0
