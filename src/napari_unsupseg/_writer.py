"""napari writers for Labels layers: GeoTIFF (keeping the georeference that the layer's
metadata carries: crs, transform) and GeoJSON polygons (label and class attributes,
the layer's CRS). A layer without a georeference is written as a plain TIFF, and its
polygons in pixel coordinates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plane(data: Any) -> np.ndarray:
    labels = np.asarray(data[0] if isinstance(data, list) else data)  # multiscale: full size
    return labels


def write_labels_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """A Labels layer as a GeoTIFF with the CRS and transform of its metadata."""
    from .core.base.geo import Georef, write_label_geotiff

    labels = _plane(data)
    georef = Georef.from_metadata(attributes.get("metadata"))
    if georef is not None and labels.ndim == 2:
        write_label_geotiff(path, labels, georef)
    else:
        import tifffile

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, labels, compression="zlib", photometric="minisblack")
    return [path]


def write_labels_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """A 2-D Labels layer as GeoJSON polygons (map coordinates when georeferenced)."""
    from .core.base.geo import Georef, class_names, write_geojson

    metadata = attributes.get("metadata") or {}
    write_geojson(path, _plane(data), Georef.from_metadata(metadata), class_names(metadata))
    return [path]
