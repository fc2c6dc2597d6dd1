"""The voxel spacing options of the image commands: given, stated by the file, or asked
for.

A volume segmented with the wrong spacing is silently wrong (a confocal stack's planes
are often three to five pixel widths apart), so volume mode never assumes cubic voxels:
the spacing comes from ``--spacing-z/-y/-x``, else from the file (OME-TIFF, ImageJ TIFF,
OME-Zarr scale), else the run is refused in one sentence that says how to give it.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from ..core.base import params as params_mod
from ..core.base.errors import InputError
from ..core.base.io import stated_spacing
from ._common import option_name, params_from_args

P = TypeVar("P")

SPACING = ("spacing_z", "spacing_y", "spacing_x")


def has_spacing(params_type: type) -> bool:
    return {f.name for f in dataclasses.fields(params_type)} >= set(SPACING)


def add_spacing_arguments(parser: argparse.ArgumentParser, params_type: type) -> None:
    """The three spacing options, with no default of their own (see the module)."""
    group = parser.add_argument_group("voxel spacing (volume mode)")
    helps = {spec.name: spec.help for spec in params_mod.specs(params_type)}
    for name in SPACING:
        group.add_argument(
            option_name(name), dest=name, type=float, default=None, metavar="SIZE",
            help=f"{helps[name]} Default: the voxel size the file states (OME-TIFF, ImageJ "
            "TIFF, OME-Zarr); volume mode refuses a file that states none.")


def params_with_spacing(params_type: type[P], args: argparse.Namespace) -> P:
    """The engine's parameters from ``args``, the spacing filled as the module says."""
    params = params_from_args(params_type, args)
    values: dict[str, Any] = {k: v for k, v in vars(args).items()
                              if not (k in SPACING and v is None)}
    given = {name: values[name] for name in SPACING if name in values}
    if given:
        return params
    stated = stated_spacing(args.image)
    if stated is not None:
        stated_values = dict(zip(SPACING, stated, strict=True))
        return params_mod.from_mapping(params_type, {**values, **stated_values})
    if "volume" in (getattr(params, "stack_mode", None), getattr(params, "objects_mode", None)):
        raise InputError(
            f"{args.image.name} does not state its voxel size, which a volume needs: give "
            "--spacing-z (the distance between planes in pixel widths, 1 for cubic voxels).")
    return params
