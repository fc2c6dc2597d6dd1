"""Loaders and scores for the real development images in ``../shared/data/real-dev``
(read in place: nothing is copied into the repository).

- BSDS500 validation photographs with every annotator's segmentation, scored by the mIoU of
  the unsupervised-segmentation literature (Kanezaki 2018, Kim et al. TIP 2020): the
  prediction's connected components; for every segment of every annotator's map its best IoU
  over those components; the mean over all segments of all images pooled ("all"), or over
  one map per image: the one with the most segments ("fine") or the fewest ("coarse").
- DSB2018 fluorescence nuclei with instance masks, scored by foreground IoU and instance F1 at
  IoU 0.5 (a predicted object and a nucleus match when their IoU exceeds 0.5).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Beside the checkout by default; ``REAL_DEV`` points elsewhere (a copy on another machine).
ROOT = Path(os.environ.get(
    "REAL_DEV", Path(__file__).resolve().parents[2] / "shared" / "data" / "real-dev"))


@dataclass
class RealImage:
    name: str
    image: np.ndarray  # (Y, X, C)
    truths: list[np.ndarray] = field(default_factory=list)  # BSDS: one map per annotator
    instances: np.ndarray | None = None  # DSB: 0 = background, 1..N = nuclei


def bsds(limit: int | None = None, root: Path = ROOT) -> Iterator[RealImage]:
    """The BSDS500 validation images in name order, with every annotator's map."""
    from PIL import Image
    from scipy.io import loadmat

    folder = root / "bsds500-val"
    for path in sorted((folder / "images").glob("*.jpg"))[:limit]:
        entries = loadmat(folder / "groundTruth" / f"{path.stem}.mat")["groundTruth"][0]
        truths = [np.asarray(entry["Segmentation"][0, 0]) for entry in entries]
        yield RealImage(path.stem, np.asarray(Image.open(path).convert("RGB")), truths)


def dsb(limit: int | None = None, root: Path = ROOT) -> Iterator[RealImage]:
    """The DSB2018 fluorescence images (grey, one channel) and their instance masks, in name
    order (which mixes the image sizes, so that the first few already show each)."""
    from PIL import Image

    folder = root / "dsb2018-fluo-dev"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in sorted(entry["id"] for entry in manifest)[:limit]:
        grey = np.asarray(Image.open(folder / "images" / f"{name}.png"))
        grey = grey[..., 0] if grey.ndim == 3 else grey  # R = G = B in this set
        labels = np.asarray(Image.open(folder / "labels" / f"{name}.png"))
        yield RealImage(name, grey[..., np.newaxis], instances=labels.astype(np.int64))


# ------------------------------------------------------------------------------ scores


def _ious(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every (truth id, prediction id) pair, ids compacted: (S, P)."""
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    t, p = t.ravel(), p.ravel()
    n_t, n_p = int(t.max()) + 1, int(p.max()) + 1
    inter = np.bincount(t * n_p + p, minlength=n_t * n_p).reshape(n_t, n_p).astype(float)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    return inter / np.maximum(union, 1)


def bsds_best_ious(pred: np.ndarray, truths: list[np.ndarray]) -> list[np.ndarray]:
    """Per annotator map: each segment's best IoU over the prediction's connected parts."""
    from skimage.measure import label

    parts = label(pred, connectivity=1, background=-1)
    return [_ious(truth, parts).max(axis=1) for truth in truths]


def bsds_summary(per_image: list[list[np.ndarray]]) -> dict[str, float]:
    """'all' (every segment of every map, pooled), 'fine' and 'coarse' (one map per image)."""
    every = np.concatenate([s for maps in per_image for s in maps])
    fine = np.concatenate([max(maps, key=len) for maps in per_image])
    coarse = np.concatenate([min(maps, key=len) for maps in per_image])
    return {"all": float(every.mean()), "fine": float(fine.mean()),
            "coarse": float(coarse.mean())}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def best_foreground(labels: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """The subset of labels whose union has the highest IoU with the nuclei (exact).

    IoU = sum(a_i) / (T + sum(s_i - a_i)) over the chosen labels (a_i nuclei pixels of label
    i, s_i its size, T all nuclei pixels). By Dinkelbach's argument the best subset is the
    labels whose purity a_i / s_i exceeds IoU* / (1 + IoU*), a threshold below 1/2: so it is
    a prefix of the labels sorted by purity, and scanning every prefix finds it. (Taking the
    labels more than half nuclei, which maximises pixel accuracy, can miss it.)"""
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    inside = np.bincount(inverse, weights=nuclei.ravel().astype(float))
    size = np.bincount(inverse).astype(float)
    order = np.argsort(-inside / size, kind="stable")
    prefix_iou = np.cumsum(inside[order]) / (nuclei.sum() + np.cumsum(size[order] - inside[order]))
    chosen = np.zeros(len(size), bool)
    chosen[order[: int(np.argmax(prefix_iou)) + 1]] = True
    return chosen[inverse].reshape(labels.shape)


def automatic_foreground(labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The labels a user would call bright, without the answer: the package's own rule
    (``bright_objects``: the bright side of an Otsu split of the label means)."""
    from napari_unsupseg.core.backprop.bright import bright_labels

    return bright_labels(labels, image)


def instance_f1(foreground: np.ndarray, instances: np.ndarray) -> float:
    """F1 at IoU 0.5 of the foreground's connected components against the true nuclei."""
    from skimage.measure import label

    return objects_f1(label(foreground, connectivity=1), instances)


def objects_f1(objects: np.ndarray, instances: np.ndarray) -> float:
    """F1 at IoU 0.5 of predicted objects (0 = background) against the true ones: an
    object and a nucleus match when their IoU exceeds 0.5 (such pairs are one-to-one)."""
    n_pred = len(np.unique(objects[objects > 0]))
    n_true = len(np.unique(instances[instances > 0]))
    if n_pred == 0 or n_true == 0:
        return float(n_pred == n_true)
    matched = int((_ious(instances, objects)[1:, 1:] > 0.5).sum())
    return 2 * matched / (n_pred + n_true)