"""OME-Zarr images in, OME-Zarr labels out, one block at a time.

:func:`open_omezarr` reads an OME-Zarr image's multiscales metadata: its axes (t, c, z,
y, x), its levels as lazy zarr arrays and each level's voxel scale. Nothing is read
from the arrays until :func:`read_block` asks for a window of one plane.

:func:`create_labels` makes an empty labels image, either in the image's own store
(``labels/<name>``, as the OME-Zarr specification places them, so that napari-ome-zarr
and other viewers list them with the image) or as a new store. Its :class:`LabelsTarget`
takes blocks of level 0 as they are computed (:meth:`LabelsTarget.write_block`, which
writes their share of every lower level at the same time) and, on
:meth:`LabelsTarget.finish`, writes the metadata: an interrupted run never looks like a
finished labels image.

The ``zarr`` and ``ome-zarr`` libraries are the ``zarr`` extra; they are imported here
only when a store is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

SPATIAL = ("y", "x")
#: Axis types of the specification, for axes whose name is not one of t/c/z/y/x.
AXIS_TYPES = {"time": "t", "channel": "c"}

def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError("Reading OME-Zarr needs the zarr extra: pip install "
                         "'napari-unsupseg[zarr]'.") from None
    return zarr


def is_omezarr_path(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store: a ``.zarr`` name, or a folder holding zarr's
    own metadata files."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).exists()
                                 for name in ("zarr.json", ".zattrs", ".zgroup"))


@dataclass
class OmeZarrImage:
    """An opened OME-Zarr image: its axes, its levels (level 0 the finest) and scales."""

    path: Path
    axes: tuple[str, ...]
    levels: list[Any]  #: zarr arrays, read lazily
    scales: list[list[float]]  #: per level, one scale per axis
    version: str  #: the OME-Zarr version of the store ("0.4", "0.5", ...)
    zarr_format: int
    units: dict[str, str] = field(default_factory=dict)

    @property
    def level0(self) -> Any:
        return self.levels[0]

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("c") if "c" in self.axes else None

    @property
    def n_channels(self) -> int:
        axis = self.channel_axis
        return 1 if axis is None else int(self.level0.shape[axis])

    @property
    def plane_axes(self) -> tuple[str, ...]:
        """The axes that number planes (t, z): every axis but c, y and x."""
        return tuple(a for a in self.axes if a not in ("c", *SPATIAL))

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(int(self.level0.shape[self.axes.index(a)]) for a in self.plane_axes)

    @property
    def plane_size(self) -> tuple[int, int]:
        return int(self.level0.shape[-2]), int(self.level0.shape[-1])

    @property
    def label_axes(self) -> tuple[str, ...]:
        return tuple(a for a in self.axes if a != "c")

    @property
    def label_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for a, n in zip(self.axes, self.level0.shape, strict=True)
                     if a != "c")

    def voxel_scale(self, level: int = 0) -> dict[str, float]:
        """Axis name -> size of a voxel at ``level``."""
        return dict(zip(self.axes, self.scales[level], strict=True))

    def planes(self) -> Iterator[tuple[int, ...]]:
        """Every plane's index over :attr:`plane_axes` (one empty index for a 2-D image)."""
        yield from np.ndindex(*self.plane_shape)


def image_from_array(image: np.ndarray, path: str | Path) -> OmeZarrImage:
    """A channels-last plane ``(Y, X, C)`` or stack ``(N, Y, X, C)`` already in memory
    seen as an image of axes (c, [z,] y, x), so that it can be written as OME-Zarr."""
    axes = ("c", "y", "x") if image.ndim == 3 else ("c", "z", "y", "x")
    data = np.moveaxis(image, -1, 0)  # a view: nothing copied
    return OmeZarrImage(Path(path), axes, [data], [[1.0] * data.ndim], "0.5", 3)


def read_whole(image: OmeZarrImage, level: int = 0) -> np.ndarray:
    """A level read whole, channels last: a plane ``(Y, X, C)`` or a stack ``(N, Y, X,
    C)`` (t and z together make N). For images that fit in memory (batches of files)."""
    data = np.asarray(image.levels[level][...])
    if image.channel_axis is None:
        data = data[..., np.newaxis]
    else:
        data = np.moveaxis(data, image.channel_axis, -1)
    height, width, channels = data.shape[-3:]
    if data.ndim == 3:
        return data
    return data.reshape(-1, height, width, channels)


def _ome_attributes(group: Any) -> dict[str, Any]:
    """The OME metadata of a group: under ``ome`` in zarr v3 (OME-Zarr 0.5), at the top
    of the attributes before."""
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))


def open_omezarr(path: str | Path) -> OmeZarrImage:
    """Open the OME-Zarr image at ``path`` (its first multiscale) without reading pixels."""
    zarr = _zarr()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist.")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        raise InputError(f"{path} is not a zarr store (no zarr group could be opened "
                         "there).") from None
    attrs = _ome_attributes(group)
    multiscales = attrs.get("multiscales")
    if not multiscales:
        raise InputError(f"{path} is a zarr store but not an OME-Zarr image: it has no "
                         "multiscales metadata.")
    first = multiscales[0]
    datasets = first.get("datasets") or []
    try:
        levels = [group[d["path"]] for d in datasets]
    except (KeyError, TypeError):
        raise InputError(f"{path}: the multiscales metadata names an array that is not "
                         "in the store.") from None
    if not levels:
        raise InputError(f"{path}: the multiscales metadata lists no arrays.")
    ndim = levels[0].ndim
    axes = _axis_names(first.get("axes"), ndim, path)
    units = {a["name"]: a["unit"] for a in first.get("axes") or []
             if isinstance(a, dict) and a.get("unit")}
    scales = [_scale_of(d, first, ndim) for d in datasets]
    version = str(attrs.get("version") or first.get("version") or "0.4")
    return OmeZarrImage(path, axes, levels, scales, version,
                        int(group.metadata.zarr_format), units)


def _axis_names(axes: Any, ndim: int, path: Path) -> tuple[str, ...]:
    """The axes as t/c/z/y/x names; refuses images whose channel axis cannot be told."""
    if axes is None:
        if ndim == 5:  # versions 0.1 and 0.2: always t, c, z, y, x
            return ("t", "c", "z", "y", "x")
        raise InputError(f"{path} has no axes metadata, so its channel axis cannot be "
                         "determined.")
    names = []
    for axis in axes:
        name = (axis.get("name") if isinstance(axis, dict) else str(axis)).lower()
        kind = axis.get("type", "") if isinstance(axis, dict) else ""
        if name not in ("t", "c", "z", "y", "x"):
            name = AXIS_TYPES.get(kind, "z" if kind == "space" else name)
        names.append(name)
    known = {"t", "c", "z", "y", "x"}
    if len(names) != ndim or not set(names) <= known or len(set(names)) != len(names):
        raise InputError(f"{path}: its axes {names} are not distinct t/c/z/y/x axes, so its "
                         "channel axis cannot be determined.")
    if tuple(names[-2:]) != SPATIAL:
        raise InputError(f"{path}: its last two axes are {names[-2:]}, not y and x.")
    return tuple(names)


def _scale_of(dataset: dict[str, Any], multiscale: dict[str, Any], ndim: int) -> list[float]:
    """A dataset's scale, times the multiscale's own (the specification allows both)."""
    scale = np.ones(ndim)
    for transforms in (dataset.get("coordinateTransformations"),
                       multiscale.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
                scale = scale * np.asarray(transform["scale"], float)
    return [float(s) for s in scale]


def read_block(image: OmeZarrImage, plane: tuple[int, ...], ys: slice, xs: slice,
               level: int = 0) -> np.ndarray:
    """One window of one plane, channels last ``(h, w, C)`` (C = 1 without a c axis)."""
    index = dict(zip(image.plane_axes, plane, strict=True))
    selection = tuple(ys if a == "y" else xs if a == "x" else slice(None) if a == "c"
                      else index[a] for a in image.axes)
    block = np.asarray(image.levels[level][selection])
    if image.channel_axis is None:
        return block[..., np.newaxis]
    return np.moveaxis(block, 0, -1)  # y and x are last, so c leads what is left


def check_writable(path: Path) -> None:
    """Refuse a store or location that cannot be written, before any work (its ``labels``
    group too, where new labels go)."""
    place = path if path.exists() else path.parent
    if not place.exists():
        raise InputError(f"The folder {place} does not exist.")
    if not os.access(place, os.W_OK | os.X_OK) or (
            (path / "labels").exists() and not os.access(path / "labels", os.W_OK | os.X_OK)):
        raise InputError(f"{place} is read-only: the labels cannot be written there.")


@dataclass
class LabelsTarget:
    """An empty labels image being filled block by block (see :func:`create_labels`)."""

    group: Any  #: the group holding the levels
    parent: Any | None  #: the image's ``labels`` group (None for a new store)
    name: str
    axes: tuple[str, ...]
    levels: list[Any]
    scales: list[list[float]]
    version: str
    units: dict[str, str]
    path: Path

    def write_block(self, plane: tuple[Any, ...], ys: slice, xs: slice,
                    block: np.ndarray) -> None:
        """Write labels ``(..., h, w)`` into level 0 at ``(*plane, ys, xs)`` (``plane``
        holds indices or slices of the leading axes), and every second pixel of them into
        each lower level at once: a viewer reading the store sees every level fill as the
        blocks come, and :meth:`finish` has no pyramid left to build."""
        self.levels[0][(*plane, ys, xs)] = block
        for level in range(1, len(self.levels)):
            factor = 2 ** level
            rows, cols = _strided(ys, factor), _strided(xs, factor)
            if rows is None or cols is None:
                continue
            (dst_y, src_y), (dst_x, src_x) = rows, cols
            self.levels[level][(*plane, dst_y, dst_x)] = block[..., src_y, src_x]

    def read_block(self, plane: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        return np.asarray(self.levels[0][(*plane, ys, xs)])

    def finish(self, properties: list[dict[str, Any]] | None = None,
               source: dict[str, Any] | None = None,
               provenance: dict[str, Any] | None = None) -> None:
        """Write the OME metadata (and how the labels were made, under
        ``napari_unsupseg``); the levels are complete once every block is written."""
        from ome_zarr.format import format_from_version
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

        if provenance is not None:
            self.group.attrs["napari_unsupseg"] = provenance
        fmt = format_from_version(self.version)
        datasets = [{"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": s}]} for k, s in enumerate(self.scales)]
        axes = [_axis_entry(a, self.units) for a in self.axes]
        write_multiscales_metadata(self.group, datasets, fmt=fmt, axes=axes, name=self.name)
        extra: dict[str, Any] = {"source": {"image": "../../"}} if self.parent else {}
        if source:
            extra["source"] = {**extra.get("source", {}), **source}
        if self.parent is not None:
            # Opened again: another labels image of the store may have been listed in it
            # since this one was created (a model's classes, then its objects), and the
            # handle of that time would write its list back without it.
            parent = _zarr().open_group(str(self.path / "labels"), mode="r+")
            write_label_metadata(parent, self.name, properties=properties, fmt=fmt,
                                 **extra)
            if "ome" in dict(parent.attrs):  # 0.5 wants its version on this group too
                parent.attrs["ome"] = {**dict(parent.attrs)["ome"], "version": self.version}
        else:  # a store of its own: the labels image is its root
            meta = {"version": self.version, **extra}
            if properties:
                meta["properties"] = properties
            attrs = dict(self.group.attrs)
            if self.version not in ("0.1", "0.2", "0.3", "0.4"):
                attrs["ome"] = {**attrs.get("ome", {}), "image-label": meta}
            else:
                attrs["image-label"] = meta
            self.group.attrs.update(attrs)


def _axis_entry(name: str, units: dict[str, str]) -> dict[str, str]:
    kind = {"t": "time", "c": "channel"}.get(name, "space")
    entry = {"name": name, "type": kind}
    if name in units:
        entry["unit"] = units[name]
    return entry


def _strided(span: slice, factor: int) -> tuple[slice, slice] | None:
    """Where the pixels ``factor * i`` inside ``span`` (level 0) go in a level downsampled
    by ``factor`` (labels are never averaged: every ``factor``-th pixel is kept), and which
    of the block's pixels they are; None when the span holds none of them."""
    first = -(-span.start // factor)
    last = -(-span.stop // factor)
    if last <= first:
        return None
    offset = first * factor - span.start
    return slice(first, last), slice(offset, None, factor)


def label_levels(plane_size: tuple[int, int], wanted: int) -> int:
    """How many levels the labels get: as many as the image, while a level is >= 1 px."""
    levels = 1
    while levels < wanted and min(plane_size) >> levels >= 1:
        levels += 1
    return levels


def create_labels(image: OmeZarrImage, name: str, dtype: Any, *,
                  store: str | Path | None = None, overwrite: bool = False,
                  chunk: int = 1024) -> LabelsTarget:
    """An empty labels image for ``image``: ``labels/<name>`` in the image's store, or
    a new store at ``store``. Refuses a name or store already there unless ``overwrite``,
    and a location that cannot be written."""
    zarr = _zarr()
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"'{name}' cannot name labels: use letters, digits, '-' or '_'.")
    new_store = store is not None and Path(store).resolve() != image.path.resolve()
    root_path = Path(store) if new_store else image.path
    check_writable(root_path)
    if new_store:
        if root_path.exists() and not overwrite:
            raise InputError(f"{root_path} already exists; choose another output or allow "
                             "overwriting it.")
        group = zarr.open_group(str(root_path), mode="w", zarr_format=image.zarr_format)
        parent = None
    else:
        try:
            root = zarr.open_group(str(root_path), mode="r+")
            parent = root.require_group("labels")
        except PermissionError:
            raise InputError(f"{root_path} is read-only: the labels cannot be written "
                             "there.") from None
        present = name in parent or name in (_ome_attributes(parent).get("labels") or [])
        if present and not overwrite:
            raise InputError(f"The image already has labels named '{name}'; choose another "
                             "name or allow overwriting them.")
        if present:
            _forget_label(parent, name)
        group = parent.create_group(name, overwrite=True)
    label_scale = [s for a, s in zip(image.axes, image.scales[0], strict=True) if a != "c"]
    n_levels = label_levels(image.plane_size, len(image.levels))
    shape = list(image.label_shape)
    levels, scales = [], []
    for level in range(n_levels):
        factor = 2 ** level
        shape_k = [*shape[:-2], -(-shape[-2] // factor), -(-shape[-1] // factor)]
        chunks = [1] * (len(shape) - 2) + [min(chunk, n) for n in shape_k[-2:]]
        levels.append(_create_array(group, str(level), shape_k, chunks, dtype,
                                    image.zarr_format, image.label_axes))
        scales.append([*label_scale[:-2], label_scale[-2] * factor, label_scale[-1] * factor])
    units = {a: u for a, u in image.units.items() if a != "c"}
    return LabelsTarget(group, parent, name, image.label_axes, levels, scales,
                        image.version, units, root_path)


def _create_array(group: Any, name: str, shape: list[int], chunks: list[int], dtype: Any,
                  zarr_format: int, axes: tuple[str, ...]) -> Any:
    """An array as OME-Zarr wants it: '/'-separated chunk keys in zarr v2, dimension names
    in zarr v3."""
    kwargs: dict[str, Any] = {"shape": shape, "chunks": chunks, "dtype": dtype,
                              "fill_value": 0}
    if zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = list(axes)
    return group.create_array(name, **kwargs)


def _forget_label(parent: Any, name: str) -> None:
    """Drop ``name`` from the image's list of labels (it is being replaced)."""
    attrs = _ome_attributes(parent)
    listed = [n for n in attrs.get("labels") or [] if n != name]
    if "ome" in dict(parent.attrs):
        parent.attrs["ome"] = {**dict(parent.attrs)["ome"], "labels": listed}
    else:
        parent.attrs["labels"] = listed
