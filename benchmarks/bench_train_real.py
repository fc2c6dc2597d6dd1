"""Training from painted labels on real images, beside the classic peers.

Cases (``../shared/data/real-dev``, see ``real_data.py``):

1. ``dsb-dense``: two DSB2018 fluorescence images (the first two 256 x 256 images by name)
   painted densely, every pixel: background 1, nuclei 2 (the pixels where two true nuclei
   touch are painted background, as a user separating them with the background brush
   would). Applied to every other 256 x 256 image of the set (37 images).
2. ``dsb-strokes``: one image (the first 256 x 256) with strokes along the edges of 12
   nuclei, as the dock's hint asks: a 1-pixel ring two pixels inside each nucleus (class 2)
   and a 1-pixel ring two pixels outside it (class 1), plus 12 background lines (1 x 24
   pixels) in the open, 5 pixels or more from any nucleus: about 2.5% of the pixels.
   Applied to the same 37 images.
3. ``bsds-strokes``: 10 BSDS500 validation photographs (the first 10 by name), object vs
   background: the object is the segment under the image's centre in the coarsest human
   map. Strokes along its edge on both sides: 1-pixel arcs 4 pixels inside (object, 2)
   and outside (background, 1), kept within 6 discs of radius 30 on the edge. Scored on the
   same image's unpainted pixels (object IoU).

4. ``dsb-update``: the loop of paint, train, look. The strokes of case 2 on 6 of the 12
   nuclei, trained with the defaults; then the other 6 painted and training continued
   from the model in memory (as the dock does) with previews every 3 s, as the dock
   asks: the seconds until the first preview made after the new strokes, and the scores
   of the model after 5 s of continued training.

Methods: ``unet`` (``core.train.train`` with its defaults, then ``core.predict.predict``;
instances are the model's ``objects`` output when it has one, else the connected parts of
class 2), ``rf`` (scikit-learn's random forest, 100 trees of depth 10, on
``skimage.feature.multiscale_basic_features`` of each image scaled by its own 1-99th
percentiles, fitted on the same painted pixels: the ilastik / APOC recipe), ``otsu``
(Gaussian blur of sigma 1, Otsu's threshold, connected parts; no training).

Scores: foreground IoU (mean over the images it is applied to) and instance F1 at IoU 0.5
(``real_data.objects_f1``'s matching, on the instance images); BSDS: the object's IoU.
Times: training seconds (``--time-limit`` caps them, as the dock's setting does), and the
prediction seconds per image. Peak resident memory of the whole process.

Usage::

    python benchmarks/bench_train_real.py                          # every case, method
    python benchmarks/bench_train_real.py --cases dsb-dense --time-limit 20
    python benchmarks/bench_train_real.py --apply-limit 10 --threads 1
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import dataclass

import numpy as np
from real_data import bsds, dsb, objects_f1

CASES = ("dsb-dense", "dsb-strokes", "bsds-strokes", "dsb-update")
METHODS = ("unet", "rf", "otsu")


@dataclass
class Case:
    train_images: list[np.ndarray]
    painted: list[np.ndarray]
    test_images: list[np.ndarray]
    truths: list[np.ndarray]  # instance images (DSB) or object masks (BSDS)
    scored: list[np.ndarray | None]  # pixels scored (None: all)


def _rings(mask: np.ndarray, inside: float, outside: float) -> tuple[np.ndarray, np.ndarray]:
    """1-pixel rings at a distance ``inside`` within the mask and ``outside`` beyond it."""
    from scipy import ndimage as ndi

    din = ndi.distance_transform_edt(mask)
    dout = ndi.distance_transform_edt(~mask)
    return (din > inside) & (din <= inside + 1), (dout > outside) & (dout <= outside + 1)


def dsb_case(kind: str, apply_limit: int | None) -> Case:
    from scipy import ndimage as ndi

    square = [r for r in dsb() if r.image.shape[:2] == (256, 256)]
    train, rest = (square[:2], square[2:]) if kind == "dense" else (square[:1], square[2:])
    rest = rest[:apply_limit]
    painted = []
    for r in train:
        labels = r.instances
        if kind == "dense":
            # Where two nuclei touch, the background brush separates them.
            big = np.where(labels > 0, labels, labels.max() + 1)
            touching = (labels > 0) & ((ndi.maximum_filter(labels, 3) > labels)
                                       | (ndi.minimum_filter(big, 3) < labels))
            paint = np.where((labels > 0) & ~touching, 2, 1).astype(np.uint8)
        else:
            paint = np.zeros(labels.shape, np.uint8)
            rng = np.random.default_rng(0)
            ids = rng.permutation(np.unique(labels[labels > 0]))[:12]
            for i in ids:
                inner, outer = _rings(labels == i, 2, 2)
                paint[outer & (labels == 0)] = 1
                paint[inner] = 2
            # Background lines in the open, where no nucleus is within 5 pixels.
            open_space = ndi.distance_transform_edt(labels == 0) > 5
            lines = 0
            while lines < 12:
                y, x = rng.integers(0, 256, 2)
                if x + 24 <= 256 and open_space[y, x:x + 24].all():
                    paint[y, x:x + 24] = 1
                    lines += 1
        painted.append(paint)
    return Case([r.image for r in train], painted, [r.image for r in rest],
                [r.instances for r in rest], [None] * len(rest))


def bsds_case(limit: int) -> Case:
    from scipy import ndimage as ndi

    images, painted, truths, scored = [], [], [], []
    rng = np.random.default_rng(0)
    for r in bsds(limit):
        coarse = min(r.truths, key=lambda t: len(np.unique(t)))
        h, w = coarse.shape
        obj = coarse == coarse[h // 2, w // 2]
        inner, outer = _rings(obj, 4, 4)
        edge = obj & ~ndi.binary_erosion(obj)
        ys, xs = np.nonzero(edge)
        keep = np.zeros(obj.shape, bool)
        yy, xx = np.mgrid[:h, :w]
        for k in rng.choice(len(ys), 6, replace=False):
            keep |= (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= 30 ** 2
        paint = np.zeros(obj.shape, np.uint8)
        paint[outer & keep] = 1
        paint[inner & keep] = 2
        images.append(r.image)
        painted.append(paint)
        truths.append(obj)
        scored.append(paint == 0)
    return Case(images, painted, images, truths, scored)


def run_unet(case: Case, time_limit: float | None, threads: int) -> tuple[list, list, dict]:
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.train import TrainParams, train

    params = TrainParams(threads=threads)
    if time_limit is not None:
        params.time_limit = time_limit
    start = time.perf_counter()
    result = run_to_end(train(case.train_images, case.painted, params))
    trained = time.perf_counter() - start
    classes, objects, info = _apply(case, result.model)
    meta = result.metadata
    info.update(train_s=trained, note=f"{meta['epochs_run']} epochs, {meta['steps']} steps, "
                                      f"best {meta['best_epoch']}, {meta['stop_reason']}")
    return classes, objects, info


def run_update(case: Case, threads: int) -> tuple[list, list, dict]:
    from napari_unsupseg.core.base.engine import RunControl, run_to_end
    from napari_unsupseg.core.train import TrainParams, train

    full = case.painted[0]
    half = full.copy()
    rows = np.nonzero(full.any(axis=1))[0]
    half[rows[len(rows) // 2]:] = 0  # strokes of the bottom part come later
    first = run_to_end(train(case.train_images, [half], TrainParams(threads=threads)))
    start = time.perf_counter()
    seen: list[float] = []

    def on_progress(event) -> None:
        if event.preview is not None:
            seen.append(time.perf_counter() - start)

    result = run_to_end(train(case.train_images, [full], TrainParams(threads=threads,
                                                                     time_limit=5.0),
                              start=first.model, control=RunControl(3.0), preview=(0, 0)),
                        on_progress)
    updated = seen[1] if len(seen) > 1 else float("nan")
    classes, objects, info = _apply(case, result.model)
    info.update(train_s=time.perf_counter() - start,
                note=f"first updated preview after {updated:.1f} s")
    return classes, objects, info


def _apply(case: Case, model) -> tuple[list, list, dict]:
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.predict import PredictParams, predict

    classes, objects = [], []
    start = time.perf_counter()
    for image in case.test_images:
        out = run_to_end(predict(image, PredictParams(), model=model))
        classes.append(out.labels)
        objects.append(out.extras.get("objects"))
    return classes, objects, {"predict_s": (time.perf_counter() - start) / len(classes)}


def run_rf(case: Case) -> tuple[list, list, dict]:
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    from napari_unsupseg.core.base.images import normalize

    def features(image):
        return multiscale_basic_features(normalize(image), channel_axis=-1, sigma_min=1,
                                         sigma_max=16)

    start = time.perf_counter()
    xs, ys = [], []
    for image, paint in zip(case.train_images, case.painted, strict=True):
        f = features(image)
        xs.append(f[paint > 0])
        ys.append(paint[paint > 0])
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=-1, random_state=0)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    trained = time.perf_counter() - start
    start = time.perf_counter()
    classes = []
    for image in case.test_images:
        f = features(image)
        classes.append(forest.predict(f.reshape(-1, f.shape[-1])).reshape(image.shape[:2]))
    return classes, [None] * len(classes), {
        "train_s": trained, "predict_s": (time.perf_counter() - start) / len(classes),
        "note": f"{xs[0].shape[-1]} features"}


def run_otsu(case: Case) -> tuple[list, list, dict]:
    from skimage.filters import gaussian, threshold_otsu

    start = time.perf_counter()
    classes = []
    for image in case.test_images:
        grey = gaussian(image[..., 0].astype(float), 1)
        classes.append(np.where(grey > threshold_otsu(grey), 2, 1))
    return classes, [None] * len(classes), {
        "train_s": 0.0, "predict_s": (time.perf_counter() - start) / len(classes), "note": ""}


def score(case: Case, classes: list, objects: list, dsb_set: bool) -> tuple[float, float | None]:
    from skimage.measure import label

    ious, f1s = [], []
    for pred, obj, truth, scored in zip(classes, objects, case.truths, case.scored, strict=True):
        fg = pred == 2
        true_fg = truth > 0
        if scored is not None:
            fg, true_fg = fg & scored, true_fg & scored
        ious.append((fg & true_fg).sum() / max((fg | true_fg).sum(), 1))
        if dsb_set:
            f1s.append(objects_f1(obj if obj is not None else label(pred == 2, connectivity=1),
                                   truth))
    return float(np.mean(ious)), float(np.mean(f1s)) if f1s else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--time-limit", type=float, default=None,
                        help="Training time limit in seconds (default: TrainParams').")
    parser.add_argument("--apply-limit", type=int, default=None,
                        help="Apply to the first N other images only (default: all 37).")
    parser.add_argument("--threads", type=int, default=0,
                        help="Torch threads for training (0: the dock's default).")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'case':<14}{'method':<7}{'fg IoU':>8}{'F1@0.5':>8}{'train s':>9}"
          f"{'pred s/img':>11}  images  painted  note")
    for name in args.cases:
        case = bsds_case(10) if name == "bsds-strokes" else dsb_case(
            "strokes" if name == "dsb-update" else name[4:], args.apply_limit)
        painted = np.mean([(p > 0).mean() for p in case.painted])
        for method in args.methods:
            if method == "otsu" and name.startswith("bsds"):
                continue
            if name == "dsb-update" and method != "unet":
                continue
            if name == "dsb-update":
                classes, objects, info = run_update(case, args.threads)
            elif method == "unet":
                classes, objects, info = run_unet(case, args.time_limit, args.threads)
            else:
                classes, objects, info = (run_rf if method == "rf" else run_otsu)(case)
            fg, f1 = score(case, classes, objects, name.startswith("dsb"))
            f1_text = "" if f1 is None else f"{f1:.3f}"
            print(f"{name:<14}{method:<7}{fg:8.3f}{f1_text:>8}{info['train_s']:9.1f}"
                  f"{info['predict_s']:11.2f}  {len(classes):6d}  {painted:6.1%}  {info['note']}",
                  flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
