"""``napari-unsupseg predict``: segment an image with a trained DeepLabV3/V3+ or U-Net model.

Example::

    napari-unsupseg predict photo.jpg --checkpoint best_deeplabv3plus_mobilenet_voc_os16.pth \
        --tile 1024 -o photo_classes.tif --confidence

writes ``photo_classes.tif`` (labels), ``photo_classes.json`` (class names, palette,
model hash, parameters) and, with ``--confidence``, ``photo_classes_confidence.tif``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.base.engine import Result
from ._image_command import ImageCommand

HELP = "Segment an image with a trained DeepLabV3/V3+ or U-Net checkpoint (tiled prediction)."


def _tile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", dest="tile_size", type=int, default=argparse.SUPPRESS,
                        metavar="N", help="Short for --tile-size.")


def _report(result: Result, path: Path, args: argparse.Namespace) -> None:
    """The classes seen, and the confidence image when it was asked for."""
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


COMMAND = ImageCommand("predict", HELP, extra_arguments=_tile_option, report=_report)
add_arguments, run = COMMAND.add_arguments, COMMAND.run
