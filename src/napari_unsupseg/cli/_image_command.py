"""One image in, one label image out: the command skeleton that ``preseg``, ``backprop`` and
``predict`` share. Each engine's module holds only what is its own (extra options, how
its run starts, what it prints after the labels are written)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.base.engine import EngineRun, Result, RunControl
from ..core.base.scene import RENUMBERED, Scene, prepare_scene
from ..core.registry import engine_named, plan_run
from ._common import (
    add_image_arguments,
    add_params,
    announce,
    load_channels_last,
    output_path,
    params_from_args,
    region_from_args,
    run_with_bar,
    write_result,
)
from ._spacing import SPACING, add_spacing_arguments, has_spacing, params_with_spacing
from ._zarr import add_zarr_arguments, run_zarr, wants_zarr

#: Starts the engine's run: (scene, parameters, parsed arguments) -> (control -> run).
Start = Callable[[Scene, Any, argparse.Namespace], Callable[[RunControl], EngineRun]]


def _start_plain(engine: str) -> Start:
    entry = engine_named(engine)
    return lambda scene, params, args: lambda control: entry.run_scene(scene, params, control)


@dataclass(frozen=True)
class ImageCommand:
    """A subcommand that runs one registry engine on one image file."""

    engine: str
    help: str
    start: Start | None = None  #: default: ``engine.run_scene(scene, params, control)``
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    report: Callable[[Result, Path, argparse.Namespace], None] | None = None
    bar_label: Callable[[Any], str] | None = None  #: default: the engine's name

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_image_arguments(parser, self.engine)
        if self.extra_arguments is not None:
            self.extra_arguments(parser)
        params_type = engine_named(self.engine).params
        if has_spacing(params_type):  # volume mode: given, stated by the file, or refused
            add_params(parser, params_type, skip=SPACING)
            add_spacing_arguments(parser, params_type)
        else:
            add_params(parser, params_type)
        add_zarr_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        params_type = engine_named(self.engine).params
        params = (params_with_spacing(params_type, args) if has_spacing(params_type)
                  else params_from_args(params_type, args))
        load = functools.partial(load_channels_last, channel_axis=args.channel_axis)
        if wants_zarr(args):  # block by block, the labels written as OME-Zarr
            return run_zarr(self.engine, params, args, load)
        # Nodata and the area of interest are left out around the engine, the same for all.
        scene = prepare_scene(args.image, load, region_from_args(args))
        # Said before the run: the device and whether its memory holds the run.
        params = announce(plan_run(self.engine, scene.image.shape, scene.image.dtype, params),
                          args.force, args.quiet)
        start = (self.start or _start_plain(self.engine))(scene, params, args)
        label = self.bar_label(params) if self.bar_label else self.engine
        # Ctrl+C finishes early: the result so far is written like a finished one.
        result = run_with_bar(start, label, args.quiet)
        renumber = self.engine in RENUMBERED and getattr(args, "scribbles", None) is None
        # Label-sized extras (predict's confidence) are cleared on excluded pixels too.
        extras = {name: scene.finish(array, renumber=False)
                  if np.shape(array) == np.shape(result.labels) else array
                  for name, array in result.extras.items()}
        metadata = {**result.metadata, **scene.notes}
        if scene.georef is not None:  # what every file written from the result carries
            metadata["georeference"] = scene.georef.to_metadata()
        result = replace(result, labels=scene.finish(result.labels, renumber),
                         metadata=metadata, extras=extras)
        path = output_path(args, self.engine)
        write_result(result, path, args.image, scene.georef)
        if "objects" in result.extras:  # written like the labels: a TIFF and its sidecar
            objects = replace(result, labels=result.extras["objects"], extras={},
                              metadata={**result.metadata, "content": "objects (0 = background, "
                                        "1..N = objects)"})
            write_result(objects, path.with_name(f"{path.stem}_objects.tif"), args.image,
                         scene.georef)
        if self.report is not None:
            self.report(result, path, args)
        return 0
