"""An area of interest (AOI): a polygon layer that limits the work to the pixels inside.

:func:`read_aoi` reads the polygons of a GeoJSON, GeoPackage or Shapefile layer (pyogrio)
and brings them into the raster's CRS; :func:`aoi_window` gives the rows and columns
that hold them and which pixels of that window lie inside (pixel centres, as
rasterisation counts them). The window is found in pixel coordinates, through the
inverse of the raster's transform, so a rotated or sheared grid is handled like a
north-up one.

pyogrio, shapely and rasterio are imported where the work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .geo import Georef, rasterio_module

#: Vector formats by suffix (what GDAL reads them with).
VECTOR_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG",
                  ".shp": "ESRI Shapefile"}


def vector_driver(path: Path, what: str) -> str:
    """The GDAL driver for ``path`` by its suffix; an unknown suffix is an InputError."""
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise InputError(f"{what} {path.name} is in an unknown format; use .geojson, .gpkg or "
                         ".shp.")
    return driver


def vector_modules() -> tuple[Any, Any]:
    """pyogrio and shapely, or an InputError saying how to install them."""
    try:
        import pyogrio
        import shapely
    except ImportError:  # pragma: no cover - depends on the installation
        raise InputError("Vector files need pyogrio and shapely: "
                         "pip install 'napari-unsupseg[geo]'.") from None
    return pyogrio, shapely


def read_aoi(path: str | Path, georef: Georef | None) -> Any:
    """The union of the polygons in ``path`` (a shapely geometry) in the CRS of ``georef``.

    Refused in one sentence: no such file, an unknown format, a file without polygons,
    and a file without a CRS when the raster has one."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"The area of interest {path} does not exist.")
    driver = vector_driver(path, "The area of interest")
    pyogrio, shapely = vector_modules()
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path, columns=[])
    except Exception as error:  # noqa: BLE001 - any reader failure means "unreadable"
        raise InputError(f"The area of interest {path.name} could not be read as {driver} "
                         f"({error}).") from None
    geometries = shapely.from_wkb(wkb) if wkb is not None else np.array([])
    polygons = [g for g in geometries
                if g is not None and shapely.get_type_id(g) in (3, 6) and not g.is_empty]
    if not polygons:
        raise InputError(f"The area of interest {path.name} holds no polygon.")
    area = shapely.union_all(shapely.make_valid(np.array(polygons)))
    raster_crs = georef.crs if georef is not None else None
    if raster_crs is None:
        return area  # a grid without a CRS: the AOI is taken to be in its coordinates
    if not meta.get("crs"):
        raise InputError(f"The area of interest {path.name} has no coordinate system "
                         "(CRS); give it one (e.g. a .prj beside a Shapefile).")
    return _reproject(area, meta["crs"], raster_crs)


def _reproject(geometry: Any, source_crs: str, target_wkt: str) -> Any:
    rasterio_module()
    import shapely.geometry
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    source, target = CRS.from_user_input(source_crs), CRS.from_wkt(target_wkt)
    if source == target:
        return geometry
    return shapely.geometry.shape(transform_geom(source, target, geometry.__geo_interface__))


@dataclass(frozen=True)
class AoiWindow:
    """Rows ``[row0, row1)`` and columns ``[col0, col1)`` holding the AOI, and ``inside``:
    which pixels of that window have their centre in it."""

    row0: int
    row1: int
    col0: int
    col1: int
    inside: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row0, self.row1), slice(self.col0, self.col1)


def aoi_window(area: Any, georef: Georef, shape: tuple[int, int], name: str) -> AoiWindow:
    """The window of a ``shape`` (rows, columns) raster that holds ``area`` (in the raster's
    CRS); an AOI that covers no pixel centre of the raster is an InputError."""
    rasterio_module()
    from affine import Affine
    from rasterio.features import geometry_mask
    from shapely.affinity import affine_transform

    inverse = ~georef.affine()
    pixels = affine_transform(
        area, [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f])
    height, width = shape
    x0, y0, x1, y1 = pixels.bounds if not pixels.is_empty else (0, 0, -1, -1)
    col0, row0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    col1, row1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    inside = np.zeros((0, 0), bool)
    if col1 > col0 and row1 > row0:
        inside = geometry_mask([pixels], out_shape=(row1 - row0, col1 - col0),
                               transform=Affine.translation(col0, row0), invert=True)
    if not inside.any():
        raise InputError(f"The area of interest {name} does not overlap the image.")
    # Shrunk to the rows and columns with a pixel centre inside: a reprojected edge that
    # strays a hair past a pixel boundary adds no empty row.
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    inside = inside[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return AoiWindow(row0 + int(rows[0]), row0 + int(rows[-1]) + 1,
                     col0 + int(cols[0]), col0 + int(cols[-1]) + 1, inside)


def window_georef(georef: Georef, window: AoiWindow) -> Georef:
    """The georeference of the window's pixels (the same grid, its origin moved)."""
    from affine import Affine

    moved = georef.affine() @ Affine.translation(window.col0, window.row0)
    return Georef(georef.crs, tuple(moved)[:6], georef.nodata)
