"""napari reader for GeoTIFFs (rasterio, the optional extra ``geo``).

Bands become channels (one image layer per band, as napari's ``channel_axis`` does),
the CRS, transform and nodata go into ``layer.metadata``, the pixel size into
``scale`` (and the first pixel's map position into ``translate``, north up). Files
larger than :data:`~napari_unsupseg.core.base.geo.LAZY_BYTES` are read lazily, window by
window, so a 10,000 x 10,000 tile opens at once. A plain TIFF is left to napari's
own reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

LayerData = tuple[Any, dict[str, Any], str]
_SUFFIXES = (".tif", ".tiff")


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader when every path is a GeoTIFF (a list: one band per file), else None."""
    from .core.base.geo import has_georef

    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or any(Path(p).suffix.lower() not in _SUFFIXES for p in paths):
        return None
    if not all(has_georef(p) for p in paths):
        return None
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return None  # napari's own reader still opens the pixels
    return read_geotiff


def read_geotiff(path: str | list[str]) -> list[LayerData]:
    """Layer data for one GeoTIFF, or for several single-band files on one grid."""
    from .core.base.geo import read_raster, stack_bands

    if isinstance(path, str | Path):
        raster = read_raster(path)
    else:
        raster = stack_bands(path) if len(path) > 1 else read_raster(path[0])
    metadata = {"source": str(raster.path), "band_names": raster.band_names}
    kwargs: dict[str, Any] = {"name": [f"{raster.path.stem} {n}" for n in raster.band_names]}
    if raster.georef is not None:
        metadata.update(raster.georef.to_metadata())
        scale, translate = raster.georef.scale_translate()
        kwargs.update(scale=scale, translate=translate)
    kwargs["metadata"] = metadata
    if raster.data.shape[0] == 1:
        kwargs["name"] = raster.path.stem
        return [(raster.data[0], kwargs, "image")]
    kwargs["channel_axis"] = 0
    return [(raster.data, kwargs, "image")]
