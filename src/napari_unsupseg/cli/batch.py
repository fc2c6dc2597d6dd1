"""``napari-unsupseg batch``: one engine over many files, on dask.distributed.

Example::

    napari-unsupseg batch backprop tiles/ 'more/*.tif' -o labels/ --workers 4 --max-iter 32
    napari-unsupseg batch preseg plate/ -o out/ --scheduler tcp://10.0.0.5:8786

Outputs mirror the input names (``labels/<name>_backprop.tif`` and its JSON sidecar;
GeoTIFFs keep their georeference); outputs already written are skipped, so running
the same command again resumes. Exit code 1 when any file failed.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from ..core.base.scene import check_region
from ..core.batch import plan_jobs, run_batch
from ..core.registry import batch_engine, batch_engines
from ._common import (
    add_params,
    add_region_arguments,
    load_channels_last,
    params_from_args,
    region_from_args,
    run_with_bar,
)

HELP = "Run an engine over many files (folders, globs) on a local or remote dask cluster."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    engines = parser.add_subparsers(title="engines", dest="engine", required=True)
    for engine in batch_engines():
        name = engine.name
        together = " (all files together: one size)" if engine.batch == "collection" else ""
        sub = engines.add_parser(
            name,
            help=f"{name} on every file{together} (the options of 'napari-unsupseg {name}').",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        sub.add_argument("inputs", nargs="+", help="Image files, OME-Zarr stores (.zarr, "
                         "read whole), folders and glob patterns.")
        sub.add_argument("-o", "--output-dir", type=Path, required=True,
                         help="Folder for the label files (created if needed).")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--workers", type=int, default=2,
                           help="Worker processes of the local dask cluster.")
        where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="Address of a running dask scheduler, e.g. tcp://host:8786 "
                           "(instead of a local cluster).")
        sub.add_argument("--channel-axis", default="auto",
                         help="Axis that holds channels: an integer, 'none' or 'auto'.")
        sub.add_argument("--geojson", action="store_true",
                         help="Also write each result as GeoJSON polygons (.geojson).")
        add_region_arguments(sub)
        sub.add_argument("--quiet", action="store_true", help="No progress bar.")
        add_params(sub, engine.params)


def run(args: argparse.Namespace) -> int:
    params = params_from_args(batch_engine(args.engine).params, args)
    jobs = plan_jobs(args.inputs, args.output_dir, args.engine)
    region = region_from_args(args)
    check_region(jobs[0].source, region)  # a bad AOI file: refused before anything runs
    load = functools.partial(load_channels_last, channel_axis=args.channel_axis)
    report = run_with_bar(
        lambda control: run_batch(jobs, args.engine, params, workers=args.workers,
                                  scheduler=args.scheduler, load=load, geojson=args.geojson,
                                  region=region, control=control),
        f"batch {args.engine}", args.quiet, unit="file")
    print(report.summary())
    return 0 if report.ok else 1
