"""Benchmark: ``batch`` throughput on a folder of small images with 1 and 2 dask workers.

    python benchmarks/bench_batch.py                      # 8 images, backprop, 1 and 2 workers
    python benchmarks/bench_batch.py --engine preseg --images 24 --workers 1 2 4

A folder of synthetic mosaics (RGB, ``--size`` pixels a side) is written to a
temporary folder, then each worker count runs the whole folder into a fresh output
folder through :func:`napari_unsupseg.core.batch.run_batch` on a local cluster of
single-threaded worker processes (dask sets one thread per worker for numpy/torch).
Printed: wall time including the cluster start, files per minute, the speed-up over
1 worker, and the sum of the per-file times (the work itself). A second run over the
same output folder checks that resuming skips everything.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(folder: Path, n: int, size: int) -> None:
    import tifffile

    from napari_unsupseg.core.samples import mosaic

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(n):
        image, _ = mosaic(size, n_regions=5, seed=seed)
        tifffile.imwrite(folder / f"image_{seed:03d}.tif", (image * 255).astype(np.uint8))


def main() -> None:
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.batch import plan_jobs, run_batch
    from napari_unsupseg.core.registry import batch_engine, batch_engines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="backprop", choices=[e.name for e in batch_engines()])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-iter", type=int, default=16, help="backprop iterations")
    args = parser.parse_args()

    params_type = batch_engine(args.engine).params
    params = params_type(max_iter=args.max_iter) if args.engine == "backprop" else params_type()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        make_folder(inputs, args.images, args.size)
        rows = []
        for workers in args.workers:
            out = Path(tmp) / f"out_{workers}"
            jobs = plan_jobs([inputs], out, args.engine)
            start = time.perf_counter()
            report = drive(run_batch(jobs, args.engine, params, workers=workers))
            wall = time.perf_counter() - start
            assert report.ok and len(report.done) == args.images, report.summary()
            resumed = drive(run_batch(jobs, args.engine, params, workers=workers))
            assert len(resumed.skipped) == args.images and not resumed.done
            work = sum(d["seconds"] for d in report.done)
            rows.append((workers, wall, args.images / wall * 60, work))
            print(f"{workers} worker(s): {wall:.1f} s wall, {args.images / wall * 60:.1f} "
                  f"files/min, {work:.1f} s of work in the files", flush=True)
    base = rows[0][1]
    print(f"\n{args.images} images of {args.size}^2, engine {args.engine}")
    print(f"{'workers':>7} {'wall s':>8} {'files/min':>10} {'speed-up':>9} {'work s':>8}")
    for workers, wall, rate, work in rows:
        print(f"{workers:>7} {wall:>8.1f} {rate:>10.1f} {base / wall:>9.2f} {work:>8.1f}")


if __name__ == "__main__":
    main()
