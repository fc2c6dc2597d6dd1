"""SCOPS part discovery with the CPU defaults on 32 synthetic images of 128 x 128.

Usage::

    python benchmarks/bench_scops.py [--images 32] [--size 128] [--iterations N]
                                     [--seeds 1 2 3] [--saliency] [--json out.json]

The collection's part colours are redrawn for every image (see
``napari_unsupseg.core.samples.parts``), and no saliency mask is given unless
``--saliency`` (then the true object mask). For each collection seed it prints,
side by side for the trained network and for its own initialisation (each pixel's
nearest initial part basis: k-means on the texture features), that initialisation
with a majority vote inside each colour region that training uses (``init + vote``:
what those regions give without training), a random partition of the object and
a purely positional (radial) one:

- ``nmi``: normalised mutual information with the true parts over object pixels,
  one mapping for the whole collection; ``matched``: one-to-one matched accuracy;
- ``spread`` / ``hits``: landmark consistency, the RMS scatter of each part's centre
  in its object's own frame (units of the object's size; lower is better) and the
  share of part centres lying on their matched true part;
- ``fg_iou``: foreground (label > 0) IoU against the true object masks (the random
  and radial partitions are given the true mask, so theirs is 1 by construction,
  and a random partition's centres all sit at the object's centre, so its spread
  is small: read spread together with hits);

then the wall-clock and CPU time of every stage and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np


def _train(images: np.ndarray, params, saliency):
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.parts.train import fit_parts

    return drive(fit_parts(images, params, saliency=saliency))


def _region_vote(model) -> np.ndarray:
    """The initialisation with every colour region of the training (a superpixel of its
    image at the working size) given its majority label: how much a plain vote over the
    regions the region-consistency loss uses would add without any training."""
    from napari_unsupseg.core.backprop import vote
    from napari_unsupseg.core.parts.start import colour_regions
    from napari_unsupseg.core.parts.train import enlarge_nearest

    regions = colour_regions(model.inputs, model.params.region_scale).numpy()
    initial = enlarge_nearest(model.initial_labels, regions.shape[1:])
    voted = np.stack([vote(ids, plane) for plane, ids in zip(initial, regions, strict=True)])
    return enlarge_nearest(voted.astype(initial.dtype), model.image_shape)


def _scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from napari_unsupseg.core.parts.saliency import foreground_iou
    from napari_unsupseg.core.samples.parts import landmark_consistency, part_scores

    scores = part_scores(labels, truth)
    out = {"nmi": scores["nmi"], "matched": scores["matched"]}
    out.update(landmark_consistency(labels, truth))
    out["fg_iou"] = foreground_iou(labels, truth)
    return {k: round(float(v), 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=None,
                        help="Training steps (default: the engine's default).")
    parser.add_argument("--saliency", action="store_true",
                        help="Give the true object mask as the saliency map.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="Collection seeds (one collection each).")
    parser.add_argument("--seed", type=int, default=0, help="The engine's seed.")
    parser.add_argument("--json", default=None, help="Also write the numbers to this file.")
    args = parser.parse_args()

    import torch

    from napari_unsupseg.core.parts import PartsParams
    from napari_unsupseg.core.samples.parts import part_collection, radial_partition

    values = {"n_parts": args.parts, "device": "cpu", "seed": args.seed}
    if args.iterations is not None:
        values["iterations"] = args.iterations
    params = PartsParams(**values)
    report = {
        "images": args.images, "size": args.size, "parts": args.parts,
        "iterations": params.iterations, "working_size": params.working_size,
        "batch_size": params.batch_size, "saliency_given": args.saliency, "collections": [],
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(f"{'seed':>4} {'method':<14} {'nmi':>6} {'matched':>8} {'spread':>7} {'hits':>6} "
          f"{'fg_iou':>7}")
    for seed in args.seeds:
        images, truth = part_collection(args.images, args.size, args.parts, seed=seed)
        wall, cpu = time.perf_counter(), time.process_time()
        model = _train(images, params, (truth > 0) if args.saliency else None)
        result = model.result()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rng = np.random.default_rng(0)
        rows = {
            "trained": _scores(result.labels, truth),
            "initialisation": _scores(model.initial_partition(), truth),
            "init + vote": _scores(_region_vote(model), truth),
            "random": _scores(rng.integers(1, args.parts + 1, truth.shape) * (truth > 0), truth),
            "radial": _scores(radial_partition(truth, args.parts), truth),
        }
        for name, row in rows.items():
            print(f"{seed:>4} {name:<14} {row['nmi']:>6.3f} {row['matched']:>8.3f} "
                  f"{row['spread']:>7.3f} {row['hits']:>6.3f} {row['fg_iou']:>7.3f}")
        gain = rows["trained"]["nmi"] - rows["initialisation"]["nmi"]
        timings = {k: round(v, 2) for k, v in result.metadata["timings"].items()}
        print(f"     trained - initialisation NMI: {gain:+.3f}; wall {wall:.1f} s, CPU "
              f"{cpu:.1f} s, {timings}; saliency: {result.metadata['saliency']}")
        report["collections"].append({"seed": seed, "scores": rows, "nmi_gain": round(gain, 3),
                                      "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                                      "timings": timings})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["peak_memory_mb"] = round(peak_mb, 1)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(f"peak resident memory {peak_mb:.0f} MB; load average {report['load_average']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
