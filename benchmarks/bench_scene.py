"""A remote-sensing job end to end, on the command line: a SIZE x SIZE 4-band uint16
GeoTIFF with a nodata border, an area of interest drawn in another CRS, the unsupervised
segmenter on the AOI in bounded memory, then the labels vectorised to a GeoPackage with
per-band statistics. Prints each step's wall time and peak resident memory (GNU time's
maximum resident set of its own child process, input included), and checks the result:
no label outside the AOI or on nodata, the polygons read back with their CRS and
attributes.

    python benchmarks/bench_scene.py                        # 10,000 x 10,000 (several minutes)
    python benchmarks/bench_scene.py --size 2000 --budget 1024

The pixels are ``bench_large.py``'s land-cover mosaic (six classes, patches about 128 px
across), on a 0.5 m grid in UTM 33N; nodata is 0 on a 300-pixel border band and on a
diagonal strip; the AOI is an irregular polygon in WGS 84 covering most of the scene.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_large import scene  # noqa: E402 - the land-cover mosaic beside this script

PIXEL = 0.5
ORIGIN = (500_000.0, 5_600_000.0)  # UTM 33N, metres
BORDER = 300


def write_scene(path: Path, size: int) -> np.ndarray:
    """The scene as a tiled GeoTIFF with nodata 0; returns its truth (classes 1..6)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    image, truth = scene(size)
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    nodata = ((rows < BORDER) | (cols < BORDER) | (rows >= size - BORDER)
              | (np.abs(rows - cols) < size // 100))
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 4,
               "dtype": "uint16", "crs": "EPSG:32633", "nodata": 0,
               "transform": Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as out:
        for top in range(0, size, 1024):
            band = slice(top, min(top + 1024, size))
            block = np.where(nodata[band][..., None], 0, image[band]).transpose(2, 0, 1)
            out.write(block, window=Window(0, top, size, block.shape[1]))
    truth[nodata] = 0
    return truth


def write_aoi(path: Path, size: int) -> None:
    """An irregular polygon over most of the scene, written in WGS 84 (not the scene's CRS)."""
    from rasterio.warp import transform_geom

    corners = [(0.12, 0.08), (0.9, 0.15), (0.95, 0.7), (0.6, 0.93), (0.1, 0.85), (0.2, 0.5)]
    ring = [(ORIGIN[0] + fx * size * PIXEL, ORIGIN[1] - fy * size * PIXEL) for fx, fy in corners]
    polygon = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    wgs84 = transform_geom("EPSG:32633", "EPSG:4326", polygon)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "field"}, "geometry": wgs84}]}))


def run(arguments: list[str], folder: Path) -> tuple[float, float]:
    """One command in a child process: its wall time and its own peak resident memory
    (GiB, from GNU time: ``ru_maxrss`` of children would be the largest of every step)."""
    report = folder / "time.txt"
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-m",
                    "napari_unsupseg.cli", *arguments], check=True)
    seconds = time.perf_counter() - start
    return seconds, int(report.read_text().split()[-1]) / 2**20  # KiB -> GiB


def check(labels_path: Path, polygons: Path, aoi: Path, truth: np.ndarray) -> dict[str, object]:
    """Labels outside the AOI or on nodata, the polygons' CRS and attributes, and the
    labels' Hungarian mIoU against the classes inside the AOI (a regular subsample)."""
    import pyogrio
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom

    from napari_unsupseg.core.review.scores import hungarian_iou

    with rasterio.open(labels_path) as src:
        labels, transform, crs = src.read(1), src.transform, src.crs
        rows, cols = src.height, src.width
    geometry = json.loads(aoi.read_text())["features"][0]["geometry"]
    inside = ~geometry_mask([transform_geom("EPSG:4326", crs, geometry)], (rows, cols),
                            transform)
    x0, y0 = transform * (0, 0)
    col0, row0 = round((x0 - ORIGIN[0]) / PIXEL), round((ORIGIN[1] - y0) / PIXEL)
    window_truth = truth[row0 : row0 + rows, col0 : col0 + cols]
    step = max(1, rows // 2000)
    scored = np.where(inside, window_truth, 0)[::step, ::step]
    info = pyogrio.read_info(polygons)
    return {
        "labelled outside the AOI": int((labels[~inside] > 0).sum()),
        "labelled on nodata": int(((labels > 0) & (window_truth == 0)).sum()),
        "mIoU inside the AOI": round(hungarian_iou(np.where(scored > 0, labels[::step, ::step],
                                                            0), scored), 3),
        "polygons": int(info["features"]),
        "CRS": str(info["crs"]),
        "attributes": ", ".join(info["fields"][:8]) + ", ...",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=3072, help="--memory-budget-mb (MB)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "bench_scene")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    source, aoi = args.folder / f"scene_{args.size}.tif", args.folder / "aoi.geojson"
    labels, polygons = args.folder / f"labels_{args.size}.tif", args.folder / "regions.gpkg"
    start = time.perf_counter()
    truth = write_scene(source, args.size)
    write_aoi(aoi, args.size)
    print(f"{args.size} x {args.size} 4-band uint16 GeoTIFF, nodata border and strip, AOI in "
          f"WGS 84: written in {time.perf_counter() - start:.0f} s")
    for path in (labels, polygons):
        path.unlink(missing_ok=True)
    seconds, peak = run(["backprop", str(source), "--aoi", str(aoi), "-o", str(labels),
                         "--memory-budget-mb", str(args.budget), "--quiet"], args.folder)
    print(f"backprop on the AOI (defaults, --memory-budget-mb {args.budget}): {seconds:.0f} s, "
          f"{seconds / (args.size**2 / 1e6):.2f} s per megapixel of the scene, peak "
          f"{peak:.2f} GiB")
    seconds, peak = run(["geojson", str(labels), "-o", str(polygons), "--image", str(source),
                         "--aoi", str(aoi)], args.folder)
    print(f"vectorised to GeoPackage with 4-band statistics: {seconds:.0f} s, peak {peak:.2f} GiB")
    for key, value in check(labels, polygons, aoi, truth).items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
