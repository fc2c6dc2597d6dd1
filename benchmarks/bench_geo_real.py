"""Benchmark: the remote-sensing path on a real, georeferenced multispectral scene with a
land-cover reference, beside the obvious baselines run on the same pixels.

    python benchmarks/bench_geo_real.py                        # the default scene, seed 0
    python benchmarks/bench_geo_real.py --seeds 0,1,2 --crop 256
    python benchmarks/bench_geo_real.py --image A.tif --labels B.tif --out /tmp/geo

Data: ``../shared/data/real-geo/strzegom-s2`` (a Sentinel-2 scene over the Strzegom
quarries, Poland, 2022-07-19: 401 x 401 pixels of 10 m, 10 bands, EPSG:32633, with its
authors' hand-drawn land-cover reference of 9 classes; see its README for the origin and
why it stays out of the repository: no licence is stated, benchmarking is welcomed), read
in place. The whole scene runs in well under a minute per method, so nothing is cropped
unless ``--crop`` asks. Any GeoTIFF and label raster on the same grid work
(label 0 = unlabelled, left out of every score; a ``classes.json`` beside the labels names
the classes). The reference covers about a third of the pixels: scores are on those.

Methods: ``backprop`` (this package's segmenter, its command line in a child process with
its defaults, per seed), ``preseg`` (the presegmentation command with its defaults),
``kmeans`` (scikit-learn on the standardised band values, k = the number of classes and a
small grid), ``felzenszwalb`` (scikit-image on the bands scaled to their 1-99 percentiles,
a small grid) and ``forest`` (a supervised reference point, not a competitor: a random
forest on Gaussian-smoothed bands and gradient magnitudes, trained on 1% of the labelled
pixels and scored on the other 99%). The grids' best settings are chosen on this same
scene, which flatters the baselines.

Score: Hungarian mIoU (``napari_unsupseg.core.review.scores.hungarian_iou``: one found
label per class, one-to-one; a class split in two only gets its better half) over the
classes present, and each class's IoU under that matching. Time: wall seconds per run
(for the commands: the whole child process, import of torch included). Peak memory: of
each child (its ``VmHWM``) and of this process (``ru_maxrss``) for the in-process methods.
Finally the first backprop result is vectorised (``napari-unsupseg geojson``) to a
GeoPackage with per-band statistics: polygon count, time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-geo" / "strzegom-s2"
KMEANS_K = (4, 6, 8, 12, 16)
FELZENSZWALB = [{"scale": s, "sigma": 0.5, "min_size": m} for s in (10, 30, 100, 300)
                for m in (10, 50)]
FOREST_FRACTION = 0.01


@dataclass
class Scene:
    image: np.ndarray  # (Y, X, C) float32, as stored
    truth: np.ndarray  # (Y, X) int64: 0 unlabelled, 1..T the classes present
    names: list[str]  # name of class t at index t - 1
    image_path: Path  # the GeoTIFF the commands read (the crop when cropped)


@dataclass
class Run:
    method: str
    setting: str
    labels: np.ndarray
    seconds: float
    peak_mib: float
    extra: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------------ data


def load_scene(image_path: Path, labels_path: Path, crop: int | None, out: Path) -> Scene:
    """The image and its reference; with ``crop`` the central CROP x CROP window, written
    as a GeoTIFF of its own (so that the commands read the same pixels)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(image_path) as src, rasterio.open(labels_path) as ref:
        if (src.width, src.height) != (ref.width, ref.height):
            raise SystemExit("the image and the labels are not on the same grid")
        window = None
        if crop and crop < min(src.width, src.height):
            window = Window((src.width - crop) // 2, (src.height - crop) // 2, crop, crop)
        bands = src.read(window=window)
        raw = ref.read(1, window=window)
        if window is not None:
            profile = {**src.profile, "width": crop, "height": crop,
                       "transform": src.window_transform(window)}
            image_path = out / f"{image_path.stem}_crop{crop}.tif"
            with rasterio.open(image_path, "w", **profile) as dst:
                dst.write(bands)
    raw = np.nan_to_num(raw).astype(np.int64)
    present = [int(v) for v in np.unique(raw) if v > 0]
    truth = np.zeros_like(raw)
    for index, value in enumerate(present, 1):  # absent classes would score 0 for nothing
        truth[raw == value] = index
    names_file = labels_path.with_name("classes.json")
    legend = json.loads(names_file.read_text()) if names_file.exists() else {}
    names = [legend.get(str(v), f"class {v}") for v in present]
    return Scene(np.moveaxis(bands, 0, -1).astype(np.float32), truth, names, image_path)


def standardised(image: np.ndarray) -> np.ndarray:
    flat = image.reshape(-1, image.shape[-1])
    return ((flat - flat.mean(0)) / np.maximum(flat.std(0), 1e-6)).reshape(image.shape)


def percentile_scaled(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (1, 99), axis=(0, 1))
    return np.clip((image - low) / np.maximum(high - low, 1e-6), 0, 1)


# ------------------------------------------------------------------------------ scores


def matched_ious(labels: np.ndarray, truth: np.ndarray) -> tuple[float, list[float]]:
    """Hungarian mIoU (the package's function) and each class's IoU under the matching."""
    from scipy.optimize import linear_sum_assignment

    from napari_unsupseg.core.review.scores import contingency, hungarian_iou

    _, compact = np.unique(labels, return_inverse=True)
    table = contingency(compact.reshape(labels.shape), truth)[:, 1:]
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    iou = table / np.maximum(union, 1)
    rows, cols = linear_sum_assignment(-iou)
    per_class = np.zeros(iou.shape[1])
    per_class[cols] = iou[rows, cols]
    miou = hungarian_iou(labels, truth)
    assert abs(miou - per_class.mean()) < 1e-9, (miou, per_class.mean())
    return miou, per_class.tolist()


# ------------------------------------------------------------------------------ methods


def command(args: list[str]) -> tuple[float, float, str]:
    """Run ``python -m napari_unsupseg.cli ARGS``: wall seconds, the child's peak MiB, its
    output (raises on failure).

    The peak is the child's own high-water mark (``VmHWM`` of ``/proc/PID/status``, read
    every 20 ms until it exits): its ``ru_maxrss`` would start from this process's size,
    which Linux carries over a fork and an exec.
    """
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "napari_unsupseg.cli", *args],
                                 stdout=log, stderr=subprocess.STDOUT, text=True)
        peak_kib = 0
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):  # exiting, or a zombie without VmHWM
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    if child.returncode:
        raise SystemExit(f"napari-unsupseg {' '.join(args)} failed:\n{output}")
    return seconds, peak_kib / 1024, output


def read_labels(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path))


def backprop(scene: Scene, seed: int, out: Path) -> Run:
    target = out / f"backprop_seed{seed}.tif"
    seconds, peak, _ = command(["backprop", str(scene.image_path), "-o", str(target),
                                "--quiet", "--seed", str(seed)])
    sidecar = json.loads(target.with_suffix(".json").read_text())
    return Run("backprop", f"seed {seed}", read_labels(target), seconds, peak,
               {"path": target, "engine_s": sidecar["timings"]["total"],
                "iterations": sidecar["iterations"], "stop": sidecar["stop_reason"]})


def preseg(scene: Scene, out: Path) -> Run:
    target = out / "preseg.tif"
    seconds, peak, _ = command(["preseg", str(scene.image_path), "-o", str(target),
                                "--quiet"])
    return Run("preseg", "defaults", read_labels(target), seconds, peak)


def in_process(method: str, setting: str, run: Callable[[], np.ndarray]) -> Run:
    start = time.perf_counter()
    labels = run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Run(method, setting, labels, seconds, peak)


def kmeans(image: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    pixels = standardised(image).reshape(-1, image.shape[-1])
    model = KMeans(n_clusters=k, n_init=3, random_state=0).fit(pixels)
    return model.labels_.reshape(image.shape[:2])


def felzenszwalb(image: np.ndarray, setting: dict[str, float]) -> np.ndarray:
    from skimage.segmentation import felzenszwalb as segment

    with warnings.catch_warnings():  # "third dimension of 10 ... multichannel": it is
        warnings.simplefilter("ignore", RuntimeWarning)
        return segment(percentile_scaled(image), channel_axis=-1, **setting)


def filter_features(image: np.ndarray) -> np.ndarray:
    """Per band: the value smoothed at sigma 0, 1, 2, 4 and the gradient magnitude at 1, 2."""
    from scipy import ndimage as ndi

    scaled = standardised(image)
    features = []
    for band in np.moveaxis(scaled, -1, 0):
        features.append(band)
        features += [ndi.gaussian_filter(band, s) for s in (1, 2, 4)]
        features += [ndi.gaussian_gradient_magnitude(band, s) for s in (1, 2)]
    return np.stack(features, axis=-1)


def forest(scene: Scene, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The forest's labels, and the mask of the pixels it was trained on."""
    from sklearn.ensemble import RandomForestClassifier

    features = filter_features(scene.image)
    labelled = np.flatnonzero(scene.truth.ravel() > 0)
    rng = np.random.default_rng(seed)
    train = rng.choice(labelled, max(int(FOREST_FRACTION * labelled.size), 1), replace=False)
    flat = features.reshape(-1, features.shape[-1])
    model = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    model.fit(flat[train], scene.truth.ravel()[train])
    trained = np.zeros(scene.truth.size, bool)
    trained[train] = True
    return model.predict(flat).reshape(scene.truth.shape), trained.reshape(scene.truth.shape)


def vectorise(scene: Scene, labels_path: Path, out: Path) -> tuple[int, float, float]:
    """Polygons of a label GeoTIFF to a GeoPackage with band statistics: count, s, MiB."""
    import pyogrio

    target = out / f"{labels_path.stem}.gpkg"
    target.unlink(missing_ok=True)
    seconds, peak, _ = command(["geojson", str(labels_path), "-o", str(target),
                                "--image", str(scene.image_path)])
    count = int(pyogrio.read_info(target)["features"])
    return count, seconds, peak


# ------------------------------------------------------------------------------ report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "image_20220719.tif")
    parser.add_argument("--labels", type=Path, default=ROOT / "labels_20220719.tif")
    parser.add_argument("--crop", type=int, default=None,
                        help="Only the central CROP x CROP window (a GeoTIFF of its own).")
    parser.add_argument("--seeds", default="0", help="Seeds of backprop and the forest.")
    parser.add_argument("--methods", default="backprop,preseg,kmeans,felzenszwalb,forest")
    parser.add_argument("--out", type=Path, default=None,
                        help="Folder for the label rasters and the GeoPackage "
                        "(default: a temporary one).")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as temporary:
        out = args.out or Path(temporary)
        out.mkdir(parents=True, exist_ok=True)
        scene = load_scene(args.image, args.labels, args.crop, out)
        report(scene, methods, seeds, out)


def report(scene: Scene, methods: list[str], seeds: list[int], out: Path) -> None:
    height, width, bands = scene.image.shape
    labelled = int((scene.truth > 0).sum())
    n_classes = len(scene.names)
    print(f"scene {scene.image_path.name}: {height}x{width} pixels, {bands} bands; "
          f"{labelled} labelled pixels ({labelled / scene.truth.size:.0%}), "
          f"{n_classes} classes", flush=True)
    runs: list[Run] = []
    for method in methods:
        if method == "backprop":
            runs += [backprop(scene, seed, out) for seed in seeds]
        elif method == "preseg":
            runs.append(preseg(scene, out))
        elif method == "kmeans":
            for k in sorted({n_classes, *KMEANS_K}):
                runs.append(in_process("kmeans", f"k={k}", lambda k=k: kmeans(scene.image, k)))
        elif method == "felzenszwalb":
            for setting in FELZENSZWALB:
                name = ",".join(f"{k}={v:g}" for k, v in setting.items())
                runs.append(in_process("felzenszwalb", name,
                                       lambda s=setting: felzenszwalb(scene.image, s)))
        elif method == "forest":
            for seed in seeds:
                trained: list[np.ndarray] = []

                def fit(seed: int = seed, trained: list[np.ndarray] = trained) -> np.ndarray:
                    labels, mask = forest(scene, seed)
                    trained.append(mask)
                    return labels

                run = in_process("forest", f"1% seed {seed}", fit)
                run.extra["trained"] = trained[0]
                runs.append(run)
        else:
            raise SystemExit(f"unknown method {method!r}")
        for run in runs:
            if "miou" not in run.extra:
                truth = scene.truth
                if "trained" in run.extra:  # score the forest on the pixels it did not see
                    truth = np.where(run.extra["trained"], 0, truth)
                run.extra["miou"], run.extra["per_class"] = matched_ious(run.labels, truth)
                print(f"  {run.method:>12} {run.setting:<30} mIoU {run.extra['miou']:.3f} "
                      f"{len(np.unique(run.labels)):>6} labels {run.seconds:7.2f} s "
                      f"{run.peak_mib:6.0f} MiB", flush=True)
    table(scene, runs)
    first = next((r for r in runs if r.method == "backprop"), None)
    if first is not None:
        count, seconds, peak = vectorise(scene, first.extra["path"], out)
        print(f"\nvectorised backprop {first.setting} to a GeoPackage with band statistics: "
              f"{count} polygons, {seconds:.2f} s, peak {peak:.0f} MiB (child)")


def table(scene: Scene, runs: list[Run]) -> None:
    """Each method's runs (grids: the best setting and the k = classes one), per class."""
    shown: list[Run] = []
    for method in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == method]
        if method in ("kmeans", "felzenszwalb"):
            best = max(mine, key=lambda r: r.extra["miou"])
            best.setting += " (best)"
            shown.append(best)
            same_k = next((r for r in mine if r.setting == f"k={len(scene.names)}"), None)
            if same_k is not None and same_k is not best:
                shown.append(same_k)
        else:
            shown += mine
    short = [name[:10] for name in scene.names]
    print(f"\n{'method':>12} {'setting':<40} {'mIoU':>5} {'labels':>6} {'s':>7} "
          f"{'MiB':>6}  " + " ".join(f"{n:>10}" for n in short))
    for run in shown:
        cells = " ".join(f"{v:>10.3f}" for v in run.extra["per_class"])
        print(f"{run.method:>12} {run.setting:<40} {run.extra['miou']:5.3f} "
              f"{len(np.unique(run.labels)):>6} {run.seconds:7.2f} {run.peak_mib:6.0f}  "
              f"{cells}")
    for run in (r for r in runs if r.method == "backprop"):
        print(f"backprop {run.setting}: {run.extra['engine_s']:.2f} s in the engine (its "
              f"sidecar: superpixels, training, labelling), iterations {run.extra['iterations']}"
              f", stopped: {run.extra['stop']}")
    print("MiB: the child's peak for the commands (backprop, preseg); this process's peak so "
          "far for the others. forest: supervised (1% of the labelled pixels), scored on "
          "the other 99%.")


if __name__ == "__main__":
    main()
