"""Models applied at their own resolution: a model trained at 30 cm/px sees a 10 cm/px
scene resampled to 30 cm/px, and its labels come back on the scene's grid.

:func:`predict_scene` wraps the tiled engine (:func:`.engine.predict`) for every driver
(command line, batch, widget): when the model states its pixel size
(:attr:`~..models.presets.ModelConfig.resolution`) and the image's is known - from its
georeference, or stated with ``PredictParams.resolution`` - and the two differ by more
than :data:`TOLERANCE`, the image is resampled to the model's pixel size (the mean of
the area each new pixel covers when it shrinks, bilinear when it grows), predicted, and the
labels are brought back without blending class values: nearest neighbour onto a finer
grid, the class covering most of each pixel onto a coarser one (confidence, objects and
previews: nearest neighbour). The sizes and grids go into the metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.engine import EngineRun, RunControl, Stopwatch, map_previews
from ..base.errors import InputError
from ..base.params import validate
from .engine import PredictParams, load_model, predict, select_channels

if TYPE_CHECKING:
    from ..base.geo import Georef
    from ..models.loaded import LoadedModel

#: Pixel sizes closer than this (relative) are taken as the same: no resampling.
TOLERANCE = 0.05
_METRES = ("m", "metre", "meter", "metres", "meters")
#: The largest image resampling may make (bytes, in the image's own type).
MAX_RESAMPLED_BYTES = 8 << 30
#: Labels with at most this many values are voted onto a coarser grid (class maps).
_VOTED = 64


@dataclass(frozen=True)
class PixelSize:
    """Map units per pixel along x and y; ``unit``: ``m``, another unit's name, or ""."""

    x: float
    y: float
    unit: str = ""

    def describe(self) -> str:
        size = f"{self.x:g}" if math.isclose(self.x, self.y, rel_tol=1e-6) \
            else f"{self.x:g} x {self.y:g}"
        return f"{size} {self.unit or 'map units'}/px"


def unit_name(name: str | None) -> str:
    """``m`` for the spellings of metres, the name otherwise ("" when unknown)."""
    name = (name or "").strip()
    if name.lower() in ("", "unknown"):
        return ""
    return "m" if name.lower() in _METRES else name


def crs_unit(wkt: str | None) -> str:
    """The unit of a CRS's coordinates (``m``, ``degree``, ...; "" when unknown)."""
    if not wkt:
        return ""
    from rasterio.crs import CRS

    crs = CRS.from_wkt(wkt)
    return "degree" if crs.is_geographic else unit_name(crs.linear_units)


def georef_pixel_size(georef: Georef) -> PixelSize:
    """The size of one pixel of a georeferenced raster (rotation included)."""
    a, b, _, d, e, _ = georef.transform
    return PixelSize(math.hypot(a, d), math.hypot(b, e), crs_unit(georef.crs))


def model_pixel_size(config: Any) -> PixelSize | None:
    """The pixel size the model was trained at (None when its file does not say)."""
    values = list(getattr(config, "resolution", None) or [])
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        return None
    return PixelSize(float(values[0]), float(values[1]),
                     unit_name(getattr(config, "resolution_unit", "")))


def image_pixel_size(stated: str, georef: Georef | None, model: PixelSize | None
                     ) -> PixelSize | None:
    """The image's pixel size: ``stated`` ('S' or 'X,Y', in the model's unit), else its
    georeference's, else None."""
    if stated.strip():
        try:
            values = [float(v) for v in stated.replace(" ", "").split(",") if v]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or min(values) <= 0:
            raise InputError(f"resolution is the image's pixel size as 'S' or 'X,Y' (positive "
                             f"numbers); got '{stated}'.")
        x, y = values[0], values[-1]
        return PixelSize(x, y, model.unit if model is not None else "")
    return georef_pixel_size(georef) if georef is not None else None


def model_grid(shape: tuple[int, int], image: PixelSize, model: PixelSize
               ) -> tuple[int, int] | None:
    """The (rows, columns) of the image at the model's pixel size, or None when the two
    sizes agree within :data:`TOLERANCE`; units that differ are refused in one sentence."""
    if image.unit and model.unit and image.unit != model.unit:
        raise InputError(f"The model's pixel size is in {model.unit} but the image's is in "
                         f"{image.unit}; reproject the image or state its pixel size (in "
                         f"{model.unit}) with the resolution setting.")
    fy, fx = image.y / model.y, image.x / model.x
    if abs(fy - 1) <= TOLERANCE and abs(fx - 1) <= TOLERANCE:
        return None
    return max(2, round(shape[0] * fy)), max(2, round(shape[1] * fx))


def resample_image(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A channels-last plane or stack resampled to ``grid`` rows and columns, in its own
    type: each new pixel the mean of the area it covers when the image shrinks (what a
    sensor with larger pixels records; nothing aliases), bilinear when it grows."""
    source = np.asarray(image)
    out = np.empty((*source.shape[:-3], *grid, source.shape[-1]), source.dtype)
    rows, cols = source.shape[-3:-1]
    if grid[0] <= rows and grid[1] <= cols:
        down_y, down_x = _area_weights(rows, grid[0]), _area_weights(cols, grid[1])

        def resample(plane: np.ndarray) -> np.ndarray:
            return np.asarray((down_x @ (down_y @ plane).T).T)
    else:
        from skimage.transform import resize

        def resample(plane: np.ndarray) -> np.ndarray:
            return resize(plane, grid, order=1, mode="edge", anti_aliasing=False,
                          preserve_range=True)
    for index in np.ndindex(*source.shape[:-3], source.shape[-1]):
        *planes, channel = index
        where = (*planes, slice(None), slice(None), channel)
        done = resample(source[where].astype(np.float32))
        if source.dtype.kind in "ui":
            info = np.iinfo(source.dtype)
            done = np.clip(np.rint(done), info.min, info.max)
        elif source.dtype == np.bool_:
            done = done >= 0.5
        out[where] = done
    return out


def _area_weights(source: int, target: int) -> Any:
    """A sparse ``(target, source)`` matrix: row i averages the source pixels that target
    pixel i covers, each weighted by the length it overlaps."""
    from scipy.sparse import csr_matrix

    scale = source / target
    starts = np.arange(target) * scale
    index = np.floor(starts).astype(np.intp)[:, None] + np.arange(math.ceil(scale) + 1)
    overlap = np.minimum(index + 1, starts[:, None] + scale) - np.maximum(index, starts[:, None])
    keep = (overlap > 1e-9) & (index < source)
    rows = np.broadcast_to(np.arange(target)[:, None], index.shape)
    return csr_matrix(((overlap[keep] / scale).astype(np.float32), (rows[keep], index[keep])),
                      shape=(target, source))


def to_grid(array: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Labels ``(..., rows, columns)`` brought to ``grid`` by nearest neighbour (pixel
    centres matched, so that both grids cover the same area)."""
    rows = _nearest(array.shape[-2], grid[0])
    cols = _nearest(array.shape[-1], grid[1])
    return np.ascontiguousarray(array[..., rows[:, None], cols[None, :]])


def labels_to_grid(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Class labels ``(..., rows, columns)`` brought to ``grid``: where the grid is coarser
    on both axes, each pixel takes the class covering most of it (nearest neighbour would
    take the one model pixel beside its centre, shifting every boundary by half of it);
    elsewhere, and for more than :data:`_VOTED` classes, nearest neighbour."""
    values = np.unique(labels)
    if labels.shape[-2] < grid[0] or labels.shape[-1] < grid[1] or len(values) > _VOTED:
        return to_grid(labels, grid)
    rows = _edges(labels.shape[-2], grid[0])
    cols = _edges(labels.shape[-1], grid[1])
    best = np.zeros((*labels.shape[:-2], *grid), np.int32)
    out = np.full((*labels.shape[:-2], *grid), values[0], labels.dtype)
    for value in values:  # ties go to the lower value; one boolean plane at a time
        counts = np.add.reduceat(np.add.reduceat(
            labels == value, rows, axis=-2, dtype=np.int32), cols, axis=-1)
        better = counts > best
        out[better], best[better] = value, counts[better]
    return out


def _edges(source: int, target: int) -> np.ndarray:
    """The first source pixel of each of ``target`` blocks (strictly increasing)."""
    return np.round(np.arange(target) * (source / target)).astype(np.intp)


def _nearest(source: int, target: int) -> np.ndarray:
    centres = (np.arange(target) + 0.5) * (source / target)
    return np.minimum(centres.astype(np.intp), source - 1)


def predict_scene(image: np.ndarray, params: PredictParams, model: LoadedModel | None = None,
                  *, georef: Georef | None = None, control: RunControl | None = None
                  ) -> EngineRun:
    """:func:`.engine.predict` at the model's resolution (see the module docstring);
    ``georef``: the image's georeference, which gives its pixel size."""
    validate(params)
    model = model if model is not None else load_model(params)
    wanted = model_pixel_size(model.config)
    given = image_pixel_size(params.resolution, georef, wanted)
    note: dict[str, Any] = {"model": _described(wanted), "image": _described(given),
                            "resampled": False}
    grid = None
    if wanted is not None and given is not None and params.resample and np.ndim(image) >= 3:
        grid = model_grid(tuple(np.shape(image)[-3:-1]), given, wanted)
    if grid is None:
        result = yield from predict(image, params, model, control=control)
        return replace(result, metadata={**result.metadata, "resolution": note})
    # Bad channels and sizes are refused before the (long) resampling, not after it.
    net = model.model
    select_channels(image, params.channels,
                    int(getattr(net, "in_channels", model.config.in_channels)), params.bands)
    _check_size(image, grid, wanted)
    watch = Stopwatch()
    shape = tuple(np.shape(image)[-3:-1])
    resampled = resample_image(image, grid)
    watch.lap("resample")
    # Previews come back on the image's grid, as the result does.
    result = yield from map_previews(predict(resampled, params, model, control=control),
                                     lambda preview: to_grid(preview, shape))
    watch.lap("prediction")
    labels = labels_to_grid(result.labels, shape)
    # Objects and confidence follow the nearest model pixel (object ids are not voted).
    extras = {name: to_grid(value, shape) if np.shape(value)[-2:] == tuple(grid) else value
              for name, value in result.extras.items()}
    watch.lap("restore")
    note.update(resampled=True, model_grid=list(grid), image_grid=list(shape))
    timings = {**result.metadata.get("timings", {}), **watch.total()}
    return replace(result, labels=labels, extras=extras,
                   metadata={**result.metadata, "resolution": note, "timings": timings})


def _check_size(image: Any, grid: tuple[int, int], model: PixelSize) -> None:
    """A resampled image larger than :data:`MAX_RESAMPLED_BYTES` is refused in one
    sentence (a coarse scene with a very fine model would not fit in memory)."""
    planes = math.prod(np.shape(image)[:-3])
    size = planes * grid[0] * grid[1] * np.shape(image)[-1] * np.dtype(image.dtype).itemsize
    if size > MAX_RESAMPLED_BYTES:
        raise InputError(
            f"At the model's {model.describe()} the image would be {grid[0]} x {grid[1]} px "
            f"({size / 2**30:.1f} GiB); predict a smaller area (an area of interest) or "
            "turn resampling off.")


def _described(size: PixelSize | None) -> dict[str, Any] | None:
    return None if size is None else {"x": size.x, "y": size.y, "unit": size.unit}
