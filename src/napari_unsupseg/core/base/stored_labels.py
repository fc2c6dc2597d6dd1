"""Editing OME-Zarr labels already written: find them, open them for writing, write a
region back (level 0 and its share of every lower level) and put it back as it was.

napari edits only single-scale labels, so a stored pyramid is edited through a working
copy of one region of level 0: :func:`read_region` gives it, :func:`write_region` writes
it back through :meth:`~.omezarr.LabelsTarget.write_block` (lower levels keep every
``2**k``-th pixel, as when the labels were made) and returns a :class:`Snapshot` of what
it replaced, which :func:`restore` writes back exactly.

Labels are named by a :class:`StoredLabels` (a store and a labels name): the labels
``labels/<name>`` of an OME-Zarr image, or a store that is a labels image of its own.
:func:`find_labels` and :func:`labels_behind` find them from a path (and a layer's
metadata), without any viewer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .omezarr import LabelsTarget, open_omezarr

#: The key of a layer's metadata that names the stored labels it shows:
#: ``{"store": "<path>", "name": "<labels name>"}``.
METADATA_KEY = "omezarr_labels"


@dataclass(frozen=True)
class StoredLabels:
    """Labels in an OME-Zarr store: ``labels/<name>`` of an image, or the store itself."""

    store: Path
    name: str

    def as_metadata(self) -> dict[str, str]:
        return {"store": str(self.store), "name": self.name}


def _ome(group: Any) -> dict[str, Any]:
    # OME-Zarr 0.5 keeps its metadata under "ome"; earlier versions at the top.
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))


def _open_root(store: Path, mode: str = "r") -> Any:
    if not store.exists():
        raise InputError(f"{store} does not exist.")
    try:
        import zarr
    except ImportError:
        raise InputError("Editing OME-Zarr labels needs the zarr extra: pip install "
                         "'napari-unsupseg[zarr]'.") from None
    try:
        return zarr.open_group(str(store), mode=mode)
    except Exception:
        raise InputError(f"{store} is not a zarr store (no zarr group could be opened "
                         "there).") from None


def _own_name(root: Any, store: Path) -> str | None:
    """The name of a store that is a labels image of its own (None if it is not one)."""
    attrs = _ome(root)
    if "image-label" not in attrs:
        return None
    multiscales = attrs.get("multiscales") or [{}]
    return str(multiscales[0].get("name") or store.stem)


def labels_in(store: str | Path) -> list[str]:
    """The names of the labels a store holds: those its image lists under ``labels``,
    or its own name when the store is a labels image of its own."""
    store = Path(store)
    root = _open_root(store)
    own = _own_name(root, store)
    if own is not None:
        return [own]
    if "labels" not in root:
        return []
    group = root["labels"]
    return [str(n) for n in _ome(group).get("labels") or [] if str(n) in group]


def find_labels(path: str | Path, name: str | None = None) -> list[StoredLabels]:
    """The labels behind ``path`` (an image store, one of its ``labels/<name>`` groups,
    or a labels store of its own): the one called ``name`` if there is one, else all of
    them, for the user to choose. Refuses a path that holds no labels."""
    path = Path(path)
    if path.parent.name == "labels":
        image = path.parent.parent
        try:
            if path.name in labels_in(image):
                return [StoredLabels(image, path.name)]
        except InputError:
            pass  # not an image's labels group: look at the path itself
    names = labels_in(path)
    if not names:
        raise InputError(f"{path} holds no OME-Zarr labels.")
    if name in names:
        return [StoredLabels(path, str(name))]
    return [StoredLabels(path, n) for n in names]


def labels_behind(metadata: Mapping[str, Any] | None, source_path: str | None,
                  layer_name: str = "") -> list[StoredLabels]:
    """The stored labels a layer shows: named in its metadata (:data:`METADATA_KEY`), or
    found at the path it was opened from; the layer's name picks among several (readers
    name label layers after the labels, as ``labels/<name>``)."""
    described = (metadata or {}).get(METADATA_KEY)
    if isinstance(described, Mapping) and described.get("store"):
        return find_labels(described["store"], described.get("name"))
    if source_path:
        return find_labels(source_path, layer_name.rsplit("/", 1)[-1] or None)
    raise InputError(f"The layer '{layer_name}' was not opened from an OME-Zarr store, so "
                     "there are no stored labels to edit.")


def _writable(path: Path) -> bool:
    """Whether the labels group and every array folder in it can be written."""
    folders = [path, *(p for p in path.iterdir() if p.is_dir())]
    return all(os.access(p, os.W_OK | os.X_OK) for p in folders)


def open_labels(store: str | Path, name: str) -> LabelsTarget:
    """Existing OME-Zarr labels (zarr v2 / OME-Zarr 0.4 or zarr v3 / 0.5) opened for
    writing blocks into, as :func:`~.omezarr.create_labels` gives new ones. Refuses
    a read-only store, a store without labels called ``name``, and a pyramid whose
    levels are not halvings of level 0 (an edit could not be written into them)."""
    import zarr

    store = Path(store)
    names = labels_in(store)
    root = _open_root(store)
    if name not in names:
        has = f" (it has {', '.join(names)})" if names else ""
        raise InputError(f"{store} has no labels named '{name}'{has}.")
    own = _own_name(root, store) is not None
    path = store if own else store / "labels" / name
    if not _writable(path):
        raise InputError(f"{store} is read-only: the labels '{name}' cannot be edited "
                         "there.")
    stored = open_omezarr(path)
    try:
        group = zarr.open_group(str(path), mode="r+")
        parent = None if own else zarr.open_group(str(store / "labels"), mode="r+")
        levels = [group[level.path] for level in stored.levels]
    except (PermissionError, OSError):
        raise InputError(f"{store} is read-only: the labels '{name}' cannot be edited "
                         "there.") from None
    top = levels[0].shape
    for k, level in enumerate(levels):
        halved = (*top[:-2], -(-top[-2] // 2 ** k), -(-top[-1] // 2 ** k))
        if tuple(level.shape) != halved:
            raise InputError(f"The labels '{name}' of {store} have levels that are not "
                             "halvings of level 0, so an edit cannot be written into them.")
    return LabelsTarget(group, parent, name, stored.axes, levels, stored.scales,
                        stored.version, stored.units, store)


@dataclass
class Snapshot:
    """What a write replaced, level by level, so that :func:`restore` puts it back exactly
    (even in a pyramid that was not made by taking every ``2**k``-th pixel)."""

    parts: list[tuple[int, tuple[Any, ...], np.ndarray]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(values.nbytes for _, _, values in self.parts)


def _touched(target: LabelsTarget, plane: tuple[int, ...], ys: slice,
             xs: slice) -> list[tuple[int, tuple[Any, ...]]]:
    """Where :meth:`LabelsTarget.write_block` writes a region, level by level: at level
    k, the pixels ``2**k * i`` inside the region."""
    touched = []
    for k in range(len(target.levels)):
        f = 2 ** k
        rows = slice(-(-ys.start // f), -(-ys.stop // f))
        cols = slice(-(-xs.start // f), -(-xs.stop // f))
        if rows.stop > rows.start and cols.stop > cols.start:
            touched.append((k, (*plane, rows, cols)))
    return touched


def read_region(target: LabelsTarget, plane: tuple[int, ...], ys: slice,
                xs: slice) -> np.ndarray:
    """Level 0 of one region of one plane ``(h, w)``."""
    try:
        return target.read_block(plane, ys, xs)
    except OSError as exc:
        raise InputError(f"The labels '{target.name}' of {target.path} could not be read "
                         f"({exc.strerror or exc}).") from None


def write_region(target: LabelsTarget, plane: tuple[int, ...], ys: slice, xs: slice,
                 labels: np.ndarray) -> Snapshot | None:
    """Write ``labels`` ``(h, w)`` over one region of level 0 and its share of every
    lower level; returns what was there before, or None (nothing written) when the store
    already holds these labels."""
    labels = np.asarray(labels)
    dtype = np.dtype(target.levels[0].dtype)
    if labels.size and np.issubdtype(dtype, np.integer) and (
            int(labels.max()) > np.iinfo(dtype).max or int(labels.min()) < 0):
        raise InputError(f"The labels '{target.name}' hold {dtype} values: label "
                         f"{int(labels.max())} cannot be stored in them.")
    if np.array_equal(read_region(target, plane, ys, xs), labels):
        return None
    snapshot = Snapshot([(k, where, np.asarray(target.levels[k][where]))
                         for k, where in _touched(target, plane, ys, xs)])
    try:
        target.write_block(plane, ys, xs, labels.astype(dtype, copy=False))
    except OSError as exc:
        restore(target, snapshot)  # a half-written region would not match any state
        raise InputError(f"The labels '{target.name}' of {target.path} could not be "
                         f"written ({exc.strerror or exc}).") from None
    return snapshot


def restore(target: LabelsTarget, snapshot: Snapshot) -> None:
    """Put back what a :func:`write_region` replaced."""
    try:
        for k, where, values in snapshot.parts:
            target.levels[k][where] = values
    except OSError as exc:
        raise InputError(f"The labels '{target.name}' of {target.path} could not be "
                         f"written ({exc.strerror or exc}).") from None
