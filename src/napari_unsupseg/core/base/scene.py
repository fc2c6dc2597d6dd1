"""The part of a scene that the engines work on: nodata left out, cropped to an area of
interest. The command line and batch run every engine through :func:`prepare_scene` and
:meth:`Scene.finish`, so nodata and the AOI are treated alike by all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .geo import Georef, carried_georef
from .nodata import clear_excluded, fill_excluded, nodata_mask

#: Engines whose label ids carry no meaning (renumbered 1..K once nodata is cleared).
RENUMBERED = ("preseg", "backprop")


@dataclass(frozen=True)
class Region:
    """What to leave out: ``nodata`` overrides the file's value when ``file_nodata`` is
    False (None then means no nodata at all); ``aoi`` is a polygon file."""

    nodata: float | None = None
    file_nodata: bool = True
    aoi: Path | None = None


def parse_nodata(text: str | None) -> Region:
    """``--nodata``: absent (the file's value), 'none' (no nodata) or a number."""
    if text is None:
        return Region()
    if text.strip().lower() == "none":
        return Region(None, file_nodata=False)
    try:
        return Region(float(text), file_nodata=False)
    except ValueError:
        raise InputError(f"--nodata must be a number or 'none'; got '{text}'.") from None


@dataclass
class Scene:
    """The pixels to segment (nodata filled), which are excluded, and their georeference."""

    image: np.ndarray
    excluded: np.ndarray | None
    georef: Georef | None
    notes: dict[str, Any] = field(default_factory=dict)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """A full-size array ``(Y, X, ...)`` cut to the scene's window (e.g. scribbles)."""
        if "aoi" not in self.notes:
            return array
        row0, row1, col0, col1 = self.notes["aoi"]["window"]
        return array[row0:row1, col0:col1]

    def finish(self, labels: np.ndarray, renumber: bool) -> np.ndarray:
        """Label 0 on excluded pixels (renumbered 1..K when ``renumber``)."""
        return clear_excluded(labels, self.excluded, renumber)


def prepare_scene(
    source: Path, load: Callable[[Path], np.ndarray], region: Region | None
) -> Scene:
    """The image of ``source`` (``load`` reads it channels-last) with its nodata pixels
    excluded and filled; with an area of interest, only the AOI's window is read (its
    bands are the channels) and the pixels outside the AOI are excluded too."""
    region = region or Region()
    georef = carried_georef(source)
    nodata = georef.nodata if region.file_nodata and georef is not None else region.nodata
    notes: dict[str, Any] = {}
    inside = None
    if region.aoi is None:
        image = load(source)
    else:
        from .aoi import window_georef
        from .geo import read_window
        from .images import as_channels_last

        found = _aoi_window(source, georef, region.aoi)
        rows, cols = (found.row0, found.row1), (found.col0, found.col1)
        image = as_channels_last(read_window(source, rows, cols), 0)
        georef, inside = window_georef(georef, found), found.inside
        notes["aoi"] = {"file": str(region.aoi), "window": [*rows, *cols]}
    excluded = nodata_mask(image, nodata)
    if inside is not None and not inside.all():
        excluded = ~inside if excluded is None else excluded | ~inside
    if nodata is not None:
        notes["nodata"] = nodata
    if excluded is not None:
        notes["excluded_pixels"] = int(excluded.sum())
    # The image was just read here: filled in place, so a large scene is not held twice.
    return Scene(fill_excluded(image, excluded, in_place=True), excluded, georef, notes)


def _aoi_window(source: Path, georef: Georef | None, aoi: Path) -> Any:
    """The AOI's window of the raster ``source`` (read from its header: no pixels)."""
    from .aoi import aoi_window, read_aoi
    from .geo import raster_shape

    if not source.exists():
        raise InputError(f"The file {source} does not exist.")
    if georef is None:
        raise InputError(f"--aoi needs a georeferenced image; {source.name} has no "
                         "georeference.")
    return aoi_window(read_aoi(aoi, georef), georef, raster_shape(source), aoi.name)


def check_region(source: Path, region: Region | None) -> None:
    """The AOI checked against one image's grid before any work starts (bad input is
    refused in one sentence, nothing written)."""
    if region is not None and region.aoi is not None:
        _aoi_window(source, carried_georef(source), region.aoi)
