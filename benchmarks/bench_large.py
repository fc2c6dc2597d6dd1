"""Benchmark: backprop segmentation of large 4-band 16-bit scenes (the large-image path:
training on the shrunk scene, calibrated statistics, tiled labels) against the whole-image
engine on the same scenes.

    python benchmarks/bench_large.py                                 # 1k^2 and 2k^2, both scenes
    python benchmarks/bench_large.py --scenes mosaic --sizes 10000   # the 10k^2 headline
    OMP_NUM_THREADS=1 python benchmarks/bench_large.py               # one thread (a busy machine)

Scenes, each with exact truth, as uint16:
- ``mosaic``: a synthetic land-cover mosaic: six classes (water, trees, grass, road, roof,
  soil; each its own 4-band signature and texture) over wavy Voronoi patches about 128 px
  across, under noise. Patch size does not change with the image size, so a 10k^2 scene is
  100 times the 1k^2 one, not a magnified copy.
- ``textured``: the package's seven-region textured mosaic (``textured_mosaic``; regions
  grow with the image, textures keep their pixel scale), RGB plus the mean as a 4th band.

Each case runs in its own subprocess, so its peak resident memory (``ru_maxrss``, which
sees torch's buffers and the memory-mapped input's pages) is its own; the scene is made
in another subprocess and memory-mapped. Modes: ``default`` (``segment`` with the
default parameters and budget: the engine chooses its path), ``whole`` (the whole-image
engine, the budget raised so that it is chosen) and ``large`` (the large-image engine
itself with ``memory_budget_mb=--budget``). Defaults throughout (``--n-labels`` gives the
engine the number of classes only when asked). Quality: Hungarian mIoU of the labels
against the classes, on a regular subsample of at most 4 M pixels for the largest scenes.
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


def textured(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from napari_unsupseg.core.samples.synthetic import textured_mosaic

    rgb, truth = textured_mosaic(size, n_regions=7, seed=seed)
    four = np.concatenate([rgb, rgb.mean(-1, keepdims=True)], -1)
    return (four * 40_000 + 2_000).astype(np.uint16), truth.astype(np.uint8)


SCENES = {"mosaic": scene, "textured": textured}


def make(size: int, name: str, folder: Path) -> None:
    image_path = folder / f"{name}_{size}.npy"
    if not image_path.exists():
        image, truth = SCENES[name](size)
        np.save(folder / f"{name}_truth_{size}.npy", truth)
        np.save(folder / f"partial_{name}_{size}.npy", image)  # renamed only once complete
        (folder / f"partial_{name}_{size}.npy").rename(image_path)


def run_case(size: int, name: str, mode: str, args: argparse.Namespace) -> dict:
    """One segmentation (in a subprocess of its own): seconds, peak memory, labels saved."""
    from napari_unsupseg.core.backprop import default_params, segment
    from napari_unsupseg.core.backprop.large import segment_large
    from napari_unsupseg.core.base.engine import run_to_end

    image = np.load(args.folder / f"{name}_{size}.npy", mmap_mode="r")
    common = {"max_iter": args.max_iter, "n_labels": args.n_labels}
    import torch  # noqa: F401 - imported before the clock starts, as in bench_backprop

    start = time.perf_counter()
    if mode == "large":
        run = segment_large(image, default_params(memory_budget_mb=args.budget, **common))
    elif mode == "whole":
        run = segment(image, default_params(memory_budget_mb=1_000_000, **common))
    else:
        run = segment(image, default_params(**common))
    result = run_to_end(run)
    seconds = time.perf_counter() - start
    np.save(args.folder / f"labels_{name}_{size}_{mode}.npy", result.labels)
    meta = result.metadata
    return {
        "size": size, "scene": name, "mode": mode, "path": meta.get("mode", "whole"),
        "seconds": seconds,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "n_labels": meta["n_labels"], "iterations": meta["iterations"],
        "tile": meta.get("tile_size"), "trained_at": meta.get("trained_at"),
        "timings": {k: round(v, 1) for k, v in meta["timings"].items()},
        "threads": torch.get_num_threads(),
    }


def score(size: int, name: str, mode: str, folder: Path) -> float:
    from napari_unsupseg.core.review.scores import hungarian_iou

    labels = np.load(folder / f"labels_{name}_{size}_{mode}.npy", mmap_mode="r")
    truth = np.load(folder / f"{name}_truth_{size}.npy", mmap_mode="r")
    step = max(1, math.ceil(size / 2000))
    return hungarian_iou(np.asarray(labels[::step, ::step]), np.asarray(truth[::step, ::step]))


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--scenes", nargs="+", choices=list(SCENES), default=list(SCENES))
    parser.add_argument("--modes", nargs="+", choices=("default", "whole", "large"),
                        default=["default", "whole", "large"])
    parser.add_argument("--whole-max", type=int, default=4000,
                        help="Largest side run in 'whole' mode (it needs ~1 KB per pixel).")
    parser.add_argument("--budget", type=int, default=2048, help="memory_budget_mb of 'large'")
    parser.add_argument("--max-iter", type=int, default=64)
    parser.add_argument("--n-labels", type=int, default=None)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "bench_large")
    parser.add_argument("--case", nargs=3, metavar=("SIZE", "SCENE", "MODE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("SIZE", "SCENE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.make:
        make(int(args.make[0]), args.make[1], args.folder)
        print(json.dumps({"made": args.make}))
        return
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), args.case[1], args.case[2], args)))
        return
    common = ["--budget", str(args.budget), "--max-iter", str(args.max_iter),
              "--folder", str(args.folder)]
    if args.n_labels:
        common += ["--n-labels", str(args.n_labels)]
    rows = []
    for name in args.scenes:
        for size in args.sizes:
            child(["--make", str(size), name, "--folder", str(args.folder)])
            for mode in args.modes:
                if mode == "whole" and size > args.whole_max:
                    continue
                row = child(["--case", str(size), name, mode, *common])
                row["miou"] = score(size, name, mode, args.folder)
                row["s_per_mp"] = row["seconds"] / (size * size / 1e6)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nlarge mode's budget {args.budget} MB (default mode: the engine's default), "
          f"max_iter {args.max_iter}, n_labels {args.n_labels}, torch threads "
          f"{rows[0]['threads']} (set OMP_NUM_THREADS to change)")
    print(f"{'scene':>9} {'size':>6} {'mode':>8} {'path':>6} {'s':>8} {'s/MP':>7} "
          f"{'peak GiB':>9} {'mIoU':>6} {'labels':>6}")
    for r in rows:
        print(f"{r['scene']:>9} {r['size']:>6} {r['mode']:>8} {r['path']:>6} "
              f"{r['seconds']:>8.1f} {r['s_per_mp']:>7.2f} {r['peak_gib']:>9.2f} "
              f"{r['miou']:>6.3f} {r['n_labels']:>6}")


if __name__ == "__main__":
    main()
