"""Vectorising a large label raster: time and peak memory of ``napari-unsupseg geojson``.

Writes (once, into FOLDER) a SIZE x SIZE label GeoTIFF of wavy blocks about 32 pixels
across (about 100,000 polygons at 10,000 x 10,000) and a 4-band uint16 image on the same
grid, then runs the command in a child process to write a GeoPackage with per-band
statistics, and prints its wall time and peak resident memory (ru_maxrss of the child:
GDAL's memory counts, which tracemalloc would not see).

    python benchmarks/bench_vectors.py [FOLDER] [SIZE]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    """The label raster and the image, written strip by strip (tiled, compressed)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    labels_path, image_path = folder / f"labels_{size}.tif", folder / f"image_{size}.tif"
    if labels_path.exists() and image_path.exists():
        return labels_path, image_path
    common = {"driver": "GTiff", "height": size, "width": size, "crs": "EPSG:32633",
              "transform": Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0),
              "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    rng = np.random.default_rng(0)
    palette = rng.integers(1, 60, (size // 32 + 4) ** 2).astype(np.uint16)
    with rasterio.open(labels_path, "w", count=1, dtype="uint16", **common) as labels, \
            rasterio.open(image_path, "w", count=4, dtype="uint16", nodata=0, **common) as image:
        x = np.arange(size)
        for top in range(0, size, 1024):
            y = np.arange(top, min(top + 1024, size))[:, None]
            # Wavy block edges, so polygons have many vertices, as real regions do.
            by = ((y + 6 * np.sin(x / 23.0)) // 32).astype(np.int64) + 1
            bx = ((x + 6 * np.sin(y / 19.0)) // 32).astype(np.int64) + 1
            block = palette[(by * (size // 32 + 4) + bx) % palette.size]
            window = Window(0, top, size, len(y))
            labels.write(block, 1, window=window)
            bands = np.stack([block * (100 + 50 * b) + (x % 7).astype(np.uint16)
                              for b in range(4)]).astype(np.uint16)
            bands[:, :, :16] = 0  # a nodata edge
            image.write(bands, window=window)
    return labels_path, image_path


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    folder.mkdir(parents=True, exist_ok=True)
    labels, image = write_inputs(folder, size)
    output = folder / f"regions_{size}.gpkg"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "napari_unsupseg.cli", "geojson", str(labels),
                    "-o", str(output), "--image", str(image)], check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    import pyogrio

    count = pyogrio.read_info(output)["features"]
    print(f"{size} x {size} labels -> {count} polygons with 4-band statistics: "
          f"{seconds:.1f} s, peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
