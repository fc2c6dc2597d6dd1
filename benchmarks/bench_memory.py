"""Peak memory of each engine against the estimate shown before a run.

For each engine (preseg, backprop, predict, train) and three image sizes, the engine runs
in a fresh subprocess; what is measured is the peak resident memory of the run above the
process's resident memory just before it (libraries imported, image and model in
memory): Linux's ``VmHWM`` after the run minus ``VmRSS`` before it, the high-water mark
reset first (``/proc/self/clear_refs``). Printed: the estimate of
:func:`napari_unsupseg.core.registry.estimate_bytes`, the measured peak and their ratio.
The constants of the estimates were fitted to these figures on a 2-core Linux CPU.

Usage::

    python benchmarks/bench_memory.py                     # every engine, 256, 512, 1024 px
    python benchmarks/bench_memory.py --engines predict --sizes 512
    python benchmarks/bench_memory.py --child preseg 512  # one run, JSON on stdout

The tests (``tests/core/test_limits.py``) run ``--child`` for a mid-size image.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("preseg", "backprop", "predict", "train")
SIZES = (256, 512, 1024)


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _trim() -> None:
    """glibc's ``malloc_trim(0)``: freed heap memory goes back to the system."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _image(side: int) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.random((side, side, 3)), (4, 4, 0))
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def _setup(engine: str, image: np.ndarray, folder: Path) -> tuple[Any, Any]:
    """The engine's parameters (short runs) and a function that starts the run."""
    from napari_unsupseg.core.registry import ENGINES as TABLE

    entry = TABLE[engine]
    if engine == "preseg":
        params = entry.params(method="slic")
        return params, lambda: entry.run(image, params)
    if engine == "backprop":
        params = entry.params(max_iter=4, device="cpu")
        return params, lambda: entry.run(image, params)
    if engine == "predict":
        import torch

        from napari_unsupseg.core.models import ModelConfig, build_model
        from napari_unsupseg.core.models.checkpoints import save_checkpoint

        torch.manual_seed(0)
        # The U-Net that training here makes by default (depth 3, 8 channels).
        config = ModelConfig("unet", 3, in_channels=3, depth=3, base_channels=8,
                             mean=[0.5] * 3, std=[0.25] * 3)
        path = save_checkpoint(folder / "unet.pt", build_model(config), config)
        params = entry.params(checkpoint=str(path), device="cpu", objects=False)
        return params, lambda: entry.run(image, params)
    if engine == "train":
        labels = np.zeros(image.shape[:2], np.uint8)
        labels[: image.shape[0] // 2: 7, ::5] = 1
        labels[image.shape[0] // 2:: 7, ::5] = 2
        params = entry.params(epochs=2, steps_per_epoch=4, device="cpu", threads=1,
                              time_limit=0.0, separate_objects=False)
        return params, lambda: entry.run([image], [labels], params)
    raise ValueError(f"unknown engine {engine}")


def child(engine: str, side: int) -> dict[str, Any]:
    """One run in this process: its estimate and measured peak (bytes)."""
    import torch  # noqa: F401 - the libraries belong to the baseline, not the run

    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.registry import estimate_bytes

    image = _image(side)
    with tempfile.TemporaryDirectory() as folder:
        params, start = _setup(engine, image, Path(folder))
        estimate = estimate_bytes(engine, image.shape, image.dtype, params)
        gc.collect()
        _trim()  # the image's freed temporaries back to the system: a steady baseline
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark := now
        baseline = _status("VmRSS")
        run_to_end(start())
        measured = _status("VmHWM") - baseline
    return {"engine": engine, "side": side, "estimate": estimate, "measured": measured}


def measure(engine: str, side: int) -> dict[str, Any]:
    """:func:`child` in a fresh subprocess (its own peak, one thread as on a busy machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", engine, str(side)], capture_output=True,
        text=True, env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "SIDE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    mib = 2**20
    print(f"{'engine':<9} {'image':>11} {'estimate':>12} {'measured':>12} {'ratio':>6}")
    for engine in args.engines:
        for side in args.sizes:
            row = measure(engine, side)
            ratio = row["estimate"] / max(row["measured"], 1)
            print(f"{engine:<9} {f'{side}x{side}x3':>11} {row['estimate'] / mib:>8.0f} MiB "
                  f"{row['measured'] / mib:>8.0f} MiB {ratio:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
