"""Benchmark: the backprop segmenter's defaults against the ICASSP 2018 reference code path.

    python benchmarks/bench_backprop.py                      # 4 held-out images, 3 seeds
    python benchmarks/bench_backprop.py --size 96 --ref-max-iter 300 --images mosaic-a

Images (``napari_unsupseg.core.samples.synthetic``, generator seeds never used to choose the
defaults): two textured mosaics (quality: Hungarian mIoU, one-to-one) and nuclei-like
fluorescence in 16 and 8 bits (quality: foreground IoU, background = the label most
often on the border). For each image and segmenter seed, in this one process, one
after the other (so that a busy machine slows both alike):

- ``reference``: the ICASSP 2018 script's loop: its network (2 conv 3x3 + 1x1, 100
  channels), SLIC with 10,000 segments and compactness 100, SGD lr 0.1 momentum 0.9,
  the argmax copied to the host and voted by a ``np.unique`` loop over superpixels
  every iteration, stop at <= 3 labels or 1000 iterations, output the argmax of one
  more forward pass. It is given the image as 8-bit RGB after the same percentile
  normalisation as ours (the script's own reader would squash 16-bit data).
- ``ours``: :func:`segment` with its defaults (no ``n_labels``).

Printed per run: both qualities, both times to each side's own stop, iterations,
seconds per iteration, peak resident memory during the run; the **time-to-result
speed-up** (reference time to its stop / ours to its stop), the **per-iteration
speed-up** (reference s/iter / ours s/iter; different networks), and the reference's
time to first reach our quality (checked every 10 iterations, checks not timed).
With ``--ref-max-iter`` below 1000 the reference is cut short: when it has not stopped
by then, its time to its own stop is projected at its measured pace (marked ``~``)
and its quality is the one at the cut.

``--same-rule`` adds the comparison with one network and one stopping rule: the
reference loop (host copy, ``np.unique`` vote) with our fast network, superpixels and
convergence stop, against ours with one run and no merge (``restarts=1,
merge_threshold=0``): per-iteration and time-to-result speed-ups side by side.
Times include normalisation and superpixels, not ``import torch`` nor the warm-up of
the first torch run in the process (one small run before the clocks start).
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Callable

import numpy as np

#: The reference script's own maxIter.
REFERENCE_MAX_ITER = 1000
IMAGES = ("mosaic-a", "mosaic-b", "nuclei-16bit", "nuclei-8bit")


def load_image(name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    from napari_unsupseg.core.samples import synthetic

    held = synthetic.HELD_OUT_SEEDS
    if name == "mosaic-a":
        return synthetic.textured_mosaic(size, seed=held[3])
    if name == "mosaic-b":
        return synthetic.textured_mosaic(size, seed=held[4])
    bits = 16 if name == "nuclei-16bit" else 8
    return synthetic.nuclei(size, seed=held[5], bits=bits)


def quality(name: str, labels: np.ndarray, truth: np.ndarray) -> float:
    from napari_unsupseg.core.review.scores import foreground_iou, hungarian_iou

    return hungarian_iou(labels, truth) if name.startswith("mosaic") else foreground_iou(
        labels, truth
    )


class PeakMemory:
    """Peak resident memory (MiB) of this process while the block runs, sampled every 5 ms."""

    def __enter__(self) -> PeakMemory:
        self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        import resource

        return pages * resource.getpagesize() / 2**20


# -------------------------------------------------------------------- the loops


def reference_loop(
    plane: np.ndarray,
    superpixels: np.ndarray,
    model: object,
    *,
    lr: float,
    max_iter: int,
    stop: Callable[[int, np.ndarray], bool],
    check: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, int, float]:
    """The Kanezaki script's training loop; returns (labels, iterations, training seconds)."""
    import torch
    import torch.nn.functional as F

    flat_sp = superpixels.reshape(-1)
    members = [np.where(flat_sp == u)[0] for u in np.unique(flat_sp)]
    data = torch.from_numpy(np.ascontiguousarray(plane.transpose(2, 0, 1)[np.newaxis]))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    untimed = 0.0
    start = time.perf_counter()
    iterations = 0
    for iterations in range(1, max_iter + 1):
        optimizer.zero_grad()
        output = model(data)[0]
        n_out = output.shape[0]
        output = output.permute(1, 2, 0).contiguous().view(-1, n_out)
        target = output.argmax(1).numpy().copy()
        n_labels = len(np.unique(target))
        for inds in members:
            values, counts = np.unique(target[inds], return_counts=True)
            target[inds] = values[np.argmax(counts)]
        loss = F.cross_entropy(output, torch.from_numpy(target))
        loss.backward()
        optimizer.step()
        if check is not None and iterations % 10 == 0:
            t0 = time.perf_counter()
            with torch.no_grad():
                check(model(data)[0].argmax(0).numpy())
            untimed += time.perf_counter() - t0
        if stop(n_labels, target):
            break
    with torch.no_grad():
        labels = model(data)[0].argmax(0).numpy()
    return labels, iterations, time.perf_counter() - start - untimed


def run_reference(image: np.ndarray, seed: int, max_iter: int, check: Callable) -> dict:
    from skimage.segmentation import slic

    from napari_unsupseg.core.backprop.nets import kanezaki_net
    from napari_unsupseg.core.base.device import seed_everything
    from napari_unsupseg.core.base.images import normalize

    start = time.perf_counter()
    plane = normalize(image[np.newaxis])[0]
    rgb = np.round(np.repeat(plane, 3 // plane.shape[-1], -1) * 255).astype(np.uint8)
    superpixels = slic(rgb, compactness=100, n_segments=10000, start_label=0)
    seed_everything(seed)
    model = kanezaki_net(3, 100, 2)
    setup = time.perf_counter() - start
    labels, iterations, training = reference_loop(
        (rgb / 255.0).astype(np.float32), superpixels, model, lr=0.1, max_iter=max_iter,
        stop=lambda n_labels, target: n_labels <= 3, check=check,
    )
    # The quality checks along the way are not counted: the training loop times itself.
    return {"labels": labels, "iterations": iterations, "training": training,
            "seconds": setup + training}


def run_ours(image: np.ndarray, seed: int, **changes: object) -> dict:
    from napari_unsupseg.core.backprop import BackpropParams, segment
    from napari_unsupseg.core.base.engine import run_to_end

    start = time.perf_counter()
    result = run_to_end(segment(image, BackpropParams(seed=seed, device="cpu", **changes)))
    meta = result.metadata
    return {"labels": result.labels, "seconds": time.perf_counter() - start,
            "iterations": int(sum(meta["iterations"])), "training": meta["timings"]["training"]}


def run_loop_same_rule(image: np.ndarray, seed: int) -> dict:
    """The reference loop with our fast network, superpixels and convergence stop."""
    from napari_unsupseg.core.backprop import DEFAULT_LR, BackpropParams, plane_superpixels
    from napari_unsupseg.core.backprop.nets import fast_net
    from napari_unsupseg.core.base.device import seed_everything
    from napari_unsupseg.core.base.images import normalize

    params = BackpropParams(seed=seed)
    start = time.perf_counter()
    plane = normalize(image[np.newaxis])[0]
    superpixels = plane_superpixels(plane, params)
    seed_everything(seed)
    model = fast_net(plane.shape[-1], 32)
    state = {"previous": None, "count": None, "stable": 0}

    def stop(_: int, target: np.ndarray) -> bool:
        # Ours: labels of the voted target unchanged and few pixels flipping, `patience` times.
        count = len(np.unique(target))
        if state["previous"] is not None:
            changed = np.mean(target != state["previous"])
            calm = count == state["count"] and changed < params.converge_tol
            state["stable"] = state["stable"] + 1 if calm else 0
        state["previous"], state["count"] = target, count
        return count <= params.min_labels or state["stable"] >= params.patience

    labels, iterations, training = reference_loop(
        plane, superpixels, model, lr=DEFAULT_LR["fast"], max_iter=params.max_iter, stop=stop
    )
    return {"labels": labels, "iterations": iterations, "training": training,
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------- driver


def measure(run: Callable[[], dict], name: str, truth: np.ndarray) -> dict:
    with PeakMemory() as memory:
        out = run()
    labels = out.pop("labels")
    out.update(quality=quality(name, labels, truth), n_labels=int(len(np.unique(labels))),
               peak_mib=memory.peak, per_iter=out["training"] / max(out["iterations"], 1))
    return out


def _reach(
    name: str, truth: np.ndarray, goal: float, reached: list[float], start: float,
    labels: np.ndarray,
) -> None:
    """Note the time when the reference first reaches ``goal`` (its checks are not timed)."""
    if not reached and quality(name, labels, truth) >= goal:
        reached.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", choices=IMAGES, default=list(IMAGES))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ref-max-iter", type=int, default=REFERENCE_MAX_ITER,
                        help="stop the reference here; if that is before its own stop, its "
                        "time to 1000 iterations is projected at the measured pace (~)")
    parser.add_argument("--same-rule", action="store_true",
                        help="also time one network with one stopping rule, both ways")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.size}x{args.size}, seeds {args.seeds}, reference maxIter {args.ref_max_iter}, "
          f"{args.threads} torch thread(s); q = quality (mosaic: Hungarian mIoU, nuclei: "
          "foreground IoU)")
    # The first torch run of a process pays a warm-up; pay it before any clock starts.
    warm_image, _ = load_image(args.images[0], 32)
    run_ours(warm_image, 0, restarts=1)
    header = (f"{'image':<13}{'seed':>4} | {'ref q':>6}{'s':>8}{'iters':>6}{'s/it':>7}{'MiB':>6}"
              f" | {'ours q':>6}{'s':>7}{'iters':>6}{'s/it':>7}{'MiB':>6} | {'to result':>9}"
              f"{'per iter':>9}{'ref to ours q':>14}")
    summary = []
    for name in args.images:
        image, truth = load_image(name, args.size)
        print("\n" + header)
        rows = []
        for seed in args.seeds:
            ours = measure(functools.partial(run_ours, image, seed), name, truth)
            reached: list[float] = []
            check = functools.partial(
                _reach, name, truth, ours["quality"], reached, time.perf_counter()
            )
            run = functools.partial(run_reference, image, seed, args.ref_max_iter, check)
            ref = measure(run, name, truth)
            to_q = f"{reached[0]:.1f} s" if reached else "never"
            if ref["iterations"] == args.ref_max_iter < REFERENCE_MAX_ITER:
                # Capped before its own stop: project the rest at the measured pace.
                ref["seconds"] += ref["per_iter"] * (REFERENCE_MAX_ITER - ref["iterations"])
                ref["projected"] = True
            mark = "~" if ref.get("projected") else " "
            print(f"{name:<13}{seed:>4} | {ref['quality']:6.3f}{mark}{ref['seconds']:7.1f}"
                  f"{ref['iterations']:6d}{ref['per_iter']:7.3f}{ref['peak_mib']:6.0f}"
                  f" | {ours['quality']:6.3f}{ours['seconds']:7.2f}{ours['iterations']:6d}"
                  f"{ours['per_iter']:7.3f}{ours['peak_mib']:6.0f}"
                  f" | {ref['seconds'] / ours['seconds']:8.1f}x"
                  f"{ref['per_iter'] / ours['per_iter']:8.1f}x{to_q:>14}", flush=True)
            rows.append((ref, ours))
        ref_q = [r["quality"] for r, _ in rows]
        our_q = [o["quality"] for _, o in rows]
        speed = [r["seconds"] / o["seconds"] for r, o in rows]
        summary.append((name, min(ref_q), max(ref_q) - min(ref_q), min(our_q),
                        max(our_q) - min(our_q), min(speed), rows[0][1]["n_labels"]))
    print(f"\nworst of {len(args.seeds)} seeds")
    print(f"{'image':<13} | {'ref worst':>9}{'spread':>8} | {'ours worst':>10}{'spread':>8}"
          f"{'labels':>7} | {'slowest speed-up':>16}")
    for name, rq, rs, oq, os_, sp, n in summary:
        print(f"{name:<13} | {rq:9.3f}{rs:8.3f} | {oq:10.3f}{os_:8.3f}{n:7d} | {sp:15.1f}x")

    if args.same_rule:
        print("\nsame network (fast), same superpixels, same convergence stop, one run, no merge")
        print(f"{'image':<13}{'seed':>4} | {'loop s':>7}{'iters':>6}{'s/it':>7} | "
              f"{'ours s':>7}{'iters':>6}{'s/it':>7} | {'to result':>9}{'per iter':>9}")
        for name in args.images:
            image, truth = load_image(name, args.size)
            for seed in args.seeds:
                loop = measure(functools.partial(run_loop_same_rule, image, seed), name, truth)
                one = functools.partial(run_ours, image, seed, restarts=1, merge_threshold=0.0)
                ours = measure(one, name, truth)
                print(f"{name:<13}{seed:>4} | {loop['seconds']:7.2f}{loop['iterations']:6d}"
                      f"{loop['per_iter']:7.3f} | {ours['seconds']:7.2f}{ours['iterations']:6d}"
                      f"{ours['per_iter']:7.3f} | {loop['seconds'] / ours['seconds']:8.1f}x"
                      f"{loop['per_iter'] / ours['per_iter']:8.1f}x", flush=True)


if __name__ == "__main__":
    main()
