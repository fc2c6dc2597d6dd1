"""Label rasters as polygon layers (GeoJSON, GeoPackage, Shapefile through pyogrio/GDAL),
strip by strip so that a large raster never holds all its polygons at once.

Each strip of rows is cut into its connected regions (4-connected, one label each) and
vectorised; a region that touches the strip's lower edge may go on in the next strip, so
it waits there and is joined (shapely union) with the parts of the same label that touch
it from below. Finished polygons are written in batches (``append``). Band statistics
come from the same regions: one stable sort of the strip's region ids puts each region's
pixels together, and ``reduceat`` gives the sum, sum of squares, minimum and maximum of
each band in one linear pass (``np.minimum.at`` is many times slower); the parts of a
joined polygon add up. The pixels of the image's nodata take no part in them.

pyogrio, shapely, scikit-image and rasterio are imported where the work starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .geo import Georef, open_raster, read_georef
from .scene import Region

#: Rows read at a time: 1024 rows of a 10,000-pixel-wide scene keep the peak under 2 GiB.
STRIP_ROWS = 1024
BATCH = 20_000
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix")


@dataclass
class VectorOptions:
    """``simplify``: tolerance in map units (None: one pixel; 0: none); ``min_area``: in map
    units squared; ``classes``: label -> class name; ``provenance``: fields for every
    polygon (e.g. engine and model)."""

    simplify: float | None = None
    min_area: float = 0.0
    classes: Mapping[int, str] | None = None
    provenance: dict[str, str | None] = field(default_factory=dict)
    strip_rows: int = STRIP_ROWS
    batch: int = BATCH


@dataclass
class Parts:
    """Polygons (shapely, pixel coordinates of the whole raster), their labels, and their
    statistics rows ``[count, sums (B), squares (B), minima (B), maxima (B)]``."""

    geoms: np.ndarray
    labels: np.ndarray
    stats: np.ndarray

    @classmethod
    def empty(cls, n_bands: int) -> Parts:
        return cls(np.empty(0, object), np.empty(0, np.int64), np.empty((0, 1 + 4 * n_bands)))

    def take(self, keep: np.ndarray) -> Parts:
        return Parts(self.geoms[keep], self.labels[keep], self.stats[keep])

    def __len__(self) -> int:
        return len(self.geoms)


def _objects(items: list[Any]) -> np.ndarray:
    """A 1-D object array of geometries (numpy must not look inside them)."""
    array = np.empty(len(items), object)
    array[:] = items
    return array


def _combine(stats: np.ndarray, n_bands: int) -> np.ndarray:
    """One statistics row for the pixels of several rows."""
    row = stats[:1].copy()[0]
    split = 1 + 2 * n_bands
    row[:split] = stats[:, :split].sum(axis=0)
    row[split:split + n_bands] = stats[:, split:split + n_bands].min(axis=0)
    row[split + n_bands:] = stats[:, split + n_bands:].max(axis=0)
    return row


def _region_stats(ids: np.ndarray, n: int, bands: np.ndarray | None) -> np.ndarray:
    """Statistics rows for region ids 0..n of a strip (``ids`` 0 = no region)."""
    n_bands = 0 if bands is None else len(bands)
    stats = np.zeros((n + 1, 1 + 4 * n_bands))
    stats[:, 1 + 2 * n_bands:1 + 3 * n_bands] = np.inf
    stats[:, 1 + 3 * n_bands:] = -np.inf
    flat = ids.ravel()
    stats[:, 0] = np.bincount(flat, minlength=n + 1)
    if not n_bands:
        return stats
    order = np.argsort(flat, kind="stable")  # regions are runs in raster order: fast
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    which = ordered[starts]
    for b, band in enumerate(bands):
        values = band.ravel()[order].astype(np.float64)
        stats[which, 1 + b] = np.add.reduceat(values, starts)
        stats[which, 1 + 2 * n_bands + b] = np.minimum.reduceat(values, starts)
        stats[which, 1 + 3 * n_bands + b] = np.maximum.reduceat(values, starts)
        np.square(values, out=values)  # in place: one strip-sized float array at a time
        stats[which, 1 + n_bands + b] = np.add.reduceat(values, starts)
    return stats


def _strip_parts(labels: np.ndarray, row0: int, col0: int, bands: np.ndarray | None,
                 valid: np.ndarray | None) -> Parts:
    """The connected regions of one strip of labels as polygons, with their statistics."""
    import shapely.geometry
    from affine import Affine
    from rasterio import features
    from skimage.measure import label as connected

    n_bands = 0 if bands is None else len(bands)
    regions = connected(labels, background=0, connectivity=1).astype(np.int32)
    n = int(regions.max())
    if n == 0:
        return Parts.empty(n_bands)
    label_of = np.zeros(n + 1, np.int64)
    label_of[regions.ravel()] = labels.ravel()
    counted = regions if valid is None else np.where(valid, regions, 0)
    stats = _region_stats(counted, n, bands)
    ids, geoms = [], []
    for geometry, value in features.shapes(regions, mask=regions > 0, connectivity=4,
                                           transform=Affine.translation(col0, row0)):
        ids.append(int(value))
        geoms.append(shapely.geometry.shape(geometry))
    index = np.asarray(ids, np.int64)
    return Parts(_objects(geoms), label_of[index], stats[index])


def _join(waiting: Parts, parts: Parts, edge: float, n_bands: int) -> Parts:
    """``waiting`` (touching the strip edge ``edge`` from above) joined with the ``parts``
    below that touch it and share their label; the rest of both is returned as is."""
    import shapely

    on_edge = shapely.bounds(parts.geoms)[:, 1] == edge if len(parts) else np.zeros(0, bool)
    shared = np.intersect1d(waiting.labels, parts.labels[on_edge])
    if not len(shared):
        return _concat([waiting, parts])
    involved_w = np.isin(waiting.labels, shared)
    involved_p = on_edge & np.isin(parts.labels, shared)
    pool = _concat([waiting.take(involved_w), parts.take(involved_p)])
    points = shapely.point_on_surface(pool.geoms)
    geoms, labels, stats = [], [], []
    for value in shared:
        members = np.flatnonzero(pool.labels == value)
        union = shapely.union_all(pool.geoms[members])
        for piece in getattr(union, "geoms", [union]):
            inside = members[shapely.covers(piece, points[members])]
            geoms.append(piece)
            labels.append(value)
            stats.append(_combine(pool.stats[inside], n_bands))
    joined = Parts(_objects(geoms), np.asarray(labels, np.int64),
                   np.asarray(stats).reshape(len(stats), -1))
    return _concat([waiting.take(~involved_w), parts.take(~involved_p), joined])


def _concat(items: list[Parts]) -> Parts:
    return Parts(np.concatenate([p.geoms for p in items]),
                 np.concatenate([p.labels for p in items]),
                 np.concatenate([p.stats for p in items]))


def provenance_fields(metadata: Mapping[str, Any]) -> dict[str, str | None]:
    """``engine`` and ``model`` (its file name, or architecture) from a result's metadata."""
    model = metadata.get("model")
    if isinstance(model, Mapping):
        model = model.get("source") or model.get("architecture")
    engine = metadata.get("engine")
    return {"engine": None if engine is None else str(engine),
            "model": None if model is None else Path(str(model)).name}


def pixel_size(georef: Georef | None) -> float:
    """The side of a square of one pixel's area, in map units (1 without a georeference)."""
    if georef is None:
        return 1.0
    a, b, _, d, e, _ = georef.transform
    return math.sqrt(abs(a * e - b * d))


def _image_window(labels: Any, image: Any, name: str) -> tuple[int, int]:
    """(row, column) of the labels' first pixel in the image: the same grid, the labels
    possibly a window of it (a result cut to an area of interest)."""
    offset = ~image.transform @ (labels.transform.c, labels.transform.f)
    col, row = (round(v) for v in offset)
    def pixel(t: Any) -> tuple[float, ...]:
        return t.a, t.b, t.d, t.e

    same_pixels = np.allclose(pixel(labels.transform), pixel(image.transform)) and \
        np.allclose(offset, (col, row), atol=1e-6)
    if not same_pixels or row < 0 or col < 0 or row + labels.height > image.height \
            or col + labels.width > image.width:
        raise InputError(f"The image {name} does not lie on the labels' grid (the same "
                         "pixels, covering them); give the image the labels were made from.")
    return row, col


def write_vectors(
    labels_path: str | Path,
    output: str | Path,
    *,
    image_path: str | Path | None = None,
    region: Region | None = None,
    options: VectorOptions | None = None,
) -> int:
    """The polygons of a label raster written to ``output`` (driver by suffix), with
    ``label``, ``class`` (when named), ``area`` (map units squared), provenance and, with
    ``image_path``, each band's mean, std, min and max. ``region``: the image's nodata
    (left out of the statistics) and an area of interest (labels outside it are not
    written). Returns the number of polygons written."""
    from .aoi import aoi_window, read_aoi, vector_driver, vector_modules

    output, options, region = Path(output), options or VectorOptions(), region or Region()
    driver = vector_driver(output, "The output")
    vector_modules()
    georef = read_georef(labels_path)
    with open_raster(labels_path) as labels:
        if labels.count != 1 or np.dtype(labels.dtypes[0]).kind not in "ui":
            raise InputError(f"{Path(labels_path).name} is not a label image (one band of "
                             "integers).")
        rows, cols, inside = (0, labels.height), (0, labels.width), None
        if region.aoi is not None:
            if georef is None:
                raise InputError(f"--aoi needs georeferenced labels; {Path(labels_path).name} "
                                 "has no georeference.")
            found = aoi_window(read_aoi(region.aoi, georef), georef,
                               (labels.height, labels.width), region.aoi.name)
            rows, cols, inside = (found.row0, found.row1), (found.col0, found.col1), found.inside
        image, offset, nodata = None, (0, 0), None
        if image_path is not None:
            image = open_raster(image_path)
            offset = _image_window(labels, image, Path(image_path).name)
            nodata = image.nodata if region.file_nodata else region.nodata
        try:
            strips = _strips(labels, image, offset, rows, cols, inside, nodata, options)
            return _write_all(output, driver, strips, georef, image, options)
        finally:
            if image is not None:
                image.close()


def _strips(labels: Any, image: Any, offset: tuple[int, int], rows: tuple[int, int],
            cols: tuple[int, int], inside: np.ndarray | None, nodata: float | None,
            options: VectorOptions) -> Iterator[Parts]:
    """Finished polygons, strip by strip (those touching a strip's lower edge wait for the
    next strip)."""
    import shapely
    from rasterio.windows import Window

    from .nodata import nodata_mask

    n_bands = 0 if image is None else image.count
    waiting = Parts.empty(n_bands)
    width = cols[1] - cols[0]
    for top in range(rows[0], rows[1], options.strip_rows):
        bottom = min(top + options.strip_rows, rows[1])
        window = Window(cols[0], top, width, bottom - top)
        strip = labels.read(1, window=window)
        if labels.nodata is not None:  # a label raster's own nodata is no region
            strip[strip == labels.nodata] = 0
        if inside is not None:
            strip[~inside[top - rows[0]:bottom - rows[0]]] = 0
        bands = valid = None
        if image is not None:
            bands = image.read(window=Window(cols[0] + offset[1], top + offset[0], width,
                                             bottom - top))
            excluded = nodata_mask(np.moveaxis(bands, 0, -1), nodata)
            valid = None if excluded is None else ~excluded
        parts = _join(waiting, _strip_parts(strip, top, cols[0], bands, valid), top, n_bands)
        going_on = (shapely.bounds(parts.geoms)[:, 3] == bottom) if bottom < rows[1] else \
            np.zeros(len(parts), bool)
        waiting = parts.take(going_on)
        yield parts.take(~going_on)
    yield waiting


def _write_all(output: Path, driver: str, strips: Iterator[Parts], georef: Georef | None,
               image: Any, options: VectorOptions) -> int:
    """Batches of finished polygons appended to ``output`` (replaced if it exists)."""
    import pyogrio

    for suffix in _SHAPEFILE_PARTS if driver == "ESRI Shapefile" else (output.suffix,):
        output.with_suffix(suffix).unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_bands = 0 if image is None else image.count
    written, pending = 0, Parts.empty(n_bands)
    started = False
    for parts in strips:
        pending = _concat([pending, parts])
        if len(pending) < options.batch:
            continue
        written += _write_batch(pyogrio, output, driver, pending, georef, options, started)
        started, pending = True, Parts.empty(n_bands)
    if len(pending) or not started:
        written += _write_batch(pyogrio, output, driver, pending, georef, options, started)
    return written


def _write_batch(pyogrio: Any, output: Path, driver: str, parts: Parts, georef: Georef | None,
                 options: VectorOptions, append: bool) -> int:
    import shapely

    geoms = parts.geoms
    if georef is not None and len(geoms):
        a, b, c, d, e, f = georef.transform
        matrix = np.array([[a, d], [b, e]])
        geoms = shapely.transform(geoms, lambda xy: xy @ matrix + (c, f))
    tolerance = pixel_size(georef) if options.simplify is None else options.simplify
    if tolerance > 0 and len(geoms):
        geoms = shapely.simplify(geoms, tolerance, preserve_topology=True)
    area = shapely.area(geoms) if len(geoms) else np.empty(0)
    keep = (area >= options.min_area) & ~shapely.is_empty(geoms) if len(geoms) else \
        np.zeros(0, bool)
    fields, columns = _attributes(parts.take(keep), area[keep], options)
    pyogrio.raw.write(output, shapely.to_wkb(geoms[keep]), columns, fields=fields,
                      crs=georef.crs if georef is not None else None, driver=driver,
                      geometry_type="Polygon", append=append)
    return int(keep.sum())


def _attributes(parts: Parts, area: np.ndarray, options: VectorOptions
                ) -> tuple[list[str], list[np.ndarray]]:
    """Field names (at most 10 characters, for Shapefiles) and their columns."""
    fields, columns = ["label"], [parts.labels.astype(np.int64)]
    if options.classes is not None:
        fields.append("class")
        columns.append(np.array([options.classes.get(int(v)) for v in parts.labels], object))
    fields.append("area")
    columns.append(area.astype(np.float64))
    for name, value in options.provenance.items():
        fields.append(name)
        columns.append(np.full(len(parts), value, object))
    n_bands = (parts.stats.shape[1] - 1) // 4
    count = parts.stats[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        for b in range(n_bands):
            mean = parts.stats[:, 1 + b] / count
            square = parts.stats[:, 1 + n_bands + b] / count
            std = np.sqrt(np.maximum(square - mean * mean, 0.0))
            low = parts.stats[:, 1 + 2 * n_bands + b]
            high = parts.stats[:, 1 + 3 * n_bands + b]
            for name, column in (("mean", mean), ("std", std), ("min", low), ("max", high)):
                fields.append(f"b{b + 1}_{name}")
                # A polygon wholly on the image's nodata has no statistics (null).
                columns.append(np.where(count > 0, column, np.nan))
    return fields, columns
