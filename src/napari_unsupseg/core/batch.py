"""Many files through one engine on dask.distributed: a local cluster, or any scheduler.

:func:`plan_jobs` turns files, folders and glob patterns into jobs whose outputs mirror
the input names under one folder; :func:`run_batch` runs the jobs whose output is not
written yet (so a rerun resumes) on a ``LocalCluster`` of ``workers`` processes or on
the scheduler at ``scheduler`` (``dask scheduler`` / ``dask worker``, dask-jobqueue,
Kubernetes). Each file is read, segmented with the same engine and parameters as the
single-image commands, and written (a GeoTIFF when the input is one) on a worker; a
file that fails is reported by name and the others carry on.

dask is imported where the work starts, never at import time.
"""

from __future__ import annotations

import glob
import importlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base.errors import InputError
from .base.io import PICTURE_SUFFIXES, TIFF_SUFFIXES

IMAGE_SUFFIXES = TIFF_SUFFIXES + PICTURE_SUFFIXES
#: Seconds to wait for a scheduler given by address before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class BatchEngine:
    """Where an engine and its parameter dataclass live (imported on the workers)."""

    module: str
    params: str
    function: str

    def load(self) -> tuple[type, Callable[..., Any]]:
        module = importlib.import_module(self.module)
        return getattr(module, self.params), getattr(module, self.function)


ENGINES: dict[str, BatchEngine] = {
    "preseg": BatchEngine("napari_unsupseg.core.preseg", "PresegParams", "run_preseg"),
    "backprop": BatchEngine("napari_unsupseg.core.backprop", "BackpropParams", "segment"),
    "predict": BatchEngine("napari_unsupseg.core.predict", "InferenceParams", "predict"),
}


def engine_named(name: str) -> BatchEngine:
    if name not in ENGINES:
        raise InputError(f"Unknown engine '{name}'; choose from {', '.join(ENGINES)}.")
    return ENGINES[name]


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


def _expand(entry: str) -> list[tuple[Path, Path]]:
    """(file, name relative to the entry) for a file, a folder (recursively) or a glob."""
    path = Path(entry)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(p, p.relative_to(path)) for p in files if p.is_file()]
    if path.is_file():
        return [(path, Path(path.name))]
    if glob.has_magic(entry):
        files = sorted(Path(p) for p in glob.glob(entry, recursive=True))
        return [(p, Path(p.name)) for p in files if p.is_file()]
    raise InputError(f"{entry} is neither a file, a folder nor a pattern that matches files.")


def plan_jobs(inputs: Sequence[str | Path], outdir: str | Path, suffix: str) -> list[Job]:
    """One job per input file; the output is ``OUTDIR/<relative folder>/<stem>_<suffix>.tif``."""
    outdir = Path(outdir)
    jobs: dict[Path, Job] = {}
    for entry in inputs:
        for source, relative in _expand(str(entry)):
            output = outdir / relative.parent / f"{relative.stem}_{suffix}.tif"
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

    loaded = read_image(path)
    return as_channels_last(loaded.data, -1 if loaded.rgb else None)


def process_file(
    job: Job,
    engine: str,
    params: Any,
    load: Callable[[Path], np.ndarray] = load_image,
    geojson: bool = False,
) -> dict[str, Any]:
    """Read, segment and write one file (on a worker). The label file appears only when
    complete (written under a temporary name, then renamed), so a run killed midway
    leaves nothing that a rerun would skip."""
    from .base.engine import run_to_end
    from .base.geo import carried_georef, class_names, write_geojson
    from .base.io import write_labels

    start = time.perf_counter()
    _, run = engine_named(engine).load()
    result = run_to_end(run(load(job.source), params))
    georef = carried_georef(job.source)
    partial = job.output.with_name(f".{job.output.stem}.partial.tif")
    metadata = {**result.metadata, "source": str(job.source)}
    sidecar = write_labels(partial, result.labels, metadata, georef=georef)
    if geojson:
        write_geojson(job.output.with_suffix(".geojson"), np.asarray(result.labels), georef,
                      class_names(result.metadata))
    os.replace(sidecar, job.output.with_suffix(".json"))
    os.replace(partial, job.output)
    return {
        "source": str(job.source),
        "output": str(job.output),
        "n_labels": int(len(np.unique(result.labels[result.labels > 0]))),
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


def run_batch(
    jobs: Sequence[Job],
    engine: str,
    params: Any,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    load: Callable[[Path], np.ndarray] = load_image,
    geojson: bool = False,
    progress: bool = True,
    timeout: float = CONNECT_TIMEOUT,
    on_file: Callable[[int, int, Job], None] | None = None,
) -> BatchReport:
    """Run the jobs whose output does not exist yet; one task per file, failures by name.

    ``on_file(finished, total, job)`` is called as each file ends (for a GUI's progress)."""
    from tqdm import tqdm

    engine_named(engine)
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
        futures = {
            client.submit(process_file, job, engine, params, load, geojson, pure=False): job
            for job in todo
        }
        bar = tqdm(total=len(todo), desc=f"batch {engine}", unit="file", disable=not progress)
        with bar:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    report.done.append(future.result())
                except Exception as error:  # noqa: BLE001 - any failure is reported by name
                    report.failed.append((job.source, _plain(error)))
                bar.update()
                if on_file is not None:
                    on_file(len(report.done) + len(report.failed), len(todo), job)
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None and scheduler is None:
            cluster.close()
    report.seconds = time.perf_counter() - start
    return report


def _plain(error: BaseException) -> str:
    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
