"""Benchmark of training from painted labels against the classic peer, a random forest.

Cases (synthetic images with exact ground truth, ``core.synthetic``):

1. ``dense``: a 512 x 512 nuclei-like fluorescence image (16-bit, 150 nuclei), background (1) and
   nuclei (2) painted over the whole top half; foreground IoU on the bottom half.
   Goal: >= 0.90 (a random forest reaches about 0.88 on such data).
2. ``strokes``: the same image with a few strokes only (about 1% of the pixels: short
   lines inside some nuclei, longer ones in the background); foreground IoU on every
   unpainted pixel. Goal: >= 0.75 (random forest about 0.60).
3. ``mosaic``: a 256 x 256 textured mosaic of 7 regions, one disc of radius 6 painted in
   each region; mean IoU over the regions on the unpainted pixels. Goal: >= 0.95.
   ``mosaic_simple``: the same with the plainer mosaic of the sample data
   (``core.samples.mosaic``: flat colours, weaker textures).

Methods: ``unet`` - :func:`napari_unsupseg.core.train.train` with its defaults (the time
limit included), then :func:`~napari_unsupseg.core.predict.predict` with the trained
model (its note also gives the score of the same model without the island step of
:mod:`napari_unsupseg.core.models.islands`); ``rf`` -
``skimage.feature.multiscale_basic_features`` (intensity, edges, texture, sigma 1-16) and
a scikit-learn ``RandomForestClassifier`` (100 trees, depth 10) fitted on the same painted
pixels (the ilastik / APOC recipe). Each run is a fresh subprocess so that its peak
resident memory is its own. Goal: train + predict within 180 s per case on a 2-core CPU;
the first preview within 10 s (``first preview``: seconds from calling the engine to the
first progress event carrying a preview, previews every 3 s as in the widget).

Usage::

    python benchmarks/bench_train.py                 # all cases, both methods
    python benchmarks/bench_train.py --cases dense --time-limit 60

The load average is printed before and after: on a shared machine the times (not the
scores' order) depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CASES = ("dense", "strokes", "mosaic", "mosaic_simple")
METHODS = ("unet", "rf")
GOALS = {"dense": 0.90, "strokes": 0.75, "mosaic": 0.95, "mosaic_simple": 0.95}


def make_case(case: str, seed: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image (Y, X, C), painted labels, ground-truth classes, scored-pixel mask)."""
    from scipy import ndimage as ndi

    from napari_unsupseg.core.samples import mosaic
    from napari_unsupseg.core.samples.synthetic import nuclei, textured_mosaic

    rng = np.random.default_rng(seed)
    if case in ("mosaic", "mosaic_simple"):
        if case == "mosaic":
            image, truth = textured_mosaic(256, n_regions=7, seed=seed)
        else:
            image, truth = mosaic(256, n_regions=7, seed=seed)
        painted = np.zeros(truth.shape, np.uint8)
        yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
        for k in range(1, int(truth.max()) + 1):
            # Padded: the image's edge is outside the region, so the disc lies inside it.
            inside = ndi.distance_transform_edt(np.pad(truth == k, 1))[1:-1, 1:-1]
            cy, cx = np.unravel_index(np.argmax(inside), inside.shape)
            painted[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = k
        return image, painted, truth.astype(np.int32), painted == 0
    image, nuclei_labels = nuclei(512, n_nuclei=150, seed=seed)
    truth = np.where(nuclei_labels > 0, 2, 1).astype(np.int32)
    if case == "dense":
        painted = truth.astype(np.uint8)
        painted[256:] = 0
        scored = np.zeros(truth.shape, bool)
        scored[256:] = True
        return image, painted, truth, scored
    painted = np.zeros(truth.shape, np.uint8)
    inner = ndi.binary_erosion(nuclei_labels > 0, iterations=2)
    background = ndi.binary_erosion(nuclei_labels == 0, iterations=4)
    ids = rng.permutation(np.unique(nuclei_labels[nuclei_labels > 0]))[:20]
    for i in ids:  # a horizontal stroke through the middle of 20 nuclei, 3 px wide
        ys, _ = np.nonzero(nuclei_labels == i)
        row = int(np.median(ys))
        band = np.zeros(truth.shape, bool)
        band[row - 1:row + 2] = True
        painted[band & inner & (nuclei_labels == i)] = 2
    for _ in range(10):  # background strokes, 3 px wide, 80 px long
        y, x = rng.integers(20, 490, 2)
        band = np.zeros(truth.shape, bool)
        if rng.random() < 0.5:
            band[y - 1:y + 2, x:x + 80] = True
        else:
            band[y:y + 80, x - 1:x + 2] = True
        painted[band & background] = 1
    return image, painted, truth, painted == 0


def score(case: str, pred: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> float:
    if case.startswith("mosaic"):
        ious = [((pred == k) & (truth == k) & scored).sum() / (((pred == k) | (truth == k))
                                                               & scored).sum()
                for k in np.unique(truth)]
        return float(np.mean(ious))
    a, b = (pred == 2) & scored, (truth == 2) & scored
    return float((a & b).sum() / max((a | b).sum(), 1))


def run_unet(image, painted, time_limit: float | None) -> dict:
    from napari_unsupseg.core.base.engine import RunControl, run_to_end
    from napari_unsupseg.core.predict import PredictParams, predict
    from napari_unsupseg.core.train import TrainParams, train

    params = TrainParams() if time_limit is None else TrainParams(time_limit=time_limit)
    start = time.perf_counter()
    first = {}

    def on_progress(event) -> None:
        if event.preview is not None and "preview" not in first:
            first["preview"] = time.perf_counter() - start

    result = run_to_end(train([image], [painted], params, control=RunControl(3.0)),
                        on_progress)
    trained = time.perf_counter() - start
    pred = run_to_end(predict(image, PredictParams(), model=result.model)).labels
    predicted = time.perf_counter() - start - trained
    # The same model without its island step (core.islands): what the step adds.
    plain = run_to_end(predict(image, PredictParams(absorb_islands=False),
                               model=result.model)).labels
    meta = result.metadata
    return {"train_s": trained, "predict_s": predicted, "pred": pred, "plain": plain,
            "first_preview_s": first.get("preview"),
            "note": f"{meta['epochs_run']} epochs, {meta['steps']} steps, best "
                    f"{meta['best_epoch']}, {meta['stop_reason']}"}


def run_rf(image, painted) -> dict:
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    from napari_unsupseg.core.base.images import normalize

    start = time.perf_counter()
    features = multiscale_basic_features(normalize(image), channel_axis=-1, sigma_min=1,
                                         sigma_max=16)
    mask = painted > 0
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=-1,
                                    random_state=0)
    forest.fit(features[mask], painted[mask])
    trained = time.perf_counter() - start
    pred = forest.predict(features.reshape(-1, features.shape[-1])).reshape(painted.shape)
    return {"train_s": trained, "predict_s": time.perf_counter() - start - trained,
            "pred": pred, "first_preview_s": None, "note": f"{features.shape[-1]} features"}


def child(case: str, method: str, time_limit: float | None, seed: int) -> None:
    image, painted, truth, scored = make_case(case, seed)
    out = run_unet(image, painted, time_limit) if method == "unet" else run_rf(image, painted)
    pred = out.pop("pred")
    plain = out.pop("plain", None)
    if plain is not None:
        out["note"] += f"; {score(case, plain, truth, scored):.3f} without the island step"
    out.update(case=case, method=method, score=score(case, pred, truth, scored),
               painted_fraction=float((painted > 0).mean()),
               peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT=" + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--time-limit", type=float, default=None,
                        help="Training time limit in seconds (default: TrainParams').")
    parser.add_argument("--seed", type=int, default=100,
                        help="Generator seed of the images (default 100, one of the held-out "
                             "seeds of core.synthetic; the defaults were chosen on seeds 0-3).")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.time_limit, args.seed)
        return
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    for case in args.cases:
        for method in args.methods:
            command = [sys.executable, __file__, "--child", case, method, "--seed", str(args.seed)]
            if args.time_limit is not None:
                command += ["--time-limit", str(args.time_limit)]
            proc = subprocess.run(command, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT=")]
            if proc.returncode or not line:
                print(f"{case} {method} failed:\n{proc.stderr[-2000:]}")
                continue
            rows.append(json.loads(line[0].split("=", 1)[1]))
    print(f"{'case':<14}{'method':<7}{'score':>7}{'goal':>6}{'train s':>9}{'pred s':>8}"
          f"{'total s':>9}{'preview s':>10}{'peak MiB':>10}  painted  note")
    by_key = {(r["case"], r["method"]): r for r in rows}
    for r in rows:
        total = r["train_s"] + r["predict_s"]
        preview = "" if r["first_preview_s"] is None else f"{r['first_preview_s']:.1f}"
        print(f"{r['case']:<14}{r['method']:<7}{r['score']:7.3f}{GOALS[r['case']]:6.2f}"
              f"{r['train_s']:9.1f}{r['predict_s']:8.1f}{total:9.1f}{preview:>10}"
              f"{r['peak_rss_mib']:10.0f}  {r['painted_fraction']:6.1%}  {r['note']}")
    for case in args.cases:
        ours, peer = by_key.get((case, "unet")), by_key.get((case, "rf"))
        if ours and peer:
            ratio = (ours["train_s"] + ours["predict_s"]) / (peer["train_s"] + peer["predict_s"])
            print(f"{case}: unet - rf score {ours['score'] - peer['score']:+.3f}; time "
                  f"{ratio:.1f}x; peak memory {ours['peak_rss_mib'] / peer['peak_rss_mib']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
