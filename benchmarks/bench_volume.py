"""Benchmark: nuclei of a z-stack segmented as a volume against plane by plane, on a
synthetic fluorescence volume with an exact answer.

    python benchmarks/bench_volume.py                      # 48 x 192 x 192, z spacing 2.5
    python benchmarks/bench_volume.py --seeds 0,1,2 --z-spacing 3
    python benchmarks/bench_volume.py --shape 24,96,96     # a quick look

The volume: ellipsoid nuclei of random sizes (semi-axes 8-14 physical units) and
orientations (turned about z), about half of them placed against a neighbour so that
they touch or press into it (the truth gives each voxel to the nucleus whose surface
it lies deepest inside), uneven brightness (per nucleus 0.45-1, a smooth texture of
+-15 %, light fading by 30 % from the first to the last plane), blurred by a Gaussian
PSF twice as long along z as across (1.2 and 2.4 physical units), then Poisson noise
(about 60 photons at the brightest) and Gaussian read noise (2 photons). Planes lie
``--z-spacing`` units apart, pixels one unit.

Methods, all from the same foreground (Otsu's threshold of the volume smoothed by one
pixel's width, the same physical width along z), so they differ only in how objects are
found:

- ``3-D objects``: the foreground split as a volume with the voxel spacing
  (``separate_objects(mask, spacing)``: anisotropic distance map, h-maxima, watershed);
- ``3-D, no spacing``: the same split with the voxels taken as cubes (what the spacing
  is worth);
- ``planes joined``: split plane by plane (``separate_objects(mask)``), then objects of
  neighbouring planes joined where they share a part of the smaller one (``join_planes``),
  at every part of :data:`JOIN_GRID`; the summary keeps the **best part on the same
  volume**, which flatters this baseline;
- ``otsu + cc``: the foreground's 3-D connected components (6-connected);
- ``backprop 3-D``: the one method with its own foreground: the backprop segmenter in
  volume mode (3-D network, slic supervoxels of about :data:`BACKPROP_SUPERVOXEL_VOXELS`
  voxels with the voxel spacing, two labels, training on a copy of about
  :data:`BACKPROP_TRAIN_PIXELS` voxels per plane), its brighter label
  split by ``separate_objects(mask, spacing)``; its time includes the segmenter.

Score: 3-D instance F1 at IoU > 0.5 against the true nuclei (``review.compare``). Time is
the method's own (the shared foreground excluded, shown on its own line; for the joined
planes, the split and the joins at every part of the grid); peak memory is
``ru_maxrss`` of a fresh forked process per method (it includes the volume and the
imports: the process's resident memory before the methods is shown beside the volume).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Photons at the brightest nucleus, background photons, read noise (photons).
PEAK_PHOTONS, BACKGROUND_PHOTONS, READ_NOISE = 60.0, 4.0, 2.0
#: PSF standard deviations in physical units (across, along z).
PSF_XY, PSF_Z = 1.2, 2.4
#: Nuclei semi-axes range, physical units.
RADII = (8.0, 14.0)
#: Voxels per plane of the copy the backprop network trains on (bounds its time).
BACKPROP_TRAIN_PIXELS = 8192
#: Voxels per supervoxel of the backprop row: the default count (2000 in the volume) gave
#: supervoxels that bleed across nuclei edges (foreground IoU 0.73 against 0.80 at 24 x 96
#: x 96, seed 0).
BACKPROP_SUPERVOXEL_VOXELS = 40
#: Shares of the smaller object that join two objects of neighbouring planes.
JOIN_GRID = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)


@dataclass
class Volume:
    image: np.ndarray  #: (Z, Y, X) float32 photon counts
    truth: np.ndarray  #: (Z, Y, X) uint16 instance labels
    spacing: tuple[float, float, float]


def nuclei_volume(shape: tuple[int, int, int], z_spacing: float, seed: int) -> Volume:
    """The synthetic stack described in the module docstring."""
    rng = np.random.default_rng(seed)
    spacing = (z_spacing, 1.0, 1.0)
    extent = np.asarray(shape) * np.asarray(spacing)
    nuclei = place_nuclei(extent, rng)
    truth, inside = paint_nuclei(shape, spacing, nuclei)
    brightness = np.concatenate([[0.0], rng.uniform(0.45, 1.0, len(nuclei))])
    texture = 1.0 + 0.15 * smooth_noise(shape, 2.0, rng)
    fading = np.linspace(1.0, 0.7, shape[0])[:, None, None]
    signal = brightness[truth] * texture * fading * inside
    from scipy import ndimage as ndi

    blurred = ndi.gaussian_filter(signal, (PSF_Z / z_spacing, PSF_XY, PSF_XY))
    photons = rng.poisson(blurred * PEAK_PHOTONS + BACKGROUND_PHOTONS).astype(np.float32)
    photons += rng.normal(0.0, READ_NOISE, shape).astype(np.float32)
    return Volume(photons, truth.astype(np.uint16), spacing)


def place_nuclei(extent: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """(centre, semi-axes, angle) of each nucleus; about half placed against another one."""
    nuclei: list[tuple[np.ndarray, ...]] = []
    target = int(0.22 * np.prod(extent) / (4 / 3 * np.pi * np.mean(RADII) ** 3))
    for _ in range(target * 40):
        if len(nuclei) >= target:
            break
        axes = rng.uniform(*RADII, size=3)
        size = float(np.mean(axes))
        if nuclei and rng.random() < 0.5:  # against a neighbour: touching, pressed in a bit
            other = nuclei[rng.integers(len(nuclei))]
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            gap = rng.uniform(0.8, 0.95) * (size + float(np.mean(other[1])))
            centre = other[0] + direction * gap
        else:
            centre = rng.uniform(0, 1, 3) * extent
        if np.any(centre < axes * 0.5) or np.any(centre > extent - axes * 0.5):
            continue
        close = [np.linalg.norm(centre - c) < 0.8 * (size + float(np.mean(a)))
                 for c, a, _ in nuclei]
        if not any(close):
            nuclei.append((centre, axes, rng.uniform(0, np.pi)))
    return nuclei


def paint_nuclei(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 nuclei: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels (each voxel to the nucleus it lies deepest inside) and the union."""
    depth = np.full(shape, np.inf, np.float32)  # normalised ellipsoid radius; < 1 inside
    truth = np.zeros(shape, np.int32)
    sides = np.asarray(spacing)
    for number, (centre, axes, angle) in enumerate(nuclei, start=1):
        low = np.maximum(((centre - axes.max()) / sides).astype(int), 0)
        high = np.minimum(((centre + axes.max()) / sides).astype(int) + 2, shape)
        box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        z, y, x = (np.arange(a, b) * s - c for a, b, s, c in zip(low, high, sides, centre,
                                                                  strict=True))
        z, y, x = np.meshgrid(z, y, x, indexing="ij")
        u = np.cos(angle) * y + np.sin(angle) * x
        v = -np.sin(angle) * y + np.cos(angle) * x
        radius = np.sqrt((z / axes[0]) ** 2 + (u / axes[1]) ** 2 + (v / axes[2]) ** 2)
        closer = (radius <= 1.0) & (radius < depth[box])
        depth[box][closer] = radius[closer]
        truth[box][closer] = number
    return truth, truth > 0


def smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise of unit standard deviation (a nucleus's texture)."""
    from scipy import ndimage as ndi

    noise = ndi.gaussian_filter(rng.normal(size=shape), sigma)
    return noise / (noise.std() or 1.0)


# ------------------------------------------------------------------------------ methods


def foreground(volume: Volume) -> np.ndarray:
    """Otsu's threshold of the volume smoothed by one pixel's width in physical units."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    sigma = tuple(1.0 / s for s in volume.spacing)
    smooth = ndi.gaussian_filter(volume.image, sigma)
    return smooth > threshold_otsu(smooth)


def objects_3d(mask: np.ndarray, volume: Volume) -> dict[str, np.ndarray]:
    from napari_unsupseg.core.predict.objects import separate_objects

    return {"": separate_objects(mask, volume.spacing)}


def objects_3d_isotropic(mask: np.ndarray, volume: Volume) -> dict[str, np.ndarray]:
    from napari_unsupseg.core.predict.objects import separate_objects

    return {"": separate_objects(mask, (1.0, 1.0, 1.0))}


def planes_joined(mask: np.ndarray, volume: Volume) -> dict[str, np.ndarray]:
    from napari_unsupseg.core.predict.objects import join_planes, separate_objects

    per_plane = separate_objects(mask)
    return {f"part {part}": join_planes(per_plane, part) for part in JOIN_GRID}


def otsu_cc(mask: np.ndarray, volume: Volume) -> dict[str, np.ndarray]:
    from skimage.measure import label

    return {"": label(mask, connectivity=1)}


def backprop_volume(mask: np.ndarray, volume: Volume) -> dict[str, np.ndarray]:
    """Backprop in volume mode for the foreground (the brighter of two labels), then the
    3-D split; the shared Otsu foreground is not used."""
    from napari_unsupseg.core.backprop import segment
    from napari_unsupseg.core.backprop.params import default_params
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.predict.objects import separate_objects

    z, y, x = volume.spacing
    params = default_params(stack_mode="volume", spacing_z=z, spacing_y=y, spacing_x=x,
                            superpixels="slic", n_labels=2, device="cpu",
                            superpixel_n_segments=volume.image.size // BACKPROP_SUPERVOXEL_VOXELS,
                            train_pixels=BACKPROP_TRAIN_PIXELS)
    labels = run_to_end(segment(volume.image[..., np.newaxis], params)).labels
    means = [volume.image[labels == k].mean() for k in (1, 2)]
    own = labels == 1 + int(np.argmax(means))
    return {"": separate_objects(own, volume.spacing)}


#: Each method gives its labels by setting name ("" when it has no settings).
METHODS: dict[str, Callable[[np.ndarray, Volume], dict[str, np.ndarray]]] = {
    "3-D objects": objects_3d,
    "3-D, no spacing": objects_3d_isotropic,
    "planes joined": planes_joined,
    "otsu + cc": otsu_cc,
    "backprop 3-D": backprop_volume,
}


def f1_3d(found: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """3-D instance F1 at IoU > 0.5, and the number of objects found."""
    from napari_unsupseg.core.review import compare

    if not found.any():
        return 0.0, 0
    result = compare(truth, found)
    return result.f1, result.n_candidate


def _run_one(name: str, mask: np.ndarray, volume: Volume) -> dict[str, object]:
    """One method in this (forked) process: its best setting's F1 and object count, every
    setting's F1, seconds (all settings together) and peak memory."""
    start = time.perf_counter()
    found = METHODS[name](mask, volume)
    seconds = time.perf_counter() - start
    scores = {setting: f1_3d(labels, volume.truth) for setting, labels in found.items()}
    best = max(scores, key=lambda setting: scores[setting][0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"f1": scores[best][0], "objects": scores[best][1], "setting": best,
            "settings": {k: v[0] for k, v in scores.items()}, "seconds": seconds,
            "peak_mb": peak}


def run_forked(name: str, mask: np.ndarray, volume: Volume) -> dict[str, float]:
    """Run a method in a fresh fork, so that its peak memory is its own (plus the volume)."""
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        return pool.apply(_run_one, (name, mask, volume))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="48,192,192", help="Z,Y,X voxels")
    parser.add_argument("--z-spacing", type=float, default=2.5,
                        help="distance between planes, in pixel widths")
    parser.add_argument("--seeds", default="0", help="volumes to make, e.g. 0,1,2")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in METHODS}
    for seed in seeds:
        volume = nuclei_volume(shape, args.z_spacing, seed)  # type: ignore[arg-type]
        start = time.perf_counter()
        mask = foreground(volume)
        shared = time.perf_counter() - start
        base = resident_mb()
        touching = touching_pairs(volume.truth)
        print(f"volume {shape} spacing {volume.spacing} seed {seed}: "
              f"{int(volume.truth.max())} nuclei, {touching} touching pairs; "
              f"foreground (Otsu) {shared:.2f} s; process resident before the methods "
              f"{base:.0f} MB")
        for name in METHODS:
            row = run_forked(name, mask, volume)
            rows[name].append(row)
            print(f"  {name:>15}: F1@0.5 {row['f1']:.3f}, {row['objects']:4d} objects, "
                  f"{row['seconds']:6.2f} s, peak {row['peak_mb']:.0f} MB"
                  + (f"  (best {row['setting']}; " + ", ".join(
                      f"{k} {v:.3f}" for k, v in row["settings"].items()) + ")"
                     if len(row["settings"]) > 1 else ""))
    print(f"mean over {len(seeds)} volume(s):")
    for name, group in rows.items():
        print(f"  {name:>15}: F1@0.5 {np.mean([r['f1'] for r in group]):.3f}, "
              f"{np.mean([r['seconds'] for r in group]):.2f} s, "
              f"peak {max(r['peak_mb'] for r in group):.0f} MB")
    gain = (np.mean([r["f1"] for r in rows["3-D objects"]])
            - np.mean([r["f1"] for r in rows["planes joined"]]))
    over_cc = (np.mean([r["f1"] for r in rows["3-D objects"]])
               - np.mean([r["f1"] for r in rows["otsu + cc"]]))
    print(f"3-D objects minus planes joined: {gain:+.3f} F1 (goal +0.200: "
          f"{'met' if gain >= 0.2 else 'not met'}); minus otsu + cc: {over_cc:+.3f}")


def resident_mb() -> float:
    """This process's resident memory now (MB): what each forked method starts from."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:  # not Linux: the peak so far instead
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * resource.getpagesize() / 2**20


def touching_pairs(truth: np.ndarray) -> int:
    """How many pairs of nuclei share a face (6-connected neighbours of another label)."""
    pairs = set()
    for axis in range(3):
        a = np.moveaxis(truth, axis, 0)
        lower, upper = a[:-1].ravel(), a[1:].ravel()
        differ = (lower > 0) & (upper > 0) & (lower != upper)
        keys = np.minimum(lower[differ], upper[differ]).astype(np.int64) * 65536 \
            + np.maximum(lower[differ], upper[differ])
        pairs.update(np.unique(keys).tolist())
    return len(pairs)


if __name__ == "__main__":
    main()
