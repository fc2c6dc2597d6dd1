"""Benchmark: the backprop segmenter against a faithful baseline on 512x512 RGB images.

    python benchmarks/bench_backprop.py            # coffee photo and mosaic, all variants
    python benchmarks/bench_backprop.py --quick    # mosaic only, ours and the baseline

Each variant runs in its own subprocess so that its peak resident memory
(``ru_maxrss``) is its own. Variants:

- ``ours``: :func:`napari_unsupseg.core.backprop.segment` with its defaults.
- ``ours-no-heap``: the same without keeping freed memory mapped (glibc returns the
  activation buffers to the system every iteration).
- ``ours-no-stop``: the same without the convergence stop (runs to ``max_iter``).
- ``baseline``: the reference algorithm written as the Kanezaki scripts do it: the
  same network, superpixels, optimiser and iterations; the argmax copied to the host
  every iteration and voted with a ``np.unique`` loop over superpixels; the plain
  allocator; no convergence stop (only the reference's min-labels stop); the output
  is the argmax of one more forward pass.

Times exclude the interpreter start and ``import torch`` (both variants import it
before the clock starts) and include normalisation and superpixels. Quality on the
mosaic is IoU against the exact ground truth: "majority" gives every label to the
true region where most of its pixels lie (a region split in two is no error),
"hungarian" matches labels one-to-one. The photo has no ground truth: its figure is
the PSNR of the image painted with each label's mean colour (read with n_labels).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

VARIANTS = ("ours", "ours-no-heap", "ours-no-stop", "baseline")
IMAGES = ("coffee", "mosaic")


def load_image(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    from napari_unsupseg.core import samples

    if name == "mosaic":
        return samples.mosaic(512, n_regions=6, noise=0.05, seed=0)
    from skimage.transform import resize

    photo = resize(samples.coffee(), (512, 512), order=1, anti_aliasing=True)
    return (photo * 255).round().astype(np.uint8), None


# --------------------------------------------------------------------- baseline


def run_baseline(image: np.ndarray, max_iter: int, network: str) -> dict:
    """The reference loop (Kanezaki 2018 scripts), with this package's network and superpixels."""
    import torch
    import torch.nn.functional as F

    from napari_unsupseg.core.backprop import DEFAULT_FEATURES, DEFAULT_LR, BackpropParams
    from napari_unsupseg.core.backprop import plane_superpixels as superpixels_of
    from napari_unsupseg.core.backprop_nets import build_network
    from napari_unsupseg.core.device import seed_everything
    from napari_unsupseg.core.images import normalize

    params = BackpropParams(network=network, max_iter=max_iter)
    start = time.perf_counter()
    plane = normalize(image[np.newaxis])[0]
    superpixels = superpixels_of(plane, params).reshape(-1)
    l_inds = [np.where(superpixels == u)[0] for u in np.unique(superpixels)]
    seed_everything(params.seed)
    n_features = DEFAULT_FEATURES[network]
    model = build_network(network, plane.shape[-1], n_features, params.n_conv)
    data = torch.from_numpy(np.ascontiguousarray(plane.transpose(2, 0, 1)[np.newaxis]))
    optimizer = torch.optim.SGD(model.parameters(), lr=DEFAULT_LR[network], momentum=0.9)
    model.train()
    iterations = 0
    first_iteration = None
    for _ in range(max_iter):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        output = model(data)[0]
        output = output.permute(1, 2, 0).contiguous().view(-1, n_features)
        _, target = torch.max(output, 1)
        im_target = target.data.cpu().numpy()
        n_labels = len(np.unique(im_target))
        for inds in l_inds:
            u_labels, hist = np.unique(im_target[inds], return_counts=True)
            im_target[inds] = u_labels[np.argmax(hist)]
        target = torch.from_numpy(im_target)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        loss.item()
        iterations += 1
        if first_iteration is None:
            first_iteration = time.perf_counter() - t0
        if n_labels <= params.min_labels:
            break
    output = model(data)[0].permute(1, 2, 0).contiguous().view(-1, n_features)
    labels = output.argmax(1).reshape(plane.shape[:2]).numpy()
    seconds = time.perf_counter() - start
    return {"labels": labels, "seconds": seconds, "iterations": iterations}


def run_ours(image: np.ndarray, max_iter: int, network: str, variant: str) -> dict:
    from napari_unsupseg.core.backprop import BackpropParams, segment
    from napari_unsupseg.core.engine import run_to_end

    changes: dict = {"network": network, "max_iter": max_iter, "device": "cpu"}
    if variant == "ours-no-heap":
        changes["keep_heap"] = False
    if variant == "ours-no-stop":
        changes["patience"] = 0
    start = time.perf_counter()
    result = run_to_end(segment(image, BackpropParams(**changes)))
    seconds = time.perf_counter() - start
    return {
        "labels": result.labels,
        "seconds": seconds,
        "iterations": result.metadata["iterations"][0],
        "stop_reason": result.metadata["stop_reason"],
        "training": result.metadata["timings"]["training"],
    }


# --------------------------------------------------------------------- quality


def mean_colour_psnr(image: np.ndarray, labels: np.ndarray) -> float:
    from napari_unsupseg.core.images import mean_colour, normalize

    plane = normalize(image)
    _, compact = np.unique(labels, return_inverse=True)
    painted = mean_colour(plane, compact.reshape(labels.shape))
    mse = float(np.mean((painted - plane) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


# ----------------------------------------------------------------------- driver


def worker(variant: str, image_name: str, max_iter: int, network: str) -> dict:
    import torch  # noqa: F401 - imported before the clock, for every variant alike

    image, truth = load_image(image_name)
    if variant == "baseline":
        out = run_baseline(image, max_iter, network)
    else:
        out = run_ours(image, max_iter, network, variant)
    labels = out.pop("labels")
    out["n_labels"] = int(len(np.unique(labels)))
    out["per_iteration"] = out.get("training", out["seconds"]) / max(out["iterations"], 1)
    if truth is not None:
        from napari_unsupseg.core.scores import hungarian_iou, majority_iou

        out["majority_iou"] = majority_iou(labels, truth)
        out["hungarian_iou"] = hungarian_iou(labels, truth)
    out["psnr"] = mean_colour_psnr(image, labels)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_variant(variant: str, image: str, max_iter: int, network: str) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--image", image,
               "--max-iter", str(max_iter), "--network", network]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} on {image} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(image: str, rows: dict[str, dict]) -> None:
    base = rows.get("baseline")
    quality = "maj IoU  hun IoU" if "majority_iou" in next(iter(rows.values())) else "  PSNR dB"
    print(f"\n{image} 512x512 RGB")
    print(f"{'variant':<14}{'s/iter':>8}{'iters':>7}{'s total':>9}{'peak MiB':>10}"
          f"{'labels':>8}  {quality}{'speed-up':>10}  stop")
    for name, row in rows.items():
        if "majority_iou" in row:
            q = f"{row['majority_iou']:7.3f}  {row['hungarian_iou']:7.3f}"
        else:
            q = f"{row['psnr']:9.2f}"
        speedup = f"{base['seconds'] / row['seconds']:9.1f}x" if base else ""
        print(f"{name:<14}{row['per_iteration']:8.3f}{row['iterations']:7d}{row['seconds']:9.2f}"
              f"{row['peak_rss_mib']:10.0f}{row['n_labels']:8d}  {q}{speedup:>10}  "
              f"{row.get('stop_reason', 'min_labels/max_iter')}")
    if base and "ours" in rows:
        ours = rows["ours"]
        print(f"ours vs baseline: {base['seconds'] / ours['seconds']:.1f}x faster to the result, "
              f"{base['per_iteration'] / ours['per_iteration']:.1f}x per iteration, "
              f"peak memory {ours['peak_rss_mib'] / base['peak_rss_mib']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--image", choices=IMAGES, default=None)
    parser.add_argument("--max-iter", type=int, default=None,
                        help="iterations (default: BackpropParams' default)")
    parser.add_argument("--network", choices=("fast", "kanezaki"), default="fast")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="mosaic only, ours and baseline")
    args = parser.parse_args()
    if args.max_iter is None:
        from napari_unsupseg.core.backprop import BackpropParams

        args.max_iter = BackpropParams().max_iter
    if args.worker:
        print(json.dumps(worker(args.worker, args.image or "mosaic", args.max_iter, args.network)))
        return
    images = [args.image] if args.image else list(IMAGES)
    variants = args.variants
    if args.quick:
        images, variants = ["mosaic"], ["ours", "baseline"]
    print(f"network {args.network}, max_iter {args.max_iter}; each variant in its own process")
    for image in images:
        rows = {}
        for variant in variants:
            rows[variant] = run_variant(variant, image, args.max_iter, args.network)
            print(f"  {image:<7}{variant:<14} done in {rows[variant]['seconds']:.1f} s", flush=True)
        print_table(image, rows)


if __name__ == "__main__":
    main()
