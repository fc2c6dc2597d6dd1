"""What every subcommand shares: options built from an engine's dataclass, image
loading with an explicit channel axis, a tqdm progress driver, and result files."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..core.base import params as params_mod
from ..core.base.engine import Progress, Result, RunControl, drive
from ..core.base.errors import InputError
from ..core.base.geo import Georef
from ..core.base.images import as_channels_last
from ..core.base.io import read_image, write_labels
from ..core.base.scene import Region, parse_nodata
from ..core.registry import Planned

P = TypeVar("P")
R = TypeVar("R")


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_params(
    parser: argparse.ArgumentParser, params_type: type, skip: tuple[str, ...] = ()
) -> None:
    """One option per field of ``params_type``, with its help, default, choices and bounds."""
    group = parser.add_argument_group(f"{params_type.__name__} parameters")
    for spec in params_mod.specs(params_type):
        if spec.name in skip:
            continue
        help_text = spec.help.replace("%", "%%")  # argparse formats help with %
        bounds = [
            f">= {spec.min}" if spec.min is not None else "",
            f"<= {spec.max}" if spec.max is not None else "",
        ]
        if any(bounds):
            help_text += f" ({' and '.join(b for b in bounds if b)})"
        names = [option_name(name) for name in (spec.name, *spec.aliases)]
        if spec.type is bool:
            group.add_argument(
                *names,
                dest=spec.name,
                default=spec.default,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
            continue
        group.add_argument(
            *names,
            dest=spec.name,
            type=_optional(spec.type) if spec.optional else spec.type,
            default=spec.default,
            choices=spec.choices,
            metavar=None if spec.choices else spec.name.upper(),
            help=help_text + (" ('none' for no value)" if spec.optional else ""),
        )


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def params_from_args(params_type: type[P], args: argparse.Namespace) -> P:
    """The parameters from ``args``; an option left unset (None) that needs a value takes
    its default (the voxel spacing options have none of their own: see ``_spacing``)."""
    required = {spec.name for spec in params_mod.specs(params_type) if not spec.optional}
    values = {k: v for k, v in vars(args).items() if not (v is None and k in required)}
    return params_mod.from_mapping(params_type, values)


def add_image_arguments(parser: argparse.ArgumentParser, output_suffix: str) -> None:
    parser.add_argument("image", type=Path, help="Input image: TIFF, PNG, JPEG or an "
                        "OME-Zarr store (.zarr).")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"Label TIFF to write (a JSON sidecar with the metadata goes beside it); "
        f"default: IMAGE_{output_suffix}.tif next to the input. An output ending in .zarr "
        f"(or an OME-Zarr input) gives OME-Zarr labels, written block by block; for an "
        f"OME-Zarr input the default is labels/{output_suffix} inside its store.",
    )
    parser.add_argument(
        "--channel-axis",
        default="auto",
        help="Axis of the input that holds channels: an integer, 'none' (a grey image or a "
        "stack of grey planes), or 'auto' (the last axis of an RGB(A) PNG/JPEG/TIFF, else none).",
    )
    add_region_arguments(parser)
    parser.add_argument("--quiet", action="store_true",
                        help="No progress bar, and no line on the device and memory.")
    parser.add_argument(
        "--force", action="store_true",
        help="Run even when the estimated peak memory is over the memory available.")


def add_region_arguments(parser: argparse.ArgumentParser, polygons: bool = False) -> None:
    """``--nodata`` and ``--aoi``: the pixels left out of the work (label 0, no polygon);
    with ``polygons``, as the polygon export reads them."""
    nodata = ("pixels of --image whose every band equals it are left out of the statistics"
              if polygons else "pixels whose every band equals it take no region and get "
              "label 0")
    aoi = ("only the labels inside are written as polygons" if polygons else "only the "
           "pixels inside are segmented, and the output covers its bounds")
    parser.add_argument(
        "--nodata", default=None, metavar="VALUE",
        help=f"Pixel value that means 'no data': {nodata}. Default: the GeoTIFF's own nodata "
        "value; 'none' for none.",
    )
    parser.add_argument(
        "--aoi", type=Path, default=None, metavar="FILE",
        help=f"Area of interest: a polygon layer (.geojson, .gpkg, .shp) in any CRS; {aoi}.",
    )


def region_from_args(args: argparse.Namespace) -> Region:
    """The ``--nodata`` and ``--aoi`` options as a :class:`Region`."""
    return replace(parse_nodata(args.nodata), aoi=args.aoi)


def parse_channel_axis(text: str, rgb: bool) -> int | None:
    text = str(text).strip().lower()
    if text == "auto":
        return -1 if rgb else None
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"--channel-axis must be an integer, 'none' or 'auto'; got '{text}'."
        ) from None


def load_channels_last(path: Path, channel_axis: str) -> np.ndarray:
    """Read an image and put it in the engines' channels-last layout (an OME-Zarr store:
    level 0 whole, its channel axis from its metadata)."""
    from ..core.base.omezarr import is_omezarr_path

    if is_omezarr_path(path):
        from ..core.base.omezarr import open_omezarr, read_whole

        return as_channels_last(read_whole(open_omezarr(path)), -1)
    loaded = read_image(path)
    return as_channels_last(loaded.data, parse_channel_axis(channel_axis, loaded.rgb))


def output_path(args: argparse.Namespace, suffix: str) -> Path:
    if args.output is not None:
        return Path(args.output)
    return args.image.with_name(f"{args.image.stem}_{suffix}.tif")


@contextmanager
def finish_on_interrupt(control: RunControl) -> Iterator[None]:
    """The first Ctrl+C asks the engine to finish with what it has (the same finished
    result a full run gives, marked ``stopped_early``); a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: Any) -> None:
        if control.stop_requested:
            raise KeyboardInterrupt
        control.request_stop()
        print("\nnapari-unsupseg: finishing with the result so far "
              "(Ctrl+C again to abandon it)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_with_bar(
    run: Generator[Progress, None, R] | Callable[[RunControl], Generator[Progress, None, R]],
    description: str,
    quiet: bool = False,
    unit: str = "step",
) -> R:
    """Drive an engine (or batch) with a tqdm bar showing loss and label count, and return
    what it returns.

    ``run`` is a generator, or a function that starts one with a :class:`RunControl`:
    then Ctrl+C finishes the run early instead of losing it.
    """
    from tqdm import tqdm

    control = RunControl()
    if callable(run) and not hasattr(run, "send"):
        run = run(control)

    with tqdm(desc=description, disable=quiet, unit=unit, leave=True) as bar:

        def show(event: Progress) -> None:
            bar.total = event.total
            bar.n = event.step
            postfix = {}
            if event.loss is not None:
                postfix["loss"] = f"{event.loss:.3f}"
            if event.n_labels is not None:
                postfix["labels"] = event.n_labels
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

        with finish_on_interrupt(control):
            return drive(run, show)


def announce(planned: Planned, force: bool = False, quiet: bool = False) -> Any:
    """Say on stderr, before the run, which device runs it and its estimated peak memory
    (unless ``quiet``); a run that will not fit is refused (one sentence, exit 2) unless
    ``force``. Returns the parameters to run with."""
    if not quiet:
        line = planned.limits.line + (f"; {planned.note}" if planned.note else "")
        print(f"napari-unsupseg: {line}", file=sys.stderr)
    if not planned.limits.fits and not force:
        raise InputError(planned.limits.refusal[:-1] + ", or run with --force.")
    return planned.params


def write_result(
    result: Result, path: Path, source: Path, georef: Georef | None = None
) -> None:
    """Labels plus JSON sidecar (a GeoTIFF when georeferenced), and a one-line summary of
    where they went. The georeference: ``georef``, else the one the result's metadata
    carries (the scene's, cut to an area of interest), else the source's."""
    from ..core.base.geo import carried_georef

    if georef is None:
        georef = Georef.from_metadata(result.metadata.get("georeference"))
    if georef is None:
        georef = carried_georef(source)
    metadata = {**result.metadata, "source": str(source)}
    sidecar = write_labels(path, result.labels, metadata, georef=georef)
    n = len(np.unique(result.labels[result.labels > 0]))
    print(
        f"wrote {path} ({n} labels, {result.labels.dtype}, shape {result.labels.shape}) "
        f"and {sidecar}"
    )
