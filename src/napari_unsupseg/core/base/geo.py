"""Georeferenced rasters in and out (rasterio, the optional extra ``geo``).

- :func:`read_georef` / :func:`has_georef`: the coordinate system (CRS), the affine
  transform from pixel to map coordinates, and the nodata value of a GeoTIFF;
  a plain TIFF has none (checked from its tags, without rasterio).
- :func:`read_raster`: the bands of a GeoTIFF or multiband TIFF as ``(bands, Y, X)``,
  lazily (a dask array read window by window) when it is large.
  :func:`stack_bands`: one band per file, all on the same grid.
- :func:`write_label_geotiff`: labels written with a georeference.
- :func:`labels_to_geojson` / :func:`write_geojson`: one polygon feature per connected
  region, with its label (and class name) and the CRS.

rasterio is imported where the work starts, never at import time.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: TIFF tags that only a GeoTIFF carries (pixel scale, tie points, transform, geo keys).
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)
#: Images larger than this (bytes) are read lazily, window by window.
LAZY_BYTES = 1 << 30
_CHUNK = 2048
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rasterio_module() -> Any:
    """rasterio, or an :class:`InputError` saying how to install it."""
    try:
        import rasterio
    except ImportError:  # pragma: no cover - depends on the installation
        raise InputError(
            "GeoTIFF support needs rasterio: pip install 'napari-unsupseg[geo]'."
        ) from None
    return rasterio


@dataclass(frozen=True)
class Georef:
    """Where a raster lies on the Earth: CRS (WKT, or None), affine transform
    ``(a, b, c, d, e, f)`` (x = a col + b row + c, y = d col + e row + f), nodata."""

    crs: str | None
    transform: tuple[float, ...]
    nodata: float | None = None

    def to_metadata(self) -> dict[str, Any]:
        """The keys a layer's or a result's metadata carries: crs, transform, nodata."""
        return {"crs": self.crs, "transform": list(self.transform), "nodata": self.nodata}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Georef | None:
        """The georeference kept in a metadata dict (None when there is none)."""
        if not metadata or metadata.get("transform") is None:
            return None
        transform = tuple(float(v) for v in metadata["transform"])[:6]
        if len(transform) != 6:
            raise InputError("A georeference transform has six numbers (a, b, c, d, e, f).")
        return cls(metadata.get("crs"), transform, metadata.get("nodata"))

    def affine(self) -> Any:
        from affine import Affine  # installed with rasterio

        return Affine(*self.transform)

    def scale_translate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """napari ``scale`` and ``translate`` (y, x) of a north-up raster: the pixel size,
        and the centre of the first pixel, with y = -northing so that north is up."""
        a, _, c, _, e, f = self.transform
        return (abs(e), abs(a)), (-(f + e / 2), c + a / 2)


def has_georef(path: str | Path) -> bool:
    """Whether a TIFF carries GeoTIFF tags (read with tifffile: no rasterio needed)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            return any(code in tags for code in GEOTIFF_TAGS)
    except Exception:  # noqa: BLE001 - an unreadable file has no georeference to carry
        return False


def read_georef(path: str | Path) -> Georef | None:
    """The georeference of a GeoTIFF, or None for a plain TIFF."""
    if Path(path).suffix.lower() not in (".tif", ".tiff") or not has_georef(path):
        return None
    with _open(path) as source:
        return _georef_of(source)


def open_raster(path: str | Path) -> Any:
    """A rasterio dataset (to read window by window); an unreadable file is an InputError."""
    return _open(path)


def raster_shape(path: str | Path) -> tuple[int, int]:
    """(rows, columns) of a raster file, from its header."""
    with _open(path) as source:
        return source.height, source.width


def carried_georef(source: str | Path) -> Georef | None:
    """The georeference that results computed from ``source`` should carry: None for a
    plain file, and (with a warning) when rasterio is not installed to read it."""
    if Path(source).suffix.lower() not in (".tif", ".tiff") or not has_georef(source):
        return None
    try:
        import rasterio  # noqa: F401
    except ImportError:
        warnings.warn(
            f"{Path(source).name} is a GeoTIFF but rasterio is not installed: the labels are "
            "written without its georeference (pip install 'napari-unsupseg[geo]').",
            stacklevel=2,
        )
        return None
    return read_georef(source)


def _georef_of(source: Any) -> Georef | None:
    transform = tuple(float(v) for v in tuple(source.transform)[:6])
    crs = source.crs.to_wkt() if source.crs else None
    if crs is None and np.allclose(transform, _IDENTITY):
        return None
    nodata = None if source.nodata is None else float(source.nodata)
    return Georef(crs, transform, nodata)


def _open(path: str | Path) -> Any:
    rasterio = rasterio_module()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise InputError(f"{Path(path).name} could not be read as a raster ({error}).") from error


@dataclass
class Raster:
    """Bands ``(bands, Y, X)`` (numpy or dask), georeference and band names."""

    data: Any
    georef: Georef | None
    band_names: list[str]
    path: Path

    def channels_last(self) -> np.ndarray:
        """The bands as the engines' ``(Y, X, C)`` (read into memory)."""
        return np.moveaxis(np.asarray(self.data), 0, -1)


def read_raster(path: str | Path, *, lazy: bool | None = None) -> Raster:
    """All bands of a raster file as ``(bands, Y, X)``; lazy (dask) above :data:`LAZY_BYTES`
    unless ``lazy`` says otherwise."""
    path = Path(path)
    with _open(path) as source:
        georef = _georef_of(source)
        names = [d or f"band {i}" for i, d in enumerate(source.descriptions, 1)]
        shape = (source.count, source.height, source.width)
        dtype = np.dtype(source.dtypes[0])
        if len(set(source.dtypes)) > 1:
            raise InputError(f"The bands of {path.name} have different types {source.dtypes}.")
        if lazy is None:
            lazy = math.prod(shape) * dtype.itemsize > LAZY_BYTES
        data = _lazy_bands(path, shape, dtype) if lazy else source.read()
    return Raster(data, georef, names, path)


def read_window(path: str | Path, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The bands ``(bands, Y, X)`` of rows ``[r0, r1)`` and columns ``[c0, c1)`` only."""
    from rasterio.windows import Window

    with _open(path) as source:
        return source.read(window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]))


def _lazy_bands(path: Path, shape: tuple[int, int, int], dtype: np.dtype) -> Any:
    """A dask array whose chunks are windows read from the file when computed."""
    import dask.array as da

    def read(block_id: tuple[int, int, int] | None = None) -> np.ndarray:
        from rasterio.windows import Window

        _, iy, ix = block_id or (0, 0, 0)
        y0, x0 = iy * _CHUNK, ix * _CHUNK
        window = Window(x0, y0, min(_CHUNK, shape[2] - x0), min(_CHUNK, shape[1] - y0))
        with _open(path) as source:
            return source.read(window=window)

    chunks = ((shape[0],), _chunks(shape[1]), _chunks(shape[2]))
    return da.map_blocks(read, chunks=chunks, dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def _chunks(n: int) -> tuple[int, ...]:
    return tuple(min(_CHUNK, n - start) for start in range(0, n, _CHUNK))


def stack_bands(paths: Sequence[str | Path]) -> Raster:
    """One band per file (e.g. a satellite scene's band files) stacked as ``(bands, Y, X)``.

    The files must share one grid: the same size, transform and CRS.
    """
    rasters = [read_raster(p, lazy=False) for p in paths]
    if not rasters:
        raise InputError("No band files were given.")
    first = rasters[0]
    for raster in rasters[1:]:
        if raster.data.shape[1:] != first.data.shape[1:]:
            height, width = raster.data.shape[1:]
            raise InputError(
                f"The bands differ in size: {raster.path.name} is {height} x {width} pixels but "
                f"{first.path.name} is {first.data.shape[1]} x {first.data.shape[2]}; resample "
                "them to one grid first."
            )
        if raster.georef != first.georef and raster.georef and first.georef:
            if raster.georef.crs != first.georef.crs or not np.allclose(
                raster.georef.transform, first.georef.transform
            ):
                raise InputError(
                    f"{raster.path.name} and {first.path.name} lie on different grids "
                    "(CRS or transform); resample them to one grid first."
                )
    data = np.concatenate([r.data for r in rasters])
    names = [f"{r.path.stem} {n}" if r.data.shape[0] > 1 else r.path.stem
             for r in rasters for n in r.band_names]
    return Raster(data, first.georef, names, first.path)


def write_label_geotiff(path: str | Path, labels: np.ndarray, georef: Georef) -> Path:
    """A 2-D label image as a compressed GeoTIFF with ``georef``'s CRS and transform."""
    rasterio = rasterio_module()
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"A label GeoTIFF holds one 2-D plane; got shape {labels.shape}.")
    if labels.dtype.kind not in "ui" or labels.dtype.itemsize > 4:
        labels = labels.astype(np.uint32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "height": labels.shape[0], "width": labels.shape[1], "count": 1,
        "dtype": labels.dtype.name, "transform": georef.affine(), "compress": "deflate",
        "crs": rasterio.crs.CRS.from_wkt(georef.crs) if georef.crs else None,
    }
    if labels.shape[0] >= 256 and labels.shape[1] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as target:
            target.write(labels, 1)
    return path


def _features(
    labels: np.ndarray, georef: Georef | None, classes: Mapping[int, str] | None
) -> Iterator[dict[str, Any]]:
    from rasterio import features

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"Polygons are made from one 2-D label plane; got shape {labels.shape}.")
    if labels.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.uint32):
        if labels.max(initial=0) > np.iinfo(np.int32).max:
            raise InputError("Too many labels for polygon export (more than 2^31).")
        labels = labels.astype(np.int32)
    elif labels.dtype == np.uint32:
        labels = labels.astype(np.int64).astype(np.int32)
    transform = georef.affine() if georef else None
    kwargs = {"transform": transform} if transform is not None else {}
    for geometry, value in features.shapes(labels, mask=labels != 0, connectivity=4, **kwargs):
        label = int(value)
        properties: dict[str, Any] = {"label": label}
        if classes is not None:
            properties["class"] = classes.get(label)
        yield {"type": "Feature", "geometry": geometry, "properties": properties}


def labels_to_geojson(
    labels: np.ndarray, georef: Georef | None = None, classes: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection: one polygon per connected region (4-connected) of
    each non-zero label, in map coordinates when ``georef`` is given (pixel corners
    otherwise), with a ``label`` property and ``class`` when ``classes`` names them.
    The CRS is given as a named/WKT ``crs`` member, which GIS software reads."""
    rasterio_module()
    collection: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": list(_features(labels, georef, classes)),
    }
    if georef is not None and georef.crs:
        collection["crs"] = {"type": "name", "properties": {"name": _crs_name(georef.crs)}}
    return collection


def _crs_name(wkt: str) -> str:
    """'EPSG:n' where the CRS has an EPSG code (what GeoJSON readers expect), else WKT."""
    from rasterio.crs import CRS

    epsg = CRS.from_wkt(wkt).to_epsg()
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else wkt


def write_geojson(
    path: str | Path,
    labels: np.ndarray,
    georef: Georef | None = None,
    classes: Mapping[int, str] | None = None,
) -> Path:
    """:func:`labels_to_geojson` written to ``path``."""
    path = Path(path)
    collection = labels_to_geojson(labels, georef, classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path


def class_names(metadata: Mapping[str, Any] | None) -> dict[int, str] | None:
    """``{label: name}`` from a result's or layer's metadata ``classes`` table, if any."""
    table = (metadata or {}).get("classes")
    if not isinstance(table, Mapping) or not table:
        return None
    return {int(k): str(v) for k, v in table.items()}
