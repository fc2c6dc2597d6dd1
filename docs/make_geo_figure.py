"""The README's remote-sensing picture: the unsupervised segmenter's polygons over a real
Sentinel-2 scene, made with the command line as a user would.

    python docs/make_geo_figure.py [SCENE.tif]

Default scene: ``../shared/data/real-geo/strzegom-s2/image_20220719.tif`` (10 bands at
10 m, see that folder's README; contains modified Copernicus Sentinel data 2022). Runs
``backprop`` (defaults) and ``geojson --image`` (GeoPackage with band statistics) into a
temporary folder, then draws the true-colour image (B04, B03, B02) with the polygons'
outlines, coloured by label, to ``docs/images/remote_sensing_polygons.png``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCENE = HERE.parents[1] / "shared" / "data" / "real-geo" / "strzegom-s2" / "image_20220719.tif"
OUT = HERE / "images" / "remote_sensing_polygons.png"
TRUE_COLOUR = (3, 2, 1)  # B04, B03, B02 of the scene's ten bands (1-based)


def cli(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "napari_unsupseg.cli", *arguments], check=True)


def true_colour(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The scene's true-colour bands stretched 2-98 % and its extent in map units."""
    import rasterio

    with rasterio.open(path) as src:
        rgb = src.read(list(TRUE_COLOUR)).transpose(1, 2, 0).astype(np.float32)
        left, bottom, right, top = src.bounds
    low, high = np.percentile(rgb, [2, 98], axis=(0, 1))
    return np.clip((rgb - low) / (high - low), 0, 1), (left, right, bottom, top)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyogrio.raw

    scene = Path(sys.argv[1]) if len(sys.argv) > 1 else SCENE
    with tempfile.TemporaryDirectory() as folder:
        labels, polygons = Path(folder) / "labels.tif", Path(folder) / "regions.gpkg"
        cli("backprop", str(scene), "-o", str(labels), "--quiet")
        cli("geojson", str(labels), "-o", str(polygons), "--image", str(scene))
        meta, _, geometries, fields = pyogrio.raw.read(polygons)
        labels = fields[list(meta["fields"]).index("label")]
        image, extent = true_colour(scene)
        figure, axes = plt.subplots(1, 2, figsize=(10, 5.2), dpi=110)
        for ax in axes:
            ax.imshow(image, extent=extent)
            ax.set_axis_off()
        _draw_outlines(axes[1], geometries, labels)
        axes[0].set_title("Sentinel-2, true colour (10 m)", fontsize=10)
        axes[1].set_title("backprop (defaults) -> GeoPackage polygons", fontsize=10)
        figure.text(0.5, 0.02, "Strzegom, Poland, 2022-07-19. Contains modified Copernicus "
                    "Sentinel data 2022.", ha="center", fontsize=8)
        figure.tight_layout(rect=(0, 0.04, 1, 1))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(OUT)
    from PIL import Image

    # A 256-colour palette keeps the picture a few hundred KB in the repository.
    Image.open(OUT).convert("RGB").quantize(colors=256).save(OUT, optimize=True)
    print(f"wrote {OUT}")


def _draw_outlines(ax: object, geometries: np.ndarray, labels: np.ndarray) -> None:
    """Each polygon's exterior ring (WKB, read by shapely), coloured by its label."""
    import matplotlib.pyplot as plt
    import shapely

    colours = plt.get_cmap("tab20")
    for geometry, label in zip(shapely.from_wkb(geometries), labels, strict=True):
        for part in getattr(geometry, "geoms", [geometry]):
            x, y = part.exterior.xy
            ax.plot(x, y, color=colours(int(label) % 20), linewidth=0.6)


if __name__ == "__main__":
    main()
