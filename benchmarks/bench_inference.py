"""Benchmark of tiled model inference (DeepLabV3+ MobileNetV2, random weights, CPU by default).

1. Throughput: megapixels per second of ``core.predict.predict`` (tiles, blending,
   labels) against one plain whole-image forward of the same model in the same run
   (forward, unpadded as DeepLab takes any size, arg-max to uint8 labels). Target: tiled
   >= 0.9x.
   Also the fraction of pixels whose label agrees (random weights: the ASPP image
   pooling and DeepLab's receptive field exceed a tile, see core/predict/engine.py).
2. Peak memory: each image size runs in a fresh subprocess that reports its peak RSS
   (``resource.getrusage(...).ru_maxrss``); the image is uint8 and never copied as float.
   Target: flat in image size, within 4 GiB for 10,000 x 10,000 on the CPU.

Usage::

    python benchmarks/bench_inference.py          # 2048^2 speed (best of 2); 4096^2, 10000^2 memory
    python benchmarks/bench_inference.py --quick    # 1024^2 throughput; 2048^2 and 4096^2 memory
    python benchmarks/bench_inference.py --device cuda --sizes 4096 10000

Numbers depend on the machine and its load; report them with the command used. On a
shared CPU, single forward passes of the same shape vary by up to 2x from run to run, and
oneDNN builds its kernels at the first pass of each new input shape (seconds on a slow
CPU): compare best-of-N timings (``--repeat``), and prefer tile sizes that split the image
into few, equal tiles (the plan shrinks tiles to the smallest size that covers the image
with the overlap, e.g. 2 x 2 tiles of 1056 px for a 2048 px image with ``--tiles 1088``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def make_model(arch: str):
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import LoadedModel

    torch.manual_seed(0)
    config = ModelConfig(arch, 21)
    model = build_model(config)
    with torch.no_grad():  # random BN statistics and a sharper head: labels vary in space
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(10.0)
    return LoadedModel(model, config, source="random weights")


def smooth_image(size: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image with structure at several scales (cheap to make at any size)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 64 + 2, size // 64 + 2, 3)).astype(np.float32)
    from scipy import ndimage as ndi

    image = ndi.zoom(coarse, (64, 64, 1), order=1)[:size, :size]
    image += 0.15 * rng.random(image.shape, dtype=np.float32)
    return np.clip(image * 200, 0, 255).astype(np.uint8)


def plain_forward(loaded, image: np.ndarray, device: str) -> np.ndarray:
    import torch

    from napari_unsupseg.core.base.memory import keep_heap_mapped
    from napari_unsupseg.core.models import ARCHS
    from napari_unsupseg.core.models.unet import pad_to_multiple

    mean = np.float32(loaded.config.mean)
    std = np.float32(loaded.config.std)
    x = (image.astype(np.float32) / 255 - mean) / std
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(device)
    net = loaded.model.to(device).eval()
    # Same allocator setting as the engine, so that the ratio measures tiling alone.
    with keep_heap_mapped(device == "cpu"), torch.inference_mode():
        multiple = ARCHS[loaded.config.architecture].size_multiple(loaded.config)
        x, (h, w) = pad_to_multiple(x, multiple)  # only architectures that need it
        logits = net(x)[..., :h, :w]
        return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def tiled(loaded, image: np.ndarray, tile: int, overlap: int, device: str, confidence=False):
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.predict import PredictParams, predict

    params = PredictParams(tile_size=tile, overlap=overlap, device=device, classes="voc",
                             confidence=confidence)
    return run_to_end(predict(image, params, model=loaded))


def throughput(args) -> dict:
    """Best of ``--repeat`` timings per case, the cases interleaved (the machine is shared)."""
    loaded = make_model(args.arch)
    size = args.throughput_size
    image = smooth_image(size)
    plain_forward(loaded, image[:256, :256], args.device)  # warm-up
    mp = size * size / 1e6
    best: dict[str, float] = {}
    outputs: dict[str, object] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        outputs["plain"] = plain_forward(loaded, image, args.device)
        best["plain"] = min(best.get("plain", np.inf), time.perf_counter() - start)
        for tile in args.tiles:
            start = time.perf_counter()
            outputs[tile] = tiled(loaded, image, tile, args.overlap, args.device)
            best[tile] = min(best.get(tile, np.inf), time.perf_counter() - start)
    full = outputs["plain"]
    rows = [{"case": f"plain forward {size}^2 ({len(np.unique(full))} classes predicted)",
             "seconds": round(best["plain"], 2), "MP/s": round(mp / best["plain"], 3),
             "ratio": 1.0}]
    for tile in args.tiles:
        result = outputs[tile]
        rows.append({"case": f"tiled {size}^2, tile {tile}, overlap {args.overlap}, "
                             f"grid {result.metadata['tile_grid']}",
                     "seconds": round(best[tile], 2), "MP/s": round(mp / best[tile], 3),
                     "ratio": round(best["plain"] / best[tile], 3),
                     "label agreement": round(float((result.labels == full).mean()), 4)})
    return {"throughput": rows}


def _status_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return float("nan")


def child(size: int, tile: int, overlap: int, device: str, arch: str, confidence: bool) -> None:
    """Runs in a fresh process: one prediction, then peak RSS as JSON on stdout."""
    start = time.perf_counter()
    image = np.empty((size, size, 3), np.uint8)
    rng = np.random.default_rng(0)
    for row in range(0, size, 1024):  # fill in bands: no int64 temporary of the whole image
        image[row:row + 1024] = rng.integers(0, 256, image[row:row + 1024].shape,
                                             dtype=np.uint8)
    loaded = make_model(arch)
    rss_before = _status_mib("VmRSS")
    try:  # reset VmHWM so that it measures the prediction alone (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    result = tiled(loaded, image, tile, overlap, device, confidence)
    t = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "case": f"{size}x{size}, tile {tile}", "tiles": result.metadata["tiles"],
        "image MiB (uint8)": round(image.nbytes / 2**20),
        "labels MiB": round(result.labels.nbytes / 2**20),
        "RSS before predict MiB": rss_before,
        "peak RSS during predict MiB (VmHWM)": _status_mib("VmHWM"),
        "peak RSS of the process MiB (ru_maxrss)": round(peak / 1024),
        "predict seconds": round(t, 1), "MP/s": round(size * size / 1e6 / t, 3),
        "wall seconds": round(time.perf_counter() - start, 1)}))


def memory(args) -> dict:
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--tiles", str(args.tiles[0]),
               "--overlap", str(args.overlap), "--device", args.device, "--arch", args.arch]
        if args.confidence:
            cmd.append("--confidence")
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            rows.append({"case": f"{size}x{size}", "error": out.stderr[-2000:]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return {"memory": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller images (minutes, not tens).")
    parser.add_argument("--arch", default="deeplabv3plus_mobilenet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiles", type=int, nargs="+", default=None,
                        help="Tile sizes to compare (first one also for memory).")
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--throughput-size", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="Image sizes for the memory runs.")
    parser.add_argument("--confidence", action="store_true", help="Also make confidence maps.")
    parser.add_argument("--repeat", type=int, default=2,
                        help="Throughput: best of this many runs per case.")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.tiles[0], args.overlap, args.device, args.arch, args.confidence)
        return
    args.tiles = args.tiles or ([512, 544] if args.quick else [1024, 1088])
    if args.quick:
        args.repeat = min(args.repeat, 1)
    args.throughput_size = args.throughput_size or (1024 if args.quick else 2048)
    args.sizes = args.sizes or ([2048, 4096] if args.quick else [4096, 10000])
    import torch

    report = {"arch": args.arch, "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "quick": args.quick}
    print(json.dumps(report), flush=True)
    if not args.skip_throughput:
        report.update(throughput(args))
        for row in report["throughput"]:
            print(json.dumps(row), flush=True)
    if not args.skip_memory:
        report.update(memory(args))


if __name__ == "__main__":
    main()
