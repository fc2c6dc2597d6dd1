"""A large OME-Zarr image segmented from the napari docks, block by block: time, peak
memory and how responsive the viewer stays.

Writes (in a child process, so that the figures below are napari's alone) a synthetic
RGB multiscale OME-Zarr image (default 20,000 x 20,000, uint8, 1024 px chunks, levels
down to about 1,000 px; textured regions of a few hundred pixels with a random colour
each, so superpixels and the model have structure), opens it in a shown napari viewer
with napari-ome-zarr (one multiscale layer per channel), and runs from the docks:
Presegment (SLIC, ``--segments-per-block`` superpixels per block) and then Model
inference (a small U-Net with random, sharpened weights, as ``bench_zarr.py`` uses),
each writing its labels into the store block by block. ``--volume`` does the same on
the two-channel uint16 z-stack of ``bench_zarr.py`` (default 2,048 x 2,048 x 64, 1 GiB),
every plane.

Measured for each run: the wall time; the process's peak memory (psutil RSS sampled
every 50 ms from a thread, and ``ru_maxrss`` at the end: the whole process, viewer
included); the main thread's responsiveness: a 20 ms Qt timer records the gap between
its ticks while the run goes (a gap over 200 ms is a frame the user waits for), while
another timer pans and zooms the camera every ``--pan`` seconds so that napari loads
tiles of the image and of the labels being written. Goals: peak under 4 GiB (3 GiB for
the volume), no gap over 200 ms. First, ``--baseline`` seconds of camera moves with no run
give napari's own gaps on this machine; gaps while napari adds the result layer (once
per run) are also shown apart.

napari keeps the image tiles it has read in a dask cache sized by its settings (a
quarter of the machine's memory by default): panning over a large image fills it
whatever the run does, and the process's peak follows. ``--dask-cache GB`` sets it for
this process only (napari's saved settings are not changed).

    xvfb-run -a python benchmarks/bench_napari_zarr.py --size 4096
    xvfb-run -a python benchmarks/bench_napari_zarr.py --screenshot viewer.png
    xvfb-run -a python benchmarks/bench_napari_zarr.py --dask-cache 1 --stalls
    xvfb-run -a python benchmarks/bench_napari_zarr.py --no-rgb --volume --planes 8
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from napari_timing import TRACE_S, WINDOW, Camera, Frames, Memory, idle  # noqa: E402

GOAL_GIB = {"rgb": 4.0, "volume": 3.0}


# ----------------------------------------------------------------------------- the data

def texture(rows: slice, width: int, seed: int = 0) -> np.ndarray:
    """Rows ``rows`` of the synthetic RGB image, (3, h, width) uint8: warped cells of about
    300 px, each of a random colour, with a fine stripe texture and noise."""
    yy, xx = np.mgrid[rows, 0:width].astype(np.float32)
    u = xx + 60 * np.sin(yy / 157)
    v = yy + 60 * np.sin(xx / 211)
    cell = ((v // 300).astype(np.int64) * 7919 + (u // 300).astype(np.int64)) % 4093
    table = np.random.default_rng(seed).integers(30, 225, (4093, 3)).astype(np.float32)
    rng = np.random.default_rng(rows.start)
    stripes = 6 * np.sin(xx / 5 + yy / 9)
    out = np.empty((3, *xx.shape), np.uint8)
    for c in range(3):
        plane = table[cell, c] + stripes * (c - 1) + rng.normal(0, 6, xx.shape)
        out[c] = plane.clip(0, 255)
    return out


def write_rgb(path: Path, size: int, chunk: int = 1024) -> None:
    """The (c, y, x) uint8 OME-Zarr image, band by band of ``chunk`` rows (each band's
    share of every level written with it, every second pixel: memory is a band)."""
    import zarr
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w")
    n_levels = 1
    while size >> n_levels >= 1000 and n_levels < 8:
        n_levels += 1
    levels = []
    for k in range(n_levels):
        side = -(-size // 2**k)
        levels.append(group.create_array(
            str(k), shape=(3, side, side), dtype="u1", fill_value=0,
            chunks=(1, min(chunk, side), min(chunk, side)), dimension_names=["c", "y", "x"]))
    for y in range(0, size, chunk):
        band = texture(slice(y, min(size, y + chunk)), size)
        levels[0][:, y:y + band.shape[1]] = band
        for k in range(1, n_levels):
            f = 2**k  # chunk is a multiple of every factor: bands start on a kept row
            levels[k][:, y // f:y // f + -(-band.shape[1] // f)] = band[:, ::f, ::f]
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, float(2**k), float(2**k)]}]} for k in range(n_levels)]
    write_multiscales_metadata(group, datasets, axes=[
        {"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
        {"name": "x", "type": "space"}])


def write_in_child(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--write-only", *args], check=True)
    return time.perf_counter() - started


def unet(path: Path, channels: int) -> Path:
    """A small U-Net with random weights and a sharpened head (its classes vary)."""
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig("unet", 3, in_channels=channels, depth=2, base_channels=8,
                         mean=[0.5] * channels, std=[0.25] * channels)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return save_checkpoint(path, model, config)


# ----------------------------------------------------------------------------- running

def run_dock(app: Any, widget: Any, memory: Memory, frames: Frames, camera: Camera
             ) -> tuple[str, float]:
    """Press Run and wait (in a Qt event loop, as napari runs) until the run has ended."""
    from qtpy.QtCore import QEventLoop

    loop = QEventLoop()
    ended: list[str] = []

    def on_end(outcome: str) -> None:
        ended.append(outcome)
        loop.quit()

    widget.run_finished.connect(on_end)
    memory.reset()
    frames.start()
    camera.start()
    started = time.perf_counter()
    widget.run_button.click()
    if not ended:
        loop.exec()
    seconds = time.perf_counter() - started
    camera.stop()
    print(f"  {frames.stop()}", flush=True)
    widget.run_finished.disconnect(on_end)
    return ended[0], seconds


def segment(viewer: Any, app: Any, store: Path, kind: str, args: argparse.Namespace,
            checkpoint: Path, memory: Memory) -> None:
    from napari_unsupseg.core.base.omezarr import open_omezarr

    layers = viewer.open(str(store), plugin="napari-ome-zarr")
    image = open_omezarr(store)
    height, width = image.plane_size
    frames, camera = Frames(args.stalls), Camera(viewer, float(max(height, width)), args.pan)
    frames.follow(viewer)
    viewer.reset_view()
    if args.baseline > 0:
        print(f"{kind}, no run, the camera moving for {args.baseline:g} s (napari's own "
              "cost of loading and drawing tiles here):", flush=True)
        idle(args.baseline, frames, camera)
    for engine in args.engines:
        name = "Presegment" if engine == "preseg" else "Model inference"
        _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", name)
        widget.image_picker.value = layers[0]
        if image.plane_shape:
            widget.plane_mode.value = "every plane (one by one)"
        widget.block_size.widget.value = args.block
        if engine == "preseg":
            per_block = args.segments_per_block * height * width / args.block**2
            widget.form.set_values({"method": "slic", "n_segments": max(2, round(per_block))})
        else:
            widget.checkpoint.value = str(checkpoint)
            widget.form.set_values({"tile_size": args.tile})
        print(f"{kind} {engine}: {widget.controls.limits.text()}", flush=True)
        before = memory.process.memory_info().rss / 2**30
        outcome, seconds = run_dock(app, widget, memory, frames, camera)
        peak = memory.peak / 2**30
        goal = GOAL_GIB[kind]
        print(f"  {outcome} in {seconds:.1f} s; peak RSS during the run {peak:.2f} GiB "
              f"(goal < {goal} GiB: {'met' if peak < goal else 'NOT met'}; {before:.2f} GiB "
              "when it started)", flush=True)
        print(f"  RSS every {TRACE_S:g} s (GiB): "
              + " ".join(f"{g:.2f}" for g in memory.trace), flush=True)
        print(f"  status: {widget.status.text()}", flush=True)
        labels = [layer for layer in viewer.layers if "labels" in layer.metadata]
        if labels:
            found = open_omezarr(Path(labels[-1].metadata["store"]) / "labels"
                                 / labels[-1].metadata["labels"])
            print(f"  store: labels/{labels[-1].metadata['labels']} {found.level0.shape} "
                  f"{found.level0.dtype}, {len(found.levels)} levels; layer "
                  f"'{labels[-1].name}' multiscale={labels[-1].multiscale}", flush=True)
        viewer.window.remove_dock_widget(widget)


def screenshot(viewer: Any, app: Any, path: Path) -> None:
    """The window: the image with its superpixels over it (the classes hidden), zoomed on
    the middle so that regions and superpixels can be told apart."""
    for layer in viewer.layers:
        if str(layer.metadata.get("labels", "")).startswith("predict"):
            layer.visible = False
    viewer.reset_view()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = camera.zoom * 6
    app.processEvents()
    viewer.screenshot(str(path), canvas_only=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="RGB image side (px).")
    parser.add_argument("--no-rgb", action="store_true", help="Skip the RGB image.")
    parser.add_argument("--volume", action="store_true", help="Also the 2-channel z-stack.")
    parser.add_argument("--volume-size", type=int, default=2048, help="z-stack plane side.")
    parser.add_argument("--planes", type=int, default=64, help="z-stack planes.")
    parser.add_argument("--block", type=int, default=1024, help="The docks' block size.")
    parser.add_argument("--tile", type=int, default=1024, help="Prediction tile size.")
    parser.add_argument("--segments-per-block", type=float, default=200,
                        help="SLIC superpixels per block (n_segments scales with the image).")
    parser.add_argument("--engines", nargs="+", choices=("preseg", "predict"),
                        default=["preseg", "predict"])
    parser.add_argument("--pan", type=float, default=0.5,
                        help="Seconds between camera moves during a run (0: none).")
    parser.add_argument("--baseline", type=float, default=10.0,
                        help="Seconds of camera moves with no run, measured first (0: none).")
    parser.add_argument("--dask-cache", type=float, default=None, metavar="GB",
                        help="napari's cache of image tiles for this run (default: napari's "
                        "setting, a share of the machine's memory; 0: none).")
    parser.add_argument("--stalls", action="store_true",
                        help="Say where the main thread was while it was late (diagnosis).")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Write the stores here (and keep them) instead of a temp folder; "
                        "an RGB store already there is used as it is.")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="Save the viewer (RGB image, labels over it) here at the end.")
    parser.add_argument("--write-only", choices=("rgb", "volume"), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only == "rgb":
        return write_rgb(args.store, args.size)
    if args.write_only == "volume":
        from bench_zarr import write_volume

        return write_volume(args.store, args.volume_size, args.planes)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        stores = []
        if not args.no_rgb:
            store = folder / "rgb.ome.zarr"
            if args.keep is not None and (store / "zarr.json").exists():
                print(f"reusing {store} (kept by an earlier run)", flush=True)
            else:
                seconds = write_in_child(["rgb", "--store", str(store), "--size",
                                          str(args.size)])
                print(f"wrote {store}: 3 x {args.size} x {args.size} uint8 "
                      f"({3 * args.size**2 / 2**30:.2f} GiB) in {seconds:.1f} s", flush=True)
            stores.append(("rgb", store, 3))
        if args.volume:
            store = folder / "volume.ome.zarr"
            seconds = write_in_child(["volume", "--store", str(store), "--volume-size",
                                      str(args.volume_size), "--planes", str(args.planes)])
            gib = 4 * args.planes * args.volume_size**2 / 2**30
            print(f"wrote {store}: 2 x {args.planes} x {args.volume_size}^2 uint16 "
                  f"({gib:.2f} GiB) in {seconds:.1f} s", flush=True)
            stores.append(("volume", store, 2))

        import napari
        from napari.settings import get_settings

        # napari keeps the image tiles it has read (dask) up to this size: panning over a
        # large image fills it whatever the run does.
        cache = get_settings().application.dask
        size = cache.cache if args.dask_cache is None else args.dask_cache
        print(f"napari's dask cache: {'on' if cache.enabled else 'off'}, up to "
              f"{size:.1f} GB", flush=True)
        memory = Memory()
        viewer = napari.Viewer(title="bench_napari_zarr")
        viewer.window.resize(*WINDOW)
        if args.dask_cache is not None:  # after the viewer, which sizes it from the settings;
            from napari.utils import resize_dask_cache  # this process only, nothing saved

            resize_dask_cache(int(args.dask_cache * 1e9))
        app = napari.qt.get_qapp()
        for kind, store, channels in stores:
            checkpoint = unet(folder / f"unet{channels}.pth", channels)
            segment(viewer, app, store, kind, args, checkpoint, memory)
            if args.screenshot is not None and kind == "rgb":
                screenshot(viewer, app, args.screenshot)
                print(f"screenshot: {args.screenshot}", flush=True)
            if len(stores) > 1:
                viewer.layers.clear()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"process peak (ru_maxrss, the whole session, viewer included): "
              f"{maxrss:.2f} GiB", flush=True)
        memory.stop()
        viewer.close()
    return None


if __name__ == "__main__":
    main()
