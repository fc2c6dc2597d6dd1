"""``napari-unsupseg predict``: segment an image with a trained DeepLabV3/V3+ or U-Net model.

Example::

    napari-unsupseg predict photo.jpg --checkpoint best_deeplabv3plus_mobilenet_voc_os16.pth \
        --tile 1024 -o photo_classes.tif --confidence

writes ``photo_classes.tif`` (labels), ``photo_classes.json`` (class names, palette,
model hash, parameters) and, with ``--confidence``, ``photo_classes_confidence.tif``.
A model that states its training resolution is applied at it: a GeoTIFF (or an image
whose pixel size ``--resolution`` states) with another pixel size is resampled to the
model's, and the labels come back on the image's grid (``--no-resample`` to keep it).
``--bands 4,3,2`` feeds bands 4, 3 and 2 (numbered from 1) to the model's channels.
A model that separates objects also gives ``photo_classes_objects.tif`` (0 = background,
1..N = objects) and its sidecar ``photo_classes_objects.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.base.engine import Result
from ._image_command import ImageCommand

HELP = "Segment an image with a trained DeepLabV3/V3+ or U-Net checkpoint (tiled prediction)."


def _tile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", dest="tile_size", type=int, default=argparse.SUPPRESS,
                        metavar="N", help="Short for --tile-size.")


def _report(result: Result, path: Path, args: argparse.Namespace) -> None:
    """The resampling, the classes seen, and the confidence image when it was asked for
    (the objects, when the model separates them, are written by the command itself)."""
    note = result.metadata.get("resolution") or {}
    if note.get("resampled"):
        rows, cols = note["model_grid"]
        print(f"resampled to the model's {_size(note['model'])} ({rows} x {cols} px) and the "
              f"labels back to the image's {_size(note['image'])}")
    names = result.metadata.get("classes", {})
    found = sorted({int(v) for v in set(result.labels.ravel()[:: max(1, result.labels.size
                                                                     // 4_000_000)])})
    shown = ", ".join(f"{v}={names.get(str(v), '?')}" for v in found[:12])
    print(f"classes seen (sampled): {shown}")
    if "confidence" in result.extras:
        import tifffile

        conf_path = path.with_name(f"{path.stem}_confidence.tif")
        tifffile.imwrite(conf_path, result.extras["confidence"], compression="zlib",
                         photometric="minisblack")
        print(f"wrote {conf_path} (probability of the chosen class, float16)")


def _size(size: dict[str, Any]) -> str:
    return f"{size['x']:g} {size['unit'] or 'map units'}/px"


COMMAND = ImageCommand("predict", HELP, extra_arguments=_tile_option, report=_report)
add_arguments, run = COMMAND.add_arguments, COMMAND.run
