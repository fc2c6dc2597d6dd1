"""``napari-unsupseg predict``: segment an image with a trained DeepLabV3/V3+ or U-Net model.

Example::

    napari-unsupseg predict photo.jpg --checkpoint best_deeplabv3plus_mobilenet_voc_os16.pth \
        --tile 1024 -o photo_classes.tif --confidence

writes ``photo_classes.tif`` (labels), ``photo_classes.json`` (class names, palette,
model hash, parameters) and, with ``--confidence``, ``photo_classes_confidence.tif``.
"""

from __future__ import annotations

import argparse

from ..core.predict import InferenceParams, predict
from ._common import (
    add_image_arguments,
    add_params,
    load_channels_last,
    output_path,
    params_from_args,
    run_with_bar,
    write_result,
)

HELP = "Segment an image with a trained DeepLabV3/V3+ or U-Net checkpoint (tiled prediction)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser, "predict")
    add_params(parser, InferenceParams)
    parser.add_argument("--tile", dest="tile_size", type=int, default=argparse.SUPPRESS,
                        metavar="N", help="Short for --tile-size.")


def run(args: argparse.Namespace) -> int:
    params = params_from_args(InferenceParams, args)
    image = load_channels_last(args.image, args.channel_axis)
    # Ctrl+C finishes early: the tiles done so far are written, the rest 0.
    result = run_with_bar(lambda control: predict(image, params, control=control), "predict",
                          args.quiet)
    path = output_path(args, "predict")
    write_result(result, path, args.image)
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
    return 0
