"""Comparing two label images object by object (a reference and a candidate).

Objects are matched when their intersection over union exceeds 0.5; at that
threshold a match is unique, so no assignment problem needs solving. From the
matches come precision (matched / candidate objects), recall (matched / reference
objects), F1 and the mean IoU of the matched pairs.

Disagreements are sorted in four kinds, using where each object's pixels lie
(its *majority*: more than half of its pixels):

- **split**: a reference object holding the majority of two or more candidate objects;
- **merged**: a candidate object holding the majority of two or more reference objects;
- **missed**: an unmatched reference object that is neither split nor merged;
- **extra**: an unmatched candidate object that is neither a piece of a split nor a merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..base.errors import InputError
from .table import Table, check_labels, compact_ids

#: Disagreement kinds, in the order their objects are numbered in the map.
CATEGORIES = ("missed", "extra", "split", "merged")

#: One fixed colour (RGBA) per kind, for the disagreement layer.
CATEGORY_COLOURS = {
    "missed": (1.0, 0.2, 0.2, 1.0),
    "extra": (0.2, 0.5, 1.0, 1.0),
    "split": (1.0, 0.8, 0.0, 1.0),
    "merged": (0.8, 0.2, 1.0, 1.0),
}


@dataclass
class Comparison:
    """Figures, the per-object table and the disagreement map of one comparison."""

    n_reference: int
    n_candidate: int
    n_matched: int
    precision: float
    recall: float
    f1: float
    mean_iou: float
    threshold: float
    objects: Table = field(repr=False)
    disagreement: np.ndarray = field(repr=False)
    disagreement_table: Table = field(repr=False)

    def summary(self) -> dict[str, float | int]:
        """The figures as a plain dict (what the command line prints and writes)."""
        counts = {c: int(np.sum(self.disagreement_table["category"] == c)) for c in CATEGORIES}
        return {
            "n_reference": self.n_reference,
            "n_candidate": self.n_candidate,
            "n_matched": self.n_matched,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_iou": self.mean_iou,
            "iou_threshold": self.threshold,
            **{f"n_{c}": n for c, n in counts.items()},
        }


def _ids_and_areas(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact ids image, the original label of each id, and each id's area."""
    compact, values = compact_ids(labels)
    areas = np.bincount(compact.ravel())
    originals = np.arange(areas.size) if values is None else values[: areas.size]
    return compact, np.asarray(originals, np.int64), areas


def _pairs(ref: np.ndarray, cand: np.ndarray, n_cand: int) -> tuple[np.ndarray, ...]:
    """Every overlapping (reference id, candidate id, pixel count), from one bincount or sort."""
    both = (ref > 0) & (cand > 0)
    key = ref[both].astype(np.int64) * n_cand + cand[both]
    if int(ref.max(initial=0) + 1) * n_cand <= 1 << 24:
        counts = np.bincount(key)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    return keys // n_cand, keys % n_cand, counts


def compare(reference: object, candidate: object, threshold: float = 0.5) -> Comparison:
    """Match ``candidate`` objects to ``reference`` objects at IoU > ``threshold``."""
    reference = check_labels(reference, "The reference labels")
    candidate = check_labels(candidate, "The candidate labels")
    if reference.shape != candidate.shape:
        raise InputError(
            f"The reference labels have shape {reference.shape} and the candidate labels "
            f"{candidate.shape}; they must match pixel for pixel."
        )
    if not 0.5 <= threshold < 1.0:
        raise InputError(
            f"The IoU threshold must be at least 0.5 (so that an object matches at most one "
            f"other) and below 1; got {threshold}."
        )
    ref, ref_ids, ref_area = _ids_and_areas(reference)
    cand, cand_ids, cand_area = _ids_and_areas(candidate)
    for name, area in (("reference", ref_area), ("candidate", cand_area)):
        if not area[1:].any():
            raise InputError(f"The {name} labels hold no objects (every pixel is 0).")
    pr, pc, inter = _pairs(ref, cand, cand_area.size)
    union = ref_area[pr] + cand_area[pc] - inter
    iou = inter / union
    matched = iou > threshold

    ref_present = np.flatnonzero(ref_area)
    ref_present = ref_present[ref_present > 0]
    cand_present = np.flatnonzero(cand_area)
    cand_present = cand_present[cand_present > 0]
    n_ref, n_cand, n_match = ref_present.size, cand_present.size, int(matched.sum())

    # Majorities: a candidate mostly inside a reference object, and the reverse.
    cand_in_ref = inter * 2 > cand_area[pc]
    ref_in_cand = inter * 2 > ref_area[pr]
    split = np.bincount(pr[cand_in_ref], minlength=ref_area.size) >= 2
    merged = np.bincount(pc[ref_in_cand], minlength=cand_area.size) >= 2
    piece_of_split = np.zeros(cand_area.size, bool)
    piece_of_split[pc[cand_in_ref & split[pr]]] = True
    part_of_merge = np.zeros(ref_area.size, bool)
    part_of_merge[pr[ref_in_cand & merged[pc]]] = True

    ref_match = np.zeros(ref_area.size, np.int64)
    ref_match[pr[matched]] = pc[matched]
    cand_matched = np.zeros(cand_area.size, bool)
    cand_matched[pc[matched]] = True
    best_ref_iou = np.zeros(ref_area.size)
    np.maximum.at(best_ref_iou, pr, iou)
    best_cand_iou = np.zeros(cand_area.size)
    np.maximum.at(best_cand_iou, pc, iou)

    missed = (ref_area > 0) & (ref_match == 0) & ~split & ~part_of_merge
    extra = (cand_area > 0) & ~cand_matched & ~merged & ~piece_of_split
    missed[0] = extra[0] = split[0] = merged[0] = False

    objects = _object_table(
        ref_present, cand_present, ref_ids, cand_ids, ref_match, best_ref_iou, best_cand_iou,
        cand_matched, split, part_of_merge, merged, piece_of_split,
    )
    disagreement, table = _disagreement_map(
        ref, cand, ref_ids, cand_ids, missed=missed, extra=extra, split=split, merged=merged
    )
    precision = n_match / n_cand
    recall = n_match / n_ref
    return Comparison(
        n_reference=n_ref,
        n_candidate=n_cand,
        n_matched=n_match,
        precision=precision,
        recall=recall,
        f1=2 * n_match / (n_ref + n_cand),
        mean_iou=float(iou[matched].mean()) if n_match else 0.0,
        threshold=threshold,
        objects=objects,
        disagreement=disagreement,
        disagreement_table=table,
    )


def _object_table(
    ref_present: np.ndarray, cand_present: np.ndarray, ref_ids: np.ndarray,
    cand_ids: np.ndarray, ref_match: np.ndarray, best_ref_iou: np.ndarray,
    best_cand_iou: np.ndarray, cand_matched: np.ndarray, split: np.ndarray,
    part_of_merge: np.ndarray, merged: np.ndarray, piece_of_split: np.ndarray,
) -> Table:
    """One row per reference object, then one per unmatched candidate object."""
    ref_category = np.where(
        split[ref_present], "split",
        np.where(part_of_merge[ref_present], "merged",
                 np.where(ref_match[ref_present] > 0, "matched", "missed")),
    )
    lonely = cand_present[~cand_matched[cand_present]]
    cand_category = np.where(
        merged[lonely], "merged", np.where(piece_of_split[lonely], "split", "extra")
    )
    matched_to = ref_match[ref_present]
    return {
        "reference": np.concatenate([ref_ids[ref_present], np.zeros(lonely.size, np.int64)]),
        "candidate": np.concatenate(
            [np.where(matched_to > 0, cand_ids[matched_to], 0), cand_ids[lonely]]
        ),
        "iou": np.concatenate([best_ref_iou[ref_present], best_cand_iou[lonely]]),
        "matched": np.concatenate(
            [matched_to > 0, np.zeros(lonely.size, bool)]
        ),
        "category": np.concatenate([ref_category, cand_category]).astype(object),
    }


def _disagreement_map(
    ref: np.ndarray, cand: np.ndarray, ref_ids: np.ndarray, cand_ids: np.ndarray, *,
    missed: np.ndarray, extra: np.ndarray, split: np.ndarray, merged: np.ndarray,
) -> tuple[np.ndarray, Table]:
    """A label image with one object per disagreement, numbered kind by kind, and its table."""
    sources = {"missed": (ref, missed, ref_ids, True), "extra": (cand, extra, cand_ids, False),
               "split": (ref, split, ref_ids, True), "merged": (cand, merged, cand_ids, False)}
    out = np.zeros(ref.shape, np.uint32)
    rows: dict[str, list] = {"label": [], "category": [], "reference": [], "candidate": []}
    next_id = 1
    for category in CATEGORIES:
        image, chosen, originals, is_ref = sources[category]
        members = np.flatnonzero(chosen)
        if members.size == 0:
            continue
        lut = np.zeros(chosen.size, np.uint32)
        lut[members] = np.arange(next_id, next_id + members.size)
        painted = lut[image]
        out = np.where(painted > 0, painted, out)
        rows["label"].extend(range(next_id, next_id + members.size))
        rows["category"].extend([category] * members.size)
        rows["reference"].extend(originals[members] if is_ref else [0] * members.size)
        rows["candidate"].extend([0] * members.size if is_ref else originals[members])
        next_id += members.size
    table = {
        "label": np.asarray(rows["label"], np.int64),
        "category": np.asarray(rows["category"], dtype=object),
        "reference": np.asarray(rows["reference"], np.int64),
        "candidate": np.asarray(rows["candidate"], np.int64),
    }
    return out, table
