"""OME-Zarr block by block: time and peak memory of the command line on a large volume.

Writes a synthetic two-channel uint16 OME-Zarr volume (default 2,048 x 2,048 x 64
planes: 1 GiB), chunk by chunk, to a temporary folder; then runs, each in a child
process, ``napari-unsupseg preseg`` and ``napari-unsupseg predict`` (``--engines`` picks
them) with a small untrained U-Net (the package's U-Net configuration, random weights
with a sharpened head so that its classes vary), both writing OME-Zarr labels into the
store block by block. For each it prints the wall time, the child's peak memory (its
own ru_maxrss, from ``os.wait4``), that the labels are in the store, and the seams:

- prediction's classes: on the pixels beside block borders of the first plane, the share
  whose class is the whole-plane prediction's;
- superpixels (preseg) and objects (predict; the U-Net's class 1 taken as objects): on
  the pixel pairs straddling block borders of the first plane, the share that the block
  run and a whole-plane run put alike (one label in both, or two in both: a Rand index
  of the border pairs), stitched (as written) and not stitched (the same labels
  numbered anew in each core, what a run without stitching writes);
- ``--engines volume``: supervoxels (``preseg --stack-mode volume``) in 3-D blocks,
  the same figure over the border voxel pairs against a one-block run of the volume
  (when the volume is at most 16 megavoxels).

Goals: peak under 3 GiB; seams >= 99%.

    python benchmarks/bench_zarr.py                # 2048 x 2048 x 64
    python benchmarks/bench_zarr.py --size 512 --planes 4
    python benchmarks/bench_zarr.py --planes 4 --engines predict
    python benchmarks/bench_zarr.py --size 256 --planes 16 --engines volume
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_GIB = 3.0
SEAM_GOAL = 0.99
#: Largest volume (voxels) whose one-block supervoxels are computed for the 3-D seams.
VOLUME_REFERENCE = 16_000_000


def write_volume(path: Path, size: int, planes: int, chunk: int = 1024) -> None:
    """A (c, z, y, x) uint16 OME-Zarr image with two levels, written plane by plane."""
    import zarr
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w")
    shapes = [(2, planes, size, size), (2, planes, size // 2, size // 2)]
    levels = [group.create_array(str(k), shape=s, dtype="u2", fill_value=0,
                                 chunks=(1, 1, min(chunk, s[2]), min(chunk, s[3])),
                                 dimension_names=["c", "z", "y", "x"])
              for k, s in enumerate(shapes)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(0)
    for z in range(planes):
        for c in range(2):
            # Smooth blobs (cells of about 60 px) plus a little noise: regions to segment.
            plane = (np.sin(xx / (19 + 4 * c) + z / 7) * np.cos(yy / (23 - 3 * c) - z / 11)
                     + 0.1 * rng.standard_normal((size, size), np.float32))
            plane = ((plane + 1.5) * 20000).clip(0, 65535).astype(np.uint16)
            levels[0][c, z] = plane
            levels[1][c, z] = plane[::2, ::2]
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, float(2 ** k), float(2 ** k)]}]}
        for k in range(2)]
    write_multiscales_metadata(group, datasets, axes=[
        {"name": "c", "type": "channel"}, {"name": "z", "type": "space"},
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}])


def small_unet(path: Path) -> Path:
    """The package's U-Net configuration with random weights, saved as a checkpoint; its
    class 1 (label 2) is taken as objects, so that prediction splits and stitches them."""
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig("unet", 3, in_channels=2, depth=2, base_channels=8,
                         mean=[0.5, 0.5], std=[0.25, 0.25], object_class=2)
    model = build_model(config)
    with torch.no_grad():  # an untrained head gives one class everywhere; sharpen it
        model.head.weight.mul_(20.0)
    return save_checkpoint(path, model, config)


def run_child(argv: list[str]) -> tuple[float, float, int]:
    """(seconds, peak GiB, exit code) of one command line run in a child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "napari_unsupseg.cli", *argv])
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 2**20, child.returncode  # ru_maxrss: KiB on Linux


def report(name: str, seconds: float, peak: float, code: int, store: Path) -> None:
    from napari_unsupseg.core.base.omezarr import open_omezarr

    labels = open_omezarr(store / "labels" / name) if code == 0 else None
    found = (f"labels/{name} in the store: shape {labels.level0.shape}, "
             f"{len(labels.levels)} levels" if labels else "no labels (the run failed)")
    verdict = "met" if peak < GOAL_GIB else "NOT met"
    print(f"{name}: {seconds:.1f} s, child peak memory {peak:.2f} GiB (goal < {GOAL_GIB} "
          f"GiB: {verdict}); {found}", flush=True)


def seam(store: Path, checkpoint: Path, tile: int, overlap: int, block: int) -> float:
    """Seam agreement of the first plane against a whole-plane prediction; prints the
    objects' seams too."""
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.base.images import intensity_range
    from napari_unsupseg.core.base.omezarr import open_omezarr, read_block
    from napari_unsupseg.core.predict import PredictParams, predict
    from napari_unsupseg.core.predict import blocks as blocks_mod
    from napari_unsupseg.core.predict.objects import separate_objects

    image = open_omezarr(store)
    every = slice(None)
    plane = read_block(image, (0,), every, every)
    sample = blocks_mod.sample_image(image)
    params = PredictParams(checkpoint=str(checkpoint), tile_size=tile, overlap=overlap,
                           objects=False)
    # The whole-image run scales by the whole volume's sample, as the block run does.
    low, high = intensity_range(sample, "percentile")
    scaled = blocks_mod.scale_block(plane, low, high)
    whole = drive(predict(scaled, PredictParams(
        checkpoint=str(checkpoint), tile_size=max(plane.shape[:2]), intensity="dtype",
        objects=False))).labels
    blocked = np.asarray(open_omezarr(store / "labels" / "predict").level0[0])
    core, margin = blocks_mod.block_geometry("predict", params, block)
    plan = blocks_mod.plan_blocks(plane.shape[:2], core, margin)
    print(f"predict: {len(np.unique(whole))} classes in the whole-plane run; all pixels "
          f"agree on {(blocked == whole).mean():.4%}", flush=True)
    objects_path = store / "labels" / "predict_objects"
    if objects_path.exists():
        found = np.asarray(open_omezarr(objects_path).level0[0])
        reference = separate_objects(whole == 2)
        print_pair_seams("predict objects", found, reference, plan,
                         f"{int(reference.max())} objects in the whole-plane run")
    return blocks_mod.seam_agreement(blocked, whole, plan)


def print_pair_seams(name: str, stitched: np.ndarray, whole: np.ndarray, plan: list,
                     note: str) -> None:
    """The border-pair agreement with the whole run, stitched and not."""
    from napari_unsupseg.core.predict import blocks as blocks_mod

    joined = blocks_mod.border_pair_agreement(stitched, whole, plan)
    cut = blocks_mod.border_pair_agreement(blocks_mod.cut_at_cores(stitched, plan), whole,
                                           plan)
    verdict = "met" if joined >= SEAM_GOAL else "NOT met"
    print(f"{name}: border pairs alike with the whole run: stitched {joined:.2%}, not "
          f"stitched {cut:.2%} (goal >= {SEAM_GOAL:.0%}: {verdict}); pairs in two labels "
          f"{blocks_mod.border_pairs_split(stitched, plan):.2%} (whole run "
          f"{blocks_mod.border_pairs_split(whole, plan):.2%}); {note}", flush=True)


def preseg_seams(store: Path, block: int) -> None:
    """Superpixel seams of the first plane against a whole-plane run."""
    from napari_unsupseg.core.base.omezarr import open_omezarr, read_block
    from napari_unsupseg.core.predict import blocks as blocks_mod
    from napari_unsupseg.core.preseg import PRESEG_METHODS, PresegParams, method_kwargs

    image = open_omezarr(store)
    params = PresegParams()
    low, high = blocks_mod.preseg_range(image, params)
    plane = blocks_mod.scale_block(read_block(image, (0,), slice(None), slice(None)),
                                   low, high)
    whole = PRESEG_METHODS[params.method](plane, **method_kwargs(params))
    blocked = np.asarray(open_omezarr(store / "labels" / "preseg").level0[0])
    import zarr

    # The run's own geometry (its margin is measured on the image), from its metadata.
    about = dict(zarr.open_group(str(store / "labels" / "preseg"), mode="r").attrs)
    about = about["napari_unsupseg"]
    core, margin = about["block_core"], about["margin"]
    plan = blocks_mod.plan_blocks(plane.shape[:2], core, margin, about["block_align"])
    print_pair_seams("preseg", blocked, whole, plan,
                     f"{len(plan)} blocks of {core} px, margin {margin} px")


def volume_seams(store: Path, block: int) -> None:
    """Supervoxel seams in 3-D blocks against a one-block run of the volume."""
    import json

    from napari_unsupseg.core.base.omezarr import open_omezarr, read_whole
    from napari_unsupseg.core.predict import blocks as blocks_mod
    from napari_unsupseg.core.preseg import PresegParams, segment_volume

    image = open_omezarr(store)
    labels = open_omezarr(store / "labels" / "volume")
    if np.prod(labels.level0.shape) > VOLUME_REFERENCE:
        print("volume: too large for a one-block reference run; seams not measured")
        return
    import zarr

    about = dict(zarr.open_group(str(store / "labels" / "volume"), mode="r").attrs)
    about = about["napari_unsupseg"]
    params = PresegParams(**{k: v for k, v in about["parameters"].items()
                             if k in PresegParams.__dataclass_fields__})
    low, high = blocks_mod.preseg_range(image, params)
    volume = blocks_mod.scale_block(read_whole(image), low, high)
    whole = segment_volume(volume, params)
    blocked = np.asarray(labels.level0[:])
    plan = blocks_mod.plan_blocks(blocked.shape, about["block_core"], about["margin"],
                                  about["block_align"])
    print_pair_seams("volume", blocked, whole, plan,
                     f"{len(plan)} 3-D blocks of {about['block_core']}, margin "
                     f"{about['margin']}; {json.dumps(about['stitched'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="Plane side in pixels.")
    parser.add_argument("--planes", type=int, default=64, help="Number of z planes.")
    parser.add_argument("--block", type=int, default=1024, help="Block side (--block).")
    parser.add_argument("--tile", type=int, default=1024, help="Prediction tile size.")
    parser.add_argument("--engines", nargs="+", choices=("preseg", "predict", "volume"),
                        default=["preseg", "predict"], help="Which commands to run.")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Write the volume here (and keep it) instead of a temp folder.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = (args.keep or Path(tmp)) / "volume.ome.zarr"
        start = time.perf_counter()
        write_volume(store, args.size, args.planes)
        gib = 2 * 2 * args.planes * args.size**2 / 2**30
        print(f"wrote {store}: 2 x {args.planes} x {args.size} x {args.size} uint16 "
              f"({gib:.2f} GiB) in {time.perf_counter() - start:.1f} s", flush=True)
        if "preseg" in args.engines:
            seconds, peak, code = run_child(["preseg", str(store), "--quiet", "--block",
                                             str(args.block)])
            report("preseg", seconds, peak, code, store)
            if code == 0:
                preseg_seams(store, args.block)
        if "volume" in args.engines:
            seconds, peak, code = run_child(["preseg", str(store), "--quiet", "--block",
                                             str(args.block), "--stack-mode", "volume",
                                             "--labels-name", "volume"])
            report("volume", seconds, peak, code, store)
            if code == 0:
                volume_seams(store, args.block)
        if "predict" not in args.engines:
            return
        checkpoint = small_unet(Path(tmp) / "unet.pth")
        seconds, peak, code = run_child(["predict", str(store), "--checkpoint",
                                         str(checkpoint), "--quiet", "--tile",
                                         str(args.tile), "--block", str(args.block)])
        report("predict", seconds, peak, code, store)
        if code == 0:
            agreement = seam(store, checkpoint, args.tile, 64, args.block)
            print(f"predict: seam agreement (pixels beside block borders, plane 0, vs the "
                  f"whole-plane run): {agreement:.4%} (goal >= 99%)", flush=True)


if __name__ == "__main__":
    main()
