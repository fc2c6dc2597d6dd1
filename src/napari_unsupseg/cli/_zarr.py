"""OME-Zarr in the image commands: an OME-Zarr store as input, and ``.zarr`` outputs
written as OME-Zarr labels, block by block (:mod:`..core.predict.blocks`).

An OME-Zarr input is never read whole: the engine runs on blocks of level 0 and each
block's labels go straight into ``labels/<name>`` of the input's store (no output
given) or into a new store (``-o out.ome.zarr``). A TIFF, PNG or JPEG input with a
``.zarr`` output is read as usual and written the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.base.errors import InputError

LOCAL_ENGINES = ("preseg", "predict")


def add_zarr_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OME-Zarr (an OME-Zarr input, or an output ending "
                                      "in .zarr)")
    group.add_argument("--labels-name", default=None, metavar="NAME",
                       help="Name of the labels in the store (labels/NAME); default: the "
                       "command's name.")
    group.add_argument("--overwrite", action="store_true",
                       help="Replace labels of that name (or an output store) already there.")
    group.add_argument("--block", type=int, default=1024, metavar="N",
                       help="Side of the blocks written one at a time, in pixels (predict: "
                       "at most the tile size less twice the overlap).")


def wants_zarr(args: argparse.Namespace) -> bool:
    """Whether the run reads or writes OME-Zarr."""
    from ..core.base.omezarr import is_omezarr_path

    output = getattr(args, "output", None)
    return is_omezarr_path(args.image) or (output is not None
                                           and Path(output).suffix.lower() == ".zarr")


def run_zarr(engine: str, params: Any, args: argparse.Namespace,
             load: Any) -> int:
    """Run ``engine`` block by block from/to OME-Zarr; ``load(path)`` reads a non-Zarr
    input channels last. Returns the exit code."""
    from ..core.base import omezarr
    from ..core.predict import blocks
    from ._common import run_with_bar

    _refuse_unsupported(engine, args)
    if "volume" in (getattr(params, "stack_mode", None), getattr(params, "objects_mode", None)):
        raise InputError("OME-Zarr runs go plane by plane, block by block; volume mode needs "
                         "the whole stack: leave --stack-mode / --objects-mode out.")
    if omezarr.is_omezarr_path(args.image):
        image = omezarr.open_omezarr(args.image)
    else:
        image = omezarr.image_from_array(load(args.image), args.image)
    store = _output_store(args, image.path)
    model = None
    if engine == "predict":
        from ..core.predict.engine import load_model

        model = load_model(params)
    core, margin = blocks.block_geometry(engine, params, args.block)
    name = args.labels_name or engine
    target = omezarr.create_labels(image, name, blocks.labels_dtype(engine, model),
                                   store=store, overwrite=args.overwrite, chunk=core)
    if not args.quiet:
        print(f"napari-unsupseg: {engine} block by block ({core} px blocks, {margin} px "
              f"margin) over {image.label_shape}", file=sys.stderr)
    result = run_with_bar(lambda control: blocks.run_blocks(
        image, engine, params, target, model=model, block=args.block, margin=margin,
        control=control), engine, args.quiet, unit="block")
    target.finish(properties=_class_properties(result.metadata),
                  provenance={**result.metadata, "source": str(args.image)})
    where = target.path if target.parent is None else target.path / "labels" / name
    print(f"wrote {where} (OME-Zarr labels, {target.levels[0].dtype}, shape "
          f"{tuple(target.levels[0].shape)}, {len(target.levels)} level(s))")
    return 0


def _refuse_unsupported(engine: str, args: argparse.Namespace) -> None:
    if engine not in LOCAL_ENGINES:
        raise InputError(f"OME-Zarr is read and written block by block by "
                         f"{' and '.join(LOCAL_ENGINES)}; {engine} needs a TIFF, PNG or "
                         "JPEG image.")
    if args.nodata is not None or args.aoi is not None:
        raise InputError("--nodata and --aoi do not apply to OME-Zarr runs yet; leave "
                         "them out.")
    if args.block < 16:
        raise InputError(f"--block must be at least 16 pixels; got {args.block}.")


def _output_store(args: argparse.Namespace, source: Path) -> Path | None:
    """Where the labels go: None for ``labels/`` of the input store, else a new store."""
    if args.output is None:
        from ..core.base.omezarr import is_omezarr_path

        if is_omezarr_path(source):
            return None
        raise InputError("Give an output ending in .zarr for the OME-Zarr labels.")
    output = Path(args.output)
    if output.suffix.lower() != ".zarr":
        raise InputError(f"An OME-Zarr input gives OME-Zarr labels: name an output ending "
                         f"in .zarr (or none, for labels inside the input); got {output}.")
    return output


def _class_properties(metadata: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Each class's name as an OME-Zarr label property (prediction)."""
    classes = metadata.get("classes")
    if not classes:
        return None
    return [{"label-value": int(value), "class": name} for value, name in classes.items()]

