"""Benchmark: backprop segmentation of large 4-band 16-bit scenes (crop training, tiled labels).

    python benchmarks/bench_large.py                       # 1k^2 and 4k^2
    python benchmarks/bench_large.py --sizes 1000 10000    # the 10k^2 headline (long on a CPU)
    OMP_NUM_THREADS=1 python benchmarks/bench_large.py     # one thread (on a busy machine)

The scene is a synthetic land-cover mosaic with exact truth: six classes (water, trees,
grass, road, roof, soil; each its own 4-band signature and texture) over wavy Voronoi
patches about 128 px across, under noise, as uint16. Patch size does not change with
the image size, so a 10k^2 scene is 100 times the 1k^2 one, not a magnified copy.

Each case runs in its own subprocess, so its peak resident memory (``ru_maxrss``,
which sees torch's buffers and the input image) is its own; the scene is made in
another subprocess and memory-mapped. Cases: ``whole`` (``segment`` with the default
budget: a 1k^2 image is under it and trains on the whole image, as before) and
``crops`` (the crop engine with ``memory_budget_mb=--budget``: crop training, tiled
labelling, at every size, 1k^2 included, so that the scaling is of one method).
Quality: Hungarian mIoU of the labels against the six classes (``n_labels=6``), on a
regular subsample of at most 4 M pixels for the largest scenes. Cost per megapixel is
compared with the 1k^2 crops case of the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Band signatures (blue, green, red, near infrared) in [0, 1] and a texture per class.
CLASSES = {
    "water": ((0.30, 0.25, 0.15, 0.05), "flat"),
    "trees": ((0.10, 0.25, 0.12, 0.70), "speckle"),
    "grass": ((0.15, 0.40, 0.25, 0.55), "flat"),
    "road": ((0.45, 0.45, 0.45, 0.35), "stripes"),
    "roof": ((0.70, 0.40, 0.35, 0.40), "checker"),
    "soil": ((0.35, 0.40, 0.55, 0.45), "speckle"),
}
CELL = 128
_BAND = 256  # rows generated at a time


def scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ``(size, size, 4)`` uint16 scene and its ``(size, size)`` uint8 classes 1..6,
    made band of rows by band of rows (no float image of the full size)."""
    rng = np.random.default_rng(seed)
    cells = size // CELL + 2
    points = (np.mgrid[:cells, :cells].transpose(1, 2, 0) + rng.uniform(0, 1, (cells, cells, 2)))
    points *= CELL
    owner = rng.integers(0, len(CLASSES), (cells, cells))
    signature = np.array([c[0] for c in CLASSES.values()], np.float32)
    textures = [c[1] for c in CLASSES.values()]
    image = np.empty((size, size, 4), np.uint16)
    truth = np.empty((size, size), np.uint8)
    xx = np.arange(size, dtype=np.float32)[None, :]
    for top in range(0, size, _BAND):
        yy = np.arange(top, min(size, top + _BAND), dtype=np.float32)[:, None]
        # Wavy boundaries: the lookup position is displaced smoothly.
        wy = yy + 14 * np.sin(2 * np.pi * xx / 173.0)
        wx = xx + 14 * np.sin(2 * np.pi * yy / 151.0)
        cy, cx = (np.clip(w // CELL, 0, cells - 1).astype(int) for w in (wy, wx))
        best = np.full(wy.shape, np.inf, np.float32)
        cls = np.zeros(wy.shape, np.int64)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = np.clip(cy + dy, 0, cells - 1), np.clip(cx + dx, 0, cells - 1)
                p = points[ny, nx]
                dist = (wy - p[..., 0]) ** 2 + (wx - p[..., 1]) ** 2
                closer = dist < best
                best = np.where(closer, dist, best)
                cls = np.where(closer, owner[ny, nx], cls)
        values = signature[cls]
        texture = np.zeros(cls.shape, np.float32)
        for k, kind in enumerate(textures):
            inside = cls == k
            if kind == "stripes":
                pattern = np.sin(2 * np.pi * (xx + yy) / 7.0) + 0 * yy
            elif kind == "checker":
                pattern = np.sign(np.sin(np.pi * xx / 4) * np.sin(np.pi * yy / 4))
            elif kind == "speckle":
                pattern = rng.standard_normal(cls.shape).astype(np.float32)
            else:
                continue
            texture[inside] = np.broadcast_to(pattern, cls.shape)[inside]
        values = values + 0.06 * texture[..., None]
        values += rng.normal(0, 0.03, values.shape).astype(np.float32)
        rows = slice(top, top + len(yy))
        image[rows] = (np.clip(values, 0, 1) * 40_000 + 2_000).astype(np.uint16)
        truth[rows] = cls + 1
    return image, truth


def make(size: int, folder: Path) -> tuple[Path, Path]:
    image_path, truth_path = folder / f"scene_{size}.npy", folder / f"truth_{size}.npy"
    if not image_path.exists():
        image, truth = scene(size)
        np.save(truth_path, truth)
        np.save(folder / f"partial_{size}.npy", image)  # renamed only once complete
        (folder / f"partial_{size}.npy").rename(image_path)
    return image_path, truth_path


def run_case(size: int, mode: str, budget: int, folder: Path, max_iter: int) -> dict:
    """One segmentation (in a subprocess of its own): seconds, peak memory, labels saved."""
    from napari_unsupseg.core.backprop import default_params, segment
    from napari_unsupseg.core.backprop.large import segment_large
    from napari_unsupseg.core.base.engine import run_to_end

    image = np.load(folder / f"scene_{size}.npy", mmap_mode="r")
    params = default_params(n_labels=6, max_iter=max_iter, memory_budget_mb=budget)
    import torch  # noqa: F401 - imported before the clock starts, as in bench_backprop

    start = time.perf_counter()
    if mode == "crops":  # the crop engine itself, whatever the size
        result = run_to_end(segment_large(image, params))
    else:  # the default dispatch with the default budget
        result = run_to_end(segment(image, default_params(n_labels=6, max_iter=max_iter)))
    seconds = time.perf_counter() - start
    np.save(folder / f"labels_{size}_{mode}.npy", result.labels)
    meta = result.metadata
    return {
        "size": size, "mode": meta.get("mode", "whole"), "seconds": seconds,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "n_labels": meta["n_labels"], "iterations": meta["iterations"],
        "batch": meta.get("batch_size"), "tile": meta.get("tile_size"),
        "timings": {k: round(v, 1) for k, v in meta["timings"].items()},
        "threads": torch.get_num_threads(),
    }


def score(size: int, mode: str, folder: Path) -> float:
    from napari_unsupseg.core.review.scores import hungarian_iou

    labels = np.load(folder / f"labels_{size}_{mode}.npy", mmap_mode="r")
    truth = np.load(folder / f"truth_{size}.npy", mmap_mode="r")
    step = max(1, math.ceil(size / 2000))
    return hungarian_iou(np.asarray(labels[::step, ::step]), np.asarray(truth[::step, ::step]))


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--budget", type=int, default=1024, help="memory_budget_mb of 'crops'")
    parser.add_argument("--max-iter", type=int, default=64)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "bench_large")
    parser.add_argument("--case", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--make", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.make:
        make(args.make, args.folder)
        print(json.dumps({"made": args.make}))
        return
    if args.case:
        size, mode = int(args.case[0]), args.case[1]
        print(json.dumps(run_case(size, mode, args.budget, args.folder, args.max_iter)))
        return
    common = ["--budget", str(args.budget), "--max-iter", str(args.max_iter),
              "--folder", str(args.folder)]
    rows = []
    for size in sorted(set(args.sizes) | {1000}):
        child(["--make", str(size), "--folder", str(args.folder)])
        for mode in (("whole", "crops") if size <= 1000 else ("crops",)):
            row = child(["--case", str(size), mode, *common])
            row["miou"] = score(size, mode, args.folder)
            row["s_per_mp"] = row["seconds"] / (size * size / 1e6)
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["size"] == 1000 and r["mode"] == "crops")
    print(f"\nbudget {args.budget} MB, max_iter {args.max_iter}, "
          f"torch threads {rows[0]['threads']} (set OMP_NUM_THREADS to change)")
    print(f"{'size':>6} {'mode':>6} {'s':>8} {'s/MP':>7} {'x 1k':>6} {'peak GiB':>9} "
          f"{'mIoU':>6} {'labels':>6}")
    for r in rows:
        print(f"{r['size']:>6} {r['mode']:>6} {r['seconds']:>8.1f} {r['s_per_mp']:>7.2f} "
              f"{r['s_per_mp'] / base['s_per_mp']:>6.2f} {r['peak_gib']:>9.2f} "
              f"{r['miou']:>6.3f} {r['n_labels']:>6}")


if __name__ == "__main__":
    main()
