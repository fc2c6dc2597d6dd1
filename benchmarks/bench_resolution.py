"""Benchmark: a model applied at its own resolution to finer and coarser views of a scene.

The ground: a textured mosaic (``core.samples.synthetic.textured_mosaic``, 7 regions)
drawn at 0.15 m/px - ``mosaic``: as it comes (colour and texture), ``texture``: every
region given the same mean colour (the texture, at its scale, tells them apart). The
three views a sensor would give are it averaged over 0.15 m (``2x``), 0.3 m (``1x``)
and 0.6 m (``0.5x``) pixels, written as GeoTIFFs (UTM). A
U-Net is trained with ``napari-unsupseg train`` on the 1x GeoTIFF (the regions painted
on every other 32 px square; the model records 0.3 m/px from the file) and applied with
``napari-unsupseg predict`` to each view: the 2x and 0.5x views are resampled to
0.3 m/px and the labels brought back to their grids.

Reported per view: agreement with the 1x prediction (share of the scene's area with the
same class; compared on the 0.3 m grid), accuracy against the ground truth (on the
unpainted pixels), and the prediction time; then the same without resampling
(``--no-resample``), which is what applying the model as-is gives.
Goal: agreement >= 97% at 2x and 0.5x. A coarser view can only keep the classes that
its pixels still resolve: in ``texture``, textures of 1.5-2.7 m period are 2.5-4.5 px at
0.6 m/px, mostly averaged away, so the 0.5x agreement there measures how much the model
leans on fine texture (and varies from one training run to the next).

Usage::

    python benchmarks/bench_resolution.py                # 60 s of training
    python benchmarks/bench_resolution.py --scenes texture --time-limit 30 --size 192
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

NATIVE = 0.3  # metres per pixel of the model
VIEWS = {"2x": NATIVE / 2, "1x": NATIVE, "0.5x": NATIVE * 2}
SCENES = ("mosaic", "texture")


def ground(size: int, seed: int, scene: str) -> tuple[np.ndarray, np.ndarray]:
    """The ground at 0.15 m/px (2 x ``size`` px) with textures of 10-18 px there, and its
    regions at 0.3 m/px (``size`` px). ``texture``: every region given the scene's mean
    colour, so that only its texture (and the scale of it) tells the regions apart."""
    from skimage.transform import resize

    from napari_unsupseg.core.samples.synthetic import textured_mosaic

    image, truth = textured_mosaic(size, n_regions=7, seed=seed)
    if scene == "texture":
        overall = image.mean(axis=(0, 1))
        for value in np.unique(truth):
            inside = truth == value
            image[inside] += overall - image[inside].mean(axis=0)
        image = np.clip(image, 0, 1)
    fine = resize(image, (2 * size, 2 * size, 3), order=1, mode="edge")
    return (fine * 255).astype(np.float32), truth


def view(fine: np.ndarray, pixel: float) -> np.ndarray:
    """The ground averaged over square pixels of ``pixel`` metres (uint8)."""
    k = round(pixel / VIEWS["2x"])
    n = fine.shape[0] // k
    pooled = fine[:n * k, :n * k].reshape(n, k, n, k, 3).mean(axis=(1, 3))
    return np.clip(np.rint(pooled), 0, 255).astype(np.uint8)


def paint(truth: np.ndarray, block: int = 32) -> np.ndarray:
    """The regions painted on every other square of ``block`` px (a checkerboard: every
    region is seen, half of the scene is held out), uint8."""
    yy, xx = np.mgrid[:truth.shape[0], :truth.shape[1]]
    shown = (yy // block + xx // block) % 2 == 0
    return np.where(shown, truth, 0).astype(np.uint8)


def write_geotiff(path: Path, image: np.ndarray, pixel: float) -> Path:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1],
                       count=image.shape[-1] if image.ndim == 3 else 1, dtype=image.dtype,
                       crs="EPSG:32633",
                       transform=Affine(pixel, 0, 500_000, 0, -pixel, 5_800_000)) as target:
        target.write(np.moveaxis(image, -1, 0) if image.ndim == 3 else image[None])
    return path


def run_cli(arguments: list[str]) -> str:
    """``napari-unsupseg ARGUMENTS`` in this process; its printed lines."""
    from napari_unsupseg.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(arguments)
    if code != 0:
        raise SystemExit(f"napari-unsupseg {' '.join(arguments)} exited with {code}")
    return out.getvalue()


def run_scene(scene: str, args: argparse.Namespace) -> list[tuple]:
    """Train on the 1x view of one scene and predict every view; one row per prediction."""
    from napari_unsupseg.core.base.io import read_image
    from napari_unsupseg.core.predict.resolution import labels_to_grid, to_grid

    fine, truth = ground(args.size, args.seed, scene)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        paths = {name: write_geotiff(work / f"scene_{name}.tif", view(fine, pixel), pixel)
                 for name, pixel in VIEWS.items()}
        painted = paint(truth)
        write_geotiff(work / "painted.tif", painted, NATIVE)
        start = time.perf_counter()
        said = run_cli(["train", str(paths["1x"]), "--labels", str(work / "painted.tif"),
                        "-o", str(work / "model.pt"), "--time-limit", str(args.time_limit),
                        "--seed", "0", "--quiet", "--no-separate-objects"])
        print(f"{scene}: training {time.perf_counter() - start:.1f} s; "
              + next(line for line in said.splitlines() if "resolution" in line))
        labels_1x = None
        for resample in (True, False):
            for name in ("1x", "2x", "0.5x"):
                out = work / f"labels_{name}_{resample}.tif"
                start = time.perf_counter()
                run_cli(["predict", str(paths[name]), "--checkpoint", str(work / "model.pt"),
                         "-o", str(out), "--quiet", "--device", "cpu",
                         *([] if resample else ["--no-resample"])])
                seconds = time.perf_counter() - start
                labels = np.asarray(read_image(out).data)
                meta = json.loads(out.with_suffix(".json").read_text())
                grid = (args.size, args.size)
                # Onto the 0.3 m grid: finer labels by the class covering each pixel,
                # coarser ones by nearest neighbour (each covers whole 0.3 m pixels).
                native = labels_to_grid(labels, grid) if labels.shape[0] > args.size \
                    else to_grid(labels, grid)
                if name == "1x":
                    labels_1x = native
                agree = float((native == labels_1x).mean())
                unpainted = painted == 0
                accuracy = float((native[unpainted] == truth[unpainted]).mean())
                rows.append((scene, name, resample, meta["resolution"]["resampled"], agree,
                             accuracy, seconds, meta["timings"].get("total", 0.0)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="1x view side in pixels")
    parser.add_argument("--time-limit", type=float, default=60.0, help="training seconds")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--scenes", nargs="+", choices=SCENES, default=SCENES)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = [row for scene in args.scenes for row in run_scene(scene, args)]
    print(f"{'scene':>8} {'view':>5} {'resample':>8} {'resampled':>9} {'agree 1x':>8} "
          f"{'accuracy':>8} {'wall s':>6} {'engine s':>8}")
    for scene, name, resample, done, agree, accuracy, wall, engine in rows:
        print(f"{scene:>8} {name:>5} {str(resample):>8} {str(done):>9} {agree:8.2%} "
              f"{accuracy:8.2%} {wall:6.2f} {engine:8.2f}")
    for scene in args.scenes:
        goal = all(row[4] >= 0.97 for row in rows if row[0] == scene and row[2])
        print(f"{scene}: goal (agreement >= 97% at 2x and 0.5x, resampled) "
              f"{'met' if goal else 'missed'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
