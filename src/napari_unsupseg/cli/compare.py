"""``napari-unsupseg compare``: match two label images object by object.

Example::

    napari-unsupseg compare annotator_a.tif annotator_b.tif --json agreement.json

prints the object counts, matches at IoU > 0.5, precision, recall, F1, the mean IoU of
matched pairs and the number of missed, extra, split and merged objects; ``--json``
writes them with the per-object table, ``--table`` writes the per-object table as CSV.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..core.base.engine import to_jsonable
from ..core.review import compare, write_csv
from .measure import read_labels

HELP = "Compare two label images: matches at IoU > 0.5, precision, recall, F1, mean IoU."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", type=Path, help="Reference labels (TIFF or PNG).")
    parser.add_argument("candidate", type=Path, help="Candidate labels of the same shape.")
    parser.add_argument("--iou-threshold", type=float, default=0.5,
                        help="Objects match when their IoU is above this (0.5 to 1: at 0.5 or "
                        "more an object matches at most one other).")
    parser.add_argument("--json", type=Path, default=None,
                        help="Write the figures and the per-object table to this JSON file.")
    parser.add_argument("--table", type=Path, default=None,
                        help="Write the per-object table to this CSV file.")


def run(args: argparse.Namespace) -> int:
    reference = read_labels(args.reference)
    candidate = read_labels(args.candidate)
    result = compare(reference, candidate, args.iou_threshold)
    summary = result.summary()
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:>14}: {shown}")
    if args.json is not None:
        objects = result.objects
        rows = [dict(zip(objects, values, strict=True)) for values in zip(*objects.values(),
                                                                           strict=True)]
        report = {"reference": str(args.reference), "candidate": str(args.candidate),
                  **summary, "objects": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_jsonable(report), indent=2))
        print(f"wrote {args.json}")
    if args.table is not None:
        write_csv({k: np.asarray(v) for k, v in result.objects.items()}, args.table)
        print(f"wrote {args.table}")
    return 0
