"""Time SCOPS part discovery with the CPU defaults on 32 synthetic images of 128 x 128.

Usage::

    python benchmarks/bench_scops.py [--images 32] [--size 128] [--iterations N]
                                     [--saliency] [--json out.json]

Prints the wall-clock time of every stage (images, features, training, read-out),
seconds per training step, and how consistently the parts found map onto the
true parts (one mapping for the whole collection) next to two baselines: a random
partition of each object and a purely positional (radial) one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=None,
                        help="Training steps (default: the engine's default).")
    parser.add_argument("--saliency", action="store_true",
                        help="Give the true object mask as the saliency map.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="Also write the numbers to this file.")
    args = parser.parse_args()

    import torch

    from napari_unsupseg.core.engine import run_to_end
    from napari_unsupseg.core.scops import ScopsParams, discover_parts
    from napari_unsupseg.core.scops_samples import part_collection, part_scores, radial_partition

    images, truth = part_collection(args.images, args.size, args.parts, seed=args.seed + 1)
    values = {"n_parts": args.parts, "device": "cpu", "seed": args.seed}
    if args.iterations is not None:
        values["iterations"] = args.iterations
    params = ScopsParams(**values)
    start = time.perf_counter()
    result = run_to_end(discover_parts(images, params,
                                       saliency=(truth > 0) if args.saliency else None))
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    scores = {
        "found": part_scores(result.labels, truth),
        "random": part_scores(rng.integers(1, args.parts + 1, truth.shape) * (truth > 0), truth),
        "radial": part_scores(radial_partition(truth, args.parts), truth),
    }
    timings = result.metadata["timings"]
    report = {
        "images": args.images, "size": args.size, "parts": args.parts,
        "iterations": params.iterations, "working_size": params.working_size,
        "batch_size": params.batch_size, "saliency": args.saliency,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(timings.get("train", 0.0) / params.iterations, 3),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "scores": {k: {m: round(v, 3) for m, v in s.items()} for k, s in scores.items()},
        "foreground_agreement": round(float(((result.labels > 0) == (truth > 0)).mean()), 3),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
