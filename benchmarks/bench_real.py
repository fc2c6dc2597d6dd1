"""Benchmark: the unsupervised engines on real images with human ground truth, beside the
obvious baselines run in the same process on the same images.

    python benchmarks/bench_real.py                          # both sets, every image, seed 0
    python benchmarks/bench_real.py --set bsds --limit 10 --seeds 0,1,2
    python benchmarks/bench_real.py --set dsb --methods otsu,backprop --json out.json

Data: ``../shared/data/real-dev`` (BSDS500 validation photographs, DSB2018 fluorescence nuclei;
see its README), read in place by ``real_data.py``. Scores: BSDS500 by the literature's mIoU
("all", with "fine" and "coarse"); DSB2018 by foreground IoU of two choices of foreground
labels: the best subset (exact: what a user who knew the answer would pick) and an automatic
rule (the label means split in two by Otsu's criterion, the brighter side), and by
instance F1 at IoU 0.5 of the automatic foreground's connected components, and of its
objects with touching ones split (the segmenter's ``bright_objects``). A threshold (Otsu)
has one foreground, scored as both, and split the same way.

Methods: ``otsu`` (DSB: Otsu's threshold after a Gaussian blur of sigma 1),
``best-threshold`` (DSB: the same blur with each image's best global threshold, chosen with
the ground truth: not a method, the ceiling of every one-threshold method), ``felzenszwalb``,
``slic`` and ``kmeans`` (scikit-image / SciPy, each at every setting of a small grid; the
summary shows each one's **best single setting on the same images**, which flatters the
baseline), ``backprop`` (this package's segmenter with its defaults, per seed), ``tip``
(the same with the TIP 2020 continuity setting: no superpixel vote, continuity loss weight 1
as in that paper's script) and ``reference`` (the ICASSP 2018 loop of ``bench_backprop.py``:
Kanezaki's net and SLIC 10,000, its own stop at <= 3 labels or ``--ref-max-iter``, 1000 by
default as in the script). Each call is timed whole (normalisation and superpixels
included; the import of torch and one warm-up run are not). Peak memory is the process's
(``resource.getrusage``), so it is the largest of the methods run.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data  # noqa: E402 - the loaders beside this script

#: The TIP 2020 script's continuity weight (stepsize_con).
TIP_W_CON = 1.0
#: The ICASSP 2018 script's maxIter.
REFERENCE_MAX_ITER = 1000

#: Baseline settings tried on every image; the summary keeps each method's best one.
GRIDS: dict[str, list[dict[str, float]]] = {
    "felzenszwalb": [{"scale": s, "sigma": 0.8, "min_size": m}
                     for s in (100, 200, 300, 1000) for m in (20, 100)],
    "slic": [{"n_segments": n, "compactness": 10.0} for n in (8, 16, 32, 64, 128)],
    "kmeans": [{"k": k} for k in (3, 4, 6, 8, 12)],
}


def baseline(method: str, image: np.ndarray, setting: dict[str, float]) -> np.ndarray:
    from skimage import segmentation

    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    if method == "felzenszwalb":
        return segmentation.felzenszwalb(rgb, channel_axis=-1, **setting)
    if method == "slic":
        return segmentation.slic(rgb, start_label=1, channel_axis=-1, **setting)
    from scipy.cluster.vq import kmeans2
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb).reshape(-1, 3)
    _, labels = kmeans2(lab, int(setting["k"]), minit="++", seed=0)
    return labels.reshape(image.shape[:2])


def otsu(image: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(image[..., 0].astype(float), 1.0)
    return smooth > threshold_otsu(smooth)


def best_threshold(image: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """The global threshold of the blurred image (as Otsu's) with the best foreground IoU on
    this image, chosen **with the truth** among 200 quantiles: the ceiling of any method
    that decides one threshold per image, shown to size the nuclei goals."""
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(image[..., 0].astype(float), 1.0)
    levels = np.quantile(smooth, np.linspace(0.3, 0.999, 200))
    return max((smooth > t for t in levels), key=lambda fg: real_data.iou(fg, nuclei))


#: ``--param NAME=VALUE`` settings the segmenter runs with instead of its defaults.
OVERRIDES: dict[str, object] = {}


def backprop(image: np.ndarray, seed: int, tip: bool = False) -> np.ndarray:
    from dataclasses import replace

    from napari_unsupseg.core.backprop import BackpropParams, segment
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.base.params import from_mapping

    params = from_mapping(BackpropParams, {**OVERRIDES, "seed": seed})
    if tip:  # TIP 2020: the continuity loss instead of the superpixel vote
        params = replace(params, w_con=TIP_W_CON, preseg=replace(params.preseg, method="none"))
    return run_to_end(segment(image, params)).labels


def parse_override(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if value.lower() == "none":
        return name, None
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def reference(image: np.ndarray, seed: int, max_iter: int) -> tuple[np.ndarray, int]:
    from bench_backprop import run_reference

    run = run_reference(image, seed, max_iter, None)
    return run["labels"], run["iterations"]


def timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    labels = run()
    return labels, time.perf_counter() - start


# ------------------------------------------------------------------------------ scoring


def score_bsds(labels: np.ndarray, item: real_data.RealImage) -> dict[str, object]:
    maps = real_data.bsds_best_ious(labels, item.truths)
    return {"maps": maps, "all": float(np.concatenate(maps).mean())}


def score_dsb(labels: np.ndarray, item: real_data.RealImage) -> dict[str, object]:
    nuclei = item.instances > 0
    if labels.dtype == bool:  # a threshold: its foreground is what it found
        best = auto = labels
    else:
        best = real_data.best_foreground(labels, nuclei)
        auto = real_data.automatic_foreground(labels, item.image[..., 0])
    from napari_unsupseg.core.predict.objects import separate_objects

    # "objects": the automatic foreground with touching nuclei split, as the segmenter's
    # bright_objects and a trained model's objects are (a threshold's mask split the same way).
    return {"best": real_data.iou(best, nuclei), "auto": real_data.iou(auto, nuclei),
            "f1": real_data.instance_f1(auto, item.instances),
            "f1_objects": real_data.objects_f1(separate_objects(auto), item.instances)}


def runs(method: str, item: real_data.RealImage, seeds: list[int], ref_iter: int):
    """(setting name, labels, seconds, extra row fields) of every run of ``method``."""
    if method == "otsu":
        yield "blur 1", *timed(lambda: otsu(item.image)), {}
    elif method == "best-threshold":
        nuclei = item.instances > 0
        yield "with the truth", *timed(lambda: best_threshold(item.image, nuclei)), {}
    elif method in GRIDS:
        for setting in GRIDS[method]:
            name = ",".join(f"{k}={v:g}" for k, v in setting.items())
            yield name, *timed(lambda s=setting: baseline(method, item.image, s)), {}
    elif method in ("backprop", "tip"):
        for seed in seeds:
            run = functools.partial(backprop, item.image, seed, tip=method == "tip")
            yield f"seed {seed}", *timed(run), {}
    elif method == "reference":
        for seed in seeds:
            (labels, iterations), seconds = timed(
                functools.partial(reference, item.image, seed, ref_iter))
            yield f"seed {seed}", labels, seconds, {"iterations": iterations}
    else:
        raise SystemExit(f"unknown method {method!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("bsds", "dsb", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="First N images of each set.")
    parser.add_argument("--seeds", default="0", help="Seeds of the stochastic methods.")
    parser.add_argument("--methods", default="otsu,felzenszwalb,slic,kmeans,backprop,tip",
                        help="Also: reference (slow on a CPU) and, on the nuclei, "
                        "best-threshold (each image's best global threshold, chosen with "
                        "the truth: the ceiling of a threshold).")
    parser.add_argument("--ref-max-iter", type=int, default=REFERENCE_MAX_ITER)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="A segmenter setting other than its default (for comparisons; "
                        "'none' for an empty one), e.g. --param train_pixels=none.")
    parser.add_argument("--scaling", action="store_true",
                        help="Only the cost per megapixel of the segmenter's defaults, on the "
                        "first BSDS photograph enlarged to 0.15-4 MP.")
    args = parser.parse_args()
    if args.scaling:
        return scaling()
    OVERRIDES.update(parse_override(text) for text in args.param)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    if {"backprop", "tip", "reference"} & set(methods):  # import torch and warm up, untimed
        backprop(np.zeros((32, 32, 3), np.uint8) + 1, 0)
    rows: list[dict[str, object]] = []
    for name in ("bsds", "dsb") if args.set == "both" else (args.set,):
        loader, score = (real_data.bsds, score_bsds) if name == "bsds" else (real_data.dsb,
                                                                              score_dsb)
        for item in loader(args.limit):
            for method in methods:
                if method in ("otsu", "best-threshold") and name == "bsds":
                    continue
                found = runs(method, item, seeds, args.ref_max_iter)
                for setting, labels, seconds, extra in found:
                    scores = score(labels, item)
                    rows.append({"set": name, "image": item.name, "method": method,
                                 "setting": setting, "seconds": seconds,
                                 "size": list(labels.shape[:2]),
                                 "labels": int(len(np.unique(labels))), **scores, **extra})
                    shown = {k: round(v, 3) for k, v in scores.items() if isinstance(v, float)}
                    print(f"{name} {item.name[:12]} {labels.shape[0]}x{labels.shape[1]} "
                          f"{method:>12} {setting:<32} {shown} {rows[-1]['labels']} labels "
                          f"{seconds:.2f} s {extra or ''}", flush=True)
    summarise(rows)
    if args.json:
        for row in rows:
            row.pop("maps", None)
        args.json.write_text(json.dumps(rows, indent=1))


def scaling(megapixels: tuple[float, ...] = (0.154, 0.5, 1.0, 2.0, 4.0)) -> None:
    """Seconds per megapixel of the defaults on one photograph enlarged (bilinear) to each
    size, two runs each (the faster counted), and the ratio to the original size's."""
    from skimage.transform import resize

    photo = next(real_data.bsds(1)).image
    backprop(photo[:32, :32], 0)  # import torch, warm up
    first = None
    for mp in megapixels:
        factor = (mp * 1e6 / (photo.shape[0] * photo.shape[1])) ** 0.5
        size = (round(photo.shape[0] * factor), round(photo.shape[1] * factor))
        image = (resize(photo, size, order=1, anti_aliasing=False) * 255).astype(np.uint8)
        seconds = min(timed(functools.partial(backprop, image, 0))[1] for _ in range(2))
        per_mp = seconds / (size[0] * size[1] / 1e6)
        first = first or per_mp
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.2f} MP): {seconds:.2f} s, "
              f"{per_mp:.2f} s/MP ({per_mp / first:.2f}x the first), peak RSS so far "
              f"{peak:.0f} MiB", flush=True)


def summarise(rows: list[dict[str, object]]) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups: dict[tuple[str, str, str], list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        groups[(row["set"], row["method"], row["setting"])].append(row)
    for name in sorted({row["set"] for row in rows}):
        mine = [r for r in rows if r["set"] == name]
        sizes = sorted({(tuple(r["size"]), r["image"]) for r in mine})
        counts = defaultdict(int)
        for size, _ in sizes:
            counts[size] += 1
        print(f"\n{name}: {len(sizes)} images ("
              + ", ".join(f"{h}x{w}: {n}" for (h, w), n in sorted(counts.items()))
              + f"); peak resident memory of the process {peak:.0f} MiB")
        best: dict[str, tuple[float, str]] = {}
        for (set_name, method, setting), group in sorted(groups.items()):
            if set_name != name:
                continue
            line, key = _line(name, group)
            print(f"  {method:>12} {setting:<32} {line}")
            if method in GRIDS and (method not in best or key > best[method][0]):
                best[method] = (key, setting)
        if best:
            chosen = "; ".join(f"{m} {s} ({k:.3f})" for m, (k, s) in best.items())
            print(f"  best setting of each baseline's grid, chosen on these same images: {chosen}")
        _spread(name, mine)
        if name == "dsb":
            _against_otsu(mine)
        _seconds_by_size(mine)


def _line(name: str, group: list[dict[str, object]]) -> tuple[str, float]:
    """One summary line of a method's setting; and its key score (BSDS all, DSB auto IoU)."""
    seconds = float(np.mean([r["seconds"] for r in group]))
    tail = f"median {np.median([r['labels'] for r in group]):.0f} labels, {seconds:.2f} s/image"
    if "iterations" in group[0]:
        tail += f", median {np.median([r['iterations'] for r in group]):.0f} iterations"
    if name == "bsds":
        summary = real_data.bsds_summary([r["maps"] for r in group])
        worst = min(group, key=lambda r: r["all"])
        text = " ".join(f"{k} {v:.3f}" for k, v in summary.items())
        return f"{text}, worst {worst['all']:.3f} ({worst['image']}), {tail}", summary["all"]
    auto = [r["auto"] for r in group]
    best = [r["best"] for r in group]
    text = (f"fg IoU auto {np.mean(auto):.3f} (worst {np.min(auto):.3f}), best subset "
            f"{np.mean(best):.3f} (worst {np.min(best):.3f}), F1@0.5 "
            f"{np.mean([r['f1'] for r in group]):.3f} (touching ones split "
            f"{np.mean([r['f1_objects'] for r in group]):.3f}), {tail}")
    return text, float(np.mean(auto))


def _spread(name: str, rows: list[dict[str, object]]) -> None:
    """Per image, the difference between the best and the worst seed (seeded methods)."""
    key = "all" if name == "bsds" else "auto"
    by_image: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if str(row["setting"]).startswith("seed"):
            by_image[(row["method"], row["image"])].append(float(row[key]))
    for method in sorted({m for m, _ in by_image}):
        spreads = {image: max(v) - min(v) for (m, image), v in by_image.items()
                   if m == method and len(v) > 1}
        if spreads:
            worst = max(spreads, key=spreads.get)
            print(f"  {method}: {key} spread between seeds per image (max - min): mean "
                  f"{np.mean(list(spreads.values())):.3f}, median "
                  f"{np.median(list(spreads.values())):.3f}, largest {spreads[worst]:.3f} "
                  f"({worst[:12]})")


def _against_otsu(rows: list[dict[str, object]]) -> None:
    """Per seeded run, image by image against Otsu's on the same image: the mean gain, the
    images more than 0.05 below it, and the F1 against Otsu's (the nuclei goals)."""
    otsu = {r["image"]: r for r in rows if r["method"] == "otsu"}
    seeded = defaultdict(list)
    for row in rows:
        if str(row["setting"]).startswith("seed") and row["image"] in otsu:
            seeded[(row["method"], row["setting"])].append(row)
    for (method, setting), group in sorted(seeded.items()):
        gain = np.array([r["auto"] - otsu[r["image"]]["auto"] for r in group])
        f1 = np.mean([r["f1"] for r in group]) - np.mean([otsu[r["image"]]["f1"] for r in group])
        split = (np.mean([r["f1_objects"] for r in group])
                 - np.mean([otsu[r["image"]]["f1_objects"] for r in group]))
        worst = group[int(np.argmin(gain))]["image"]
        print(f"  {method} {setting} vs otsu: fg IoU {gain.mean():+.3f} on average, "
              f"{int((gain < -0.05).sum())} of {len(gain)} images more than 0.05 below "
              f"(worst {gain.min():+.3f}, {worst[:12]}), F1 {f1:+.3f} (split {split:+.3f})")


def _seconds_by_size(rows: list[dict[str, object]]) -> None:
    """Mean seconds per image of each method (all its settings) by image size."""
    sizes = sorted({tuple(r["size"]) for r in rows})
    header = "".join(f"{h}x{w:<10}" for h, w in sizes)
    print(f"  seconds per image by size: {'':>4}{header}")
    for method in sorted({r["method"] for r in rows}):
        cells = []
        for size in sizes:
            times = [r["seconds"] for r in rows if r["method"] == method
                     and tuple(r["size"]) == size]
            cells.append(f"{np.mean(times):<14.2f}" if times else f"{'-':<14}")
        print(f"  {method:>30} {''.join(cells)}")


if __name__ == "__main__":
    main()
