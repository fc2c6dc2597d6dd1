"""Many files through one engine on dask.distributed: a local cluster, or any scheduler.

:func:`plan_jobs` turns files, folders and glob patterns into jobs whose outputs mirror
the input names under one folder; :func:`run_batch` runs the jobs whose output is not
written yet (so a rerun resumes) on a ``LocalCluster`` of ``workers`` processes or on
the scheduler at ``scheduler`` (``dask scheduler`` / ``dask worker``, dask-jobqueue,
Kubernetes). Each file is read, segmented with the same engine and parameters as the
single-image commands, and written (a GeoTIFF when the input is one) on a worker; a
file that fails is reported by name and the others carry on. Part discovery, which learns
from a collection, runs once over all the files (one task) and writes one label file per
input like the others. :func:`run_batch` is a generator like every engine: it yields a
:class:`BatchProgress` as each file ends and returns the :class:`BatchReport`; the command
line and the widget drive it.

dask is imported where the work starts, never at import time.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base.engine import Progress, RunControl, no_control
from .base.errors import InputError
from .base.io import PICTURE_SUFFIXES, TIFF_SUFFIXES
from .base.omezarr import is_omezarr_path
from .base.scene import Region
from .registry import Engine, batch_engine

IMAGE_SUFFIXES = TIFF_SUFFIXES + PICTURE_SUFFIXES
#: Seconds to wait for a scheduler given by address before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


def _expand(entry: str) -> list[tuple[Path, Path]]:
    """(file, name relative to the entry) for a file, a folder (recursively) or a glob;
    an OME-Zarr store (a folder) counts as one file."""
    path = Path(entry)
    if is_omezarr_path(path) and path.is_dir():  # a store is one image, not a folder
        return [(path, Path(path.name))]
    if path.is_dir():
        stores = sorted(p for p in path.rglob("*.zarr") if p.is_dir())
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                       and p.is_file() and not any(s in p.parents for s in stores))
        stores = [s for s in stores if not any(o in s.parents for o in stores)]
        return [(p, p.relative_to(path)) for p in sorted(files + stores)]
    if path.is_file():
        return [(path, Path(path.name))]
    if glob.has_magic(entry):
        found = sorted(Path(p) for p in glob.glob(entry, recursive=True))
        return [(p, Path(p.name)) for p in found
                if p.is_file() or (p.is_dir() and p.suffix.lower() == ".zarr")]
    raise InputError(f"{entry} is neither a file, a folder nor a pattern that matches files.")


def plan_jobs(inputs: Sequence[str | Path], outdir: str | Path, suffix: str) -> list[Job]:
    """One job per input file; the output is ``OUTDIR/<relative folder>/<stem>_<suffix>.tif``."""
    outdir = Path(outdir)
    jobs: dict[Path, Job] = {}
    for entry in inputs:
        for source, relative in _expand(str(entry)):
            stem = relative.stem.removesuffix(".ome")  # image.ome.zarr -> image
            output = outdir / relative.parent / f"{stem}_{suffix}.tif"
            known = jobs.get(output)
            if known is not None and known.source.resolve() != source.resolve():
                raise InputError(
                    f"{known.source} and {source} would both be written to {output}; "
                    "give them separately or rename one."
                )
            jobs[output] = Job(source, output)
    if not jobs:
        raise InputError("No image files found in the inputs given.")
    return list(jobs.values())


def load_image(path: Path) -> np.ndarray:
    """A file in the engines' channels-last layout, the channel axis taken from the file."""
    from .base.images import as_channels_last
    from .base.io import read_image

    if is_omezarr_path(path):  # level 0 of an OME-Zarr store, its axes from its metadata
        from .base.omezarr import open_omezarr, read_whole

        return as_channels_last(read_whole(open_omezarr(path)), -1)
    loaded = read_image(path)
    return as_channels_last(loaded.data, -1 if loaded.rgb else None)


def process_file(
    job: Job,
    engine: str,
    params: Any,
    load: Callable[[Path], np.ndarray] = load_image,
    geojson: bool = False,
    region: Region | None = None,
) -> dict[str, Any]:
    """Read, segment and write one file (on a worker); see :func:`_write`. ``region``:
    nodata and the area of interest, left out as the single-image commands do."""
    from .base.engine import run_to_end
    from .base.scene import RENUMBERED, prepare_scene

    start = time.perf_counter()
    scene = prepare_scene(job.source, load, region)
    result = run_to_end(batch_engine(engine).run_scene(scene, params))
    labels = scene.finish(result.labels, engine in RENUMBERED)
    return _write(job, labels, {**result.metadata, **scene.notes}, geojson, start,
                  scene.georef)


def process_collection(
    jobs: Sequence[Job],
    engine: str,
    params: Any,
    load: Callable[[Path], np.ndarray] = load_image,
    geojson: bool = False,
    region: Region | None = None,
) -> list[dict[str, Any]]:
    """Run an engine that learns from a collection (part discovery) once over every file,
    then write one label file per input (on a worker)."""
    from .base.engine import run_to_end
    from .base.scene import prepare_scene

    start = time.perf_counter()
    scenes = [prepare_scene(job.source, load, region) for job in jobs]
    images = [scene.image for scene in scenes]
    for job, image in zip(jobs, images, strict=True):
        if image.shape != images[0].shape:
            raise InputError(
                f"{job.source.name} has shape {image.shape} but {jobs[0].source.name} has "
                f"{images[0].shape}: {engine} needs images of one size and channel count."
            )
    result = run_to_end(batch_engine(engine).run(np.stack(images), params))
    sources = [str(job.source) for job in jobs]
    return [
        _write(job, scene.finish(result.labels[index], renumber=False),
               {**result.metadata, **scene.notes, "sources": sources}, geojson, start,
               scene.georef)
        for index, (job, scene) in enumerate(zip(jobs, scenes, strict=True))
    ]


def _write(job: Job, labels: np.ndarray, metadata: dict[str, Any], geojson: bool,
           start: float, georef: Any) -> dict[str, Any]:
    """The label file appears only when complete (written under a temporary name, then
    renamed), so a run killed midway leaves nothing that a rerun would skip."""
    from .base.geo import class_names
    from .base.io import write_labels

    partial = job.output.with_name(f".{job.output.stem}.partial.tif")
    metadata = {**metadata, "source": str(job.source)}
    sidecar = write_labels(partial, labels, metadata, georef=georef)
    if geojson:  # from the label file just written, as the geojson command does
        from .base.vectors import VectorOptions, provenance_fields, write_vectors

        options = VectorOptions(classes=class_names(metadata),
                                provenance=provenance_fields(metadata))
        write_vectors(partial, job.output.with_suffix(".geojson"), options=options)
    os.replace(sidecar, job.output.with_suffix(".json"))
    os.replace(partial, job.output)
    return {
        "source": str(job.source),
        "output": str(job.output),
        "n_labels": int(len(np.unique(labels[labels > 0]))),
        "seconds": time.perf_counter() - start,
    }


@dataclass
class BatchReport:
    """What a batch did: outputs written, skipped (already there) and failures by name."""

    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"{len(self.done)} written, {len(self.skipped)} skipped (already written), "
            f"{len(self.failed)} failed, in {self.seconds:.1f} s on {self.workers} worker(s)"
        ]
        lines += [f"failed: {path}: {message}" for path, message in self.failed]
        return "\n".join(lines)


def connect(workers: int = 2, scheduler: str | None = None,
            timeout: float = CONNECT_TIMEOUT) -> Any:
    """A dask ``Client``: to the scheduler at ``scheduler``, or to a new local cluster of
    ``workers`` single-threaded processes. An unreachable scheduler is an
    :class:`InputError` after ``timeout`` seconds."""
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(
                f"Could not reach the dask scheduler at {scheduler} within {timeout:g} s "
                f"({type(error).__name__}); check that it is running and the address is right."
            ) from None
    if workers < 1:
        raise InputError(f"--workers must be at least 1; got {workers}.")
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.CRITICAL,  # failures are reported by name instead
    )
    return Client(cluster)


@dataclass
class BatchProgress(Progress):
    """A file (or, for a collection engine, every file) has ended: ``step`` of ``total``."""

    job: Job | None = None


def run_batch(
    jobs: Sequence[Job],
    engine: str,
    params: Any,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    load: Callable[[Path], np.ndarray] = load_image,
    geojson: bool = False,
    region: Region | None = None,
    timeout: float = CONNECT_TIMEOUT,
    control: RunControl | None = None,
) -> Generator[BatchProgress, None, BatchReport]:
    """Run the jobs whose output does not exist yet; one task per file (one for all the
    files of a collection engine), failures by name. Yields a :class:`BatchProgress` as each
    task ends; when ``control`` asks to stop, the tasks not finished are cancelled and the
    report so far is returned."""
    chosen = batch_engine(engine)
    control = control or no_control()
    report = BatchReport(skipped=[job for job in jobs if job.output.exists()])
    todo = [job for job in jobs if not job.output.exists()]
    start = time.perf_counter()
    if not todo:
        return report
    client = connect(workers, scheduler, timeout)  # before anything is written
    try:
        from dask.distributed import as_completed

        report.workers = len(client.scheduler_info().get("workers", {}))
        for job in todo:
            job.output.parent.mkdir(parents=True, exist_ok=True)
        futures = _submit(client, chosen, todo, params, load, geojson, region)
        finished = 0
        for future in as_completed(futures):
            batch = futures[future]
            try:
                outcome = future.result()
                report.done.extend(outcome if isinstance(outcome, list) else [outcome])
            except Exception as error:  # noqa: BLE001 - any failure is reported by name
                report.failed.extend((job.source, _plain(error)) for job in batch)
            finished += len(batch)
            yield BatchProgress(finished, len(todo), message=batch[-1].source.name,
                                job=batch[-1])
            if control.stop_requested:
                client.cancel([f for f in futures if not f.done()])
                break
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None and scheduler is None:
            cluster.close()
    report.seconds = time.perf_counter() - start
    return report


def _submit(client: Any, engine: Engine, todo: list[Job], params: Any,
            load: Callable[[Path], np.ndarray], geojson: bool,
            region: Region | None) -> dict[Any, list[Job]]:
    """Futures of the tasks, each with the jobs it writes."""
    if engine.batch == "collection":
        future = client.submit(process_collection, todo, engine.name, params, load, geojson,
                               region, pure=False)
        return {future: list(todo)}
    return {
        client.submit(process_file, job, engine.name, params, load, geojson, region,
                      pure=False): [job]
        for job in todo
    }


def _plain(error: BaseException) -> str:
    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
