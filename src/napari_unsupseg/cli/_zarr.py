"""OME-Zarr in the image commands: an OME-Zarr store as input, and ``.zarr`` outputs
written as OME-Zarr labels, block by block (:mod:`..core.predict.blocks`).

An OME-Zarr input is never read whole: the engine runs on blocks of level 0 and each
block's labels go straight into ``labels/<name>`` of the input's store (no output
given) or into a new store (``-o out.ome.zarr``). A TIFF, PNG or JPEG input with a
``.zarr`` output is read as usual and written the same way. Superpixels and objects are
stitched across block borders. Volume mode (``--stack-mode volume``, ``--objects-mode
volume``) on a store with a z axis runs in overlapping 3-D blocks, with the voxel
spacing of the store's scale unless ``--spacing-z/y/x`` are given. A model that
separates objects also writes them: ``labels/NAME_objects`` (or ``OUT_objects.ome.zarr``).
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
                       "at most the tile size less twice the overlap; volume mode: at most "
                       "256, and as long along z in physical units).")
    group.add_argument("--margin", type=int, default=None, metavar="N",
                       help="Pixels read around each block (preseg; predict uses the tile "
                       "overlap); superpixels are stitched across borders in it. Default: "
                       "six superpixels wide (3-D blocks: 32 to 64).")


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
    if omezarr.is_omezarr_path(args.image):
        image = omezarr.open_omezarr(args.image)
    else:
        image = omezarr.image_from_array(load(args.image), args.image)
    params = _volume_params(engine, params, image)
    store = _output_store(args, image.path)
    model = None
    if engine == "predict":
        from ..core.predict.engine import load_model

        model = load_model(params)
    core, margin = blocks.block_geometry(engine, params, args.block, args.margin,
                                         image.plane_size)
    name = args.labels_name or engine
    target = omezarr.create_labels(image, name, blocks.labels_dtype(engine, model),
                                   store=store, overwrite=args.overwrite, chunk=core)
    objects = None
    if engine == "predict" and params.objects and model.config.object_class:
        objects = omezarr.create_labels(
            image, f"{name}_objects", "uint32", overwrite=args.overwrite, chunk=core,
            store=None if store is None else _objects_store(store))
    volume = blocks.volume_mode(engine, params, image, model, objects)
    if not args.quiet:
        kind = "3-D blocks" if volume else f"{core} px blocks, {margin} px margin"
        print(f"napari-unsupseg: {engine} block by block ({kind}) over "
              f"{image.label_shape}", file=sys.stderr)
    result = run_with_bar(lambda control: blocks.run_blocks(
        image, engine, params, target, model=model, block=args.block, margin=args.margin,
        control=control, objects_target=objects), engine, args.quiet, unit="block")
    for written, what in ((target, name), (objects, f"{name}_objects")):
        if written is None:
            continue
        written.finish(properties=_class_properties(result.metadata) if written is target
                       else None, provenance={**result.metadata, "source": str(args.image)})
        where = written.path if written.parent is None else written.path / "labels" / what
        print(f"wrote {where} (OME-Zarr labels, {written.levels[0].dtype}, shape "
              f"{tuple(written.levels[0].shape)}, {len(written.levels)} level(s))")
    return 0


def _volume_params(engine: str, params: Any, image: Any) -> Any:
    """Volume mode: refused in one sentence without a z axis or with a plane-only method."""
    mode = getattr(params, "stack_mode" if engine == "preseg" else "objects_mode", None)
    if mode != "volume":
        return params
    if engine == "preseg":
        from ..core.preseg import check_volume_mode

        check_volume_mode(params)
    if "z" not in image.axes:
        raise InputError(f"Volume mode needs a z axis; {image.path.name} has axes "
                         f"{', '.join(image.axes)}: leave --stack-mode / --objects-mode out.")
    return params  # its spacing: given, else the store's scale (``_spacing``)


def _objects_store(store: Path) -> Path:
    """Where a new store's objects go: ``cells.ome.zarr`` -> ``cells_objects.ome.zarr``."""
    name = store.name
    suffix = ".ome.zarr" if name.lower().endswith(".ome.zarr") else ".zarr"
    return store.with_name(f"{name[:-len(suffix)]}_objects{suffix}")


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
    if args.margin is not None and args.margin < 0:
        raise InputError(f"--margin cannot be negative; got {args.margin}.")


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

