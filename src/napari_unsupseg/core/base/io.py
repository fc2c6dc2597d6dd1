"""Reading images and writing results for the command line (no Qt, no napari)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .engine import to_jsonable
from .errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class LoadedImage:
    """Pixels as stored, and whether the file itself says the last axis holds colours."""

    data: np.ndarray
    rgb: bool
    path: Path


def read_image(path: str | Path) -> LoadedImage:
    """Read a TIFF, PNG or JPEG file; every failure is an :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"The file {path} does not exist.")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file.")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path)
        if suffix in PICTURE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as picture:
                if picture.mode in ("I;16", "I;16B", "I;16L"):
                    data = np.asarray(picture, dtype=np.uint16)
                elif picture.mode in ("1", "L", "I", "F", "RGB", "RGBA"):
                    data = np.asarray(picture)
                else:
                    data = np.asarray(picture.convert("RGB"))
            return LoadedImage(data, rgb=data.ndim == 3, path=path)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise InputError(f"{path} could not be read as an image ({error}).") from error
    raise InputError(f"{path.name}: unsupported file type '{suffix}'; use TIFF, PNG or JPEG.")


def _read_tiff(path: Path) -> LoadedImage:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = np.asarray(series.asarray())
        rgb = series.axes.endswith("S") and data.shape[-1] in (3, 4)
        if series.axes in ("YXS", "SYX") and data.shape[series.axes.index("S")] > 4:
            # More samples per pixel than a colour picture has: the bands of a multiband
            # image (a GeoTIFF), interleaved or band by band. They are channels.
            data, rgb = np.moveaxis(data, series.axes.index("S"), -1), True
    return LoadedImage(data, rgb=bool(rgb), path=path)


def write_labels(
    path: str | Path, labels: np.ndarray, metadata: dict[str, Any], georef: Any = None
) -> Path:
    """Write labels as a compressed TIFF and the metadata as a JSON sidecar beside it.

    With ``georef`` (a :class:`~.geo.Georef`, e.g. the input's), a 2-D label image is
    written as a GeoTIFF with its CRS and transform. Returns the sidecar's path
    (``LABELS.tif`` -> ``LABELS.json``).
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"Labels are written as TIFF: give a .tif output name, not {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if georef is not None and np.ndim(labels) == 2:
        from .geo import write_label_geotiff

        write_label_geotiff(path, labels, georef)
        metadata = {**metadata, "georeference": georef.to_metadata()}
    else:
        tifffile.imwrite(path, labels, compression="zlib", photometric="minisblack")
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(to_jsonable(metadata), indent=2))
    return sidecar


def write_picture(path: str | Path, rgb: np.ndarray) -> Path:
    """Write a uint8 RGB picture (PNG or JPEG by suffix)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    return path


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Region boundaries drawn in yellow over a uint8 RGB picture."""
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    out[find_boundaries(labels, mode="inner")] = (255, 220, 0)
    return out


def stated_spacing(path: str | Path) -> tuple[float, float, float] | None:
    """The voxel size (z, y, x) an image file states, without reading its pixels: an
    OME-Zarr store's scale, an OME-TIFF's PhysicalSize, or an ImageJ TIFF's z spacing with
    its pixel size (resolution tags); None when the file does not state all three in one
    unit (a TIFF's resolution alone is usually a printer's 72 dpi, not a pixel size)."""
    path = Path(path)
    if path.is_dir():
        from .omezarr import is_omezarr_path, open_omezarr

        if not is_omezarr_path(path):
            return None
        scale = open_omezarr(path).voxel_scale()  # a plane has no z: it is never a volume
        return (scale.get("z", 1.0), scale["y"], scale["x"])
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.exists():
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return _ome_spacing(tif.ome_metadata or "")
            imagej = tif.imagej_metadata or {}
            if "spacing" not in imagej:
                return None
            tags = tif.pages.first.tags
            y, x = (_pixel_size(tags.get(name)) for name in ("YResolution", "XResolution"))
            return (float(imagej["spacing"]), y, x) if y and x else None
    except Exception:  # noqa: BLE001 - unreadable metadata means "not stated"
        return None


def _pixel_size(tag: Any) -> float | None:
    """A pixel's size from a resolution tag (pixels per unit, as a fraction)."""
    if tag is None:
        return None
    numerator, denominator = tag.value
    return denominator / numerator if numerator and denominator else None


def _ome_spacing(xml: str) -> tuple[float, float, float] | None:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            sizes = [element.get(f"PhysicalSize{a}") for a in "ZYX"]
            units = {element.get(f"PhysicalSize{a}Unit", "µm") for a in "ZYX"}
            if all(sizes) and len(units) == 1:
                return tuple(float(s) for s in sizes)  # type: ignore[return-value]
            return None
    return None
