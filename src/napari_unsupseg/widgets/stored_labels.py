"""The "Edit stored labels" dock: edit OME-Zarr labels through a working copy.

napari paints only single-scale labels, and a stored result is a multiscale Labels layer
over a zarr store (opened by napari-ome-zarr, or added by a dock, whose metadata then
names the store under :data:`~..core.base.stored_labels.METADATA_KEY`). So:

- **Edit the region in view** reads level 0 of the region the canvas shows, in the plane
  shown, into a single-scale Labels layer placed exactly over the stored one ("<name>
  working copy"); the stored layer is hidden while the copy is there (erasing in the
  copy would otherwise show the stored labels through it) and shown again when it goes.
  Views wider than :data:`MAX_SIDE` pixels are refused: zoom in.
- **Write back** writes the working copy into level 0 and the pyramid of that region,
  keeping what it replaced; a copy that matches the store writes nothing.
- **Undo write-back** puts the last replaced region back, level by level; the working
  copy keeps the user's edits, so they can be written again.

Closing a working copy without writing it leaves the store as it was. Reads and writes
happen on the main thread: a region is at most :data:`MAX_SIDE` squared pixels. Every
refusal or I/O error is one sentence in the status line and a notification.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui import widgets
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from ..core.base.errors import InputError
from ..core.base.stored_labels import (
    Snapshot,
    StoredLabels,
    labels_behind,
    open_labels,
    read_region,
    restore,
    write_region,
)
from ._dock import DockLifetime
from ._failures import error_message
from ._fit import FittingDock, scrolling_body, wrap_text
from ._layers import find_in_viewer, same, transform_for, unique_name, unwrap
from ._pickers import LayerPicker

if TYPE_CHECKING:
    import napari.viewer

#: The widest region (pixels of level 0, each side) read into a working copy: 4096 x 4096
#: uint32 labels are 64 MiB, and napari paints a layer that size without lag.
MAX_SIDE = 4096
#: The key of a working copy's metadata: where it came from.
WORKING_KEY = "omezarr_labels_working"


@dataclass
class Undo:
    """One write-back: what it replaced, in which labels, shown by which layer (the
    stored one, else the working copy)."""

    labels: StoredLabels
    snapshot: Snapshot
    stored_layer: weakref.ref


def view_region(viewer: Any, layer: Any,
                max_side: int = MAX_SIDE) -> tuple[tuple[int, ...], slice, slice]:
    """The plane shown (indices of the layer's leading axes) and the rows and columns of
    level 0 that the canvas shows, clipped to the layer. Refuses a 3-D view, a view that
    does not show the layer's y and x, one outside the layer, one wider than ``max_side``."""
    if viewer.dims.ndisplay != 2:
        raise InputError("Switch to the 2-D view to edit a region of stored labels.")
    shape = tuple(int(n) for n in layer.level_shapes[0])
    ndim = len(shape)
    offset = viewer.dims.ndim - ndim  # napari lines a layer's axes up with the last ones
    shown = [axis - offset for axis in viewer.dims.displayed]
    if sorted(shown) != [ndim - 2, ndim - 1]:
        raise InputError(f"Show the last two axes of '{layer.name}' (y and x) to edit a "
                         "region of it.")
    camera = viewer.scene.camera
    half = np.asarray(viewer.canvas.size, float) / camera.zoom / 2  # world units
    point = np.asarray(viewer.dims.point, float)
    corners = []
    for dy in (-1, 1):
        for dx in (-1, 1):
            world = point.copy()
            world[viewer.dims.displayed[0]] = camera.center[-2] + dy * half[0]
            world[viewer.dims.displayed[1]] = camera.center[-1] + dx * half[1]
            corners.append(layer.world_to_data(world))
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    # Pixel i covers data coordinates i - 0.5 to i + 0.5.
    start = np.clip(np.floor(low[-2:] + 0.5).astype(int), 0, shape[-2:])
    stop = np.clip(np.floor(high[-2:] + 0.5).astype(int) + 1, 0, shape[-2:])
    if np.any(stop <= start):
        raise InputError(f"The view does not show '{layer.name}': move to its labels first.")
    if np.any(stop - start > max_side):
        size = " x ".join(str(int(n)) for n in stop - start)
        raise InputError(f"The view shows {size} pixels of '{layer.name}', more than "
                         f"{max_side} x {max_side}: zoom in to edit a region of it.")
    here = layer.world_to_data(point)[:-2]
    plane = tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(here, shape,
                                                                           strict=False))
    return plane, slice(int(start[0]), int(stop[0])), slice(int(start[1]), int(stop[1]))


def _forget_cached_tiles() -> None:
    """napari keeps tiles of dask-backed layers it has read; after a write they are stale
    (a dask chunk keeps its name when the store under it changes)."""
    from napari.utils import resize_dask_cache

    resize_dask_cache().cache.clear()  # no arguments: the viewer's cache, not resized


class StoredLabelsWidget(DockLifetime, FittingDock, QWidget):
    """Edit a region of stored OME-Zarr labels in a single-scale working copy."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.max_side = MAX_SIDE
        self.layers = LayerPicker(viewer, Labels, label="stored labels",
                                  tooltip="A multiscale Labels layer read from an "
                                  "OME-Zarr store (labels of an image, or a store of "
                                  "their own).")
        self.names = widgets.ComboBox(label="labels", choices=[], visible=False,
                                      tooltip="The store holds several labels: the one "
                                      "this layer shows.")
        self.edit_button = QPushButton("Edit the region in view")
        self.edit_button.setToolTip("Copy the labels the canvas shows (plane shown, full "
                                    "resolution) into a layer you can paint.")
        self.write_button = QPushButton("Write back")
        self.write_button.setToolTip("Write the working copy (the selected one, else the "
                                     "newest) into the store, at every level.")
        self.undo_button = QPushButton("Undo write-back")
        self.undo_button.setToolTip("Put back what the last write-back replaced.")
        self.status = QLabel("")
        wrap_text(self.status)
        self._candidates: list[StoredLabels] = []
        self._working: list[weakref.ref] = []  # working copies, oldest first
        self._stored_of: dict[int, weakref.ref] = {}  # working copy -> its stored layer
        self._hid: set[int] = set()  # stored layers hidden while copies of them are open
        self._undo: list[Undo] = []

        layout = scrolling_body(self)
        form = QFormLayout()
        form.addRow("stored labels", self.layers.combo.native)
        self._names_row = QLabel("labels")
        form.addRow(self._names_row, self.names.native)
        layout.addLayout(form)
        layout.addWidget(self.edit_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.write_button)
        buttons.addWidget(self.undo_button)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch()
        self.fit()

        self.layers.changed.connect(self.choose_layer)
        self.edit_button.clicked.connect(self.edit_region)
        self.write_button.clicked.connect(self.write_back)
        self.undo_button.clicked.connect(self.undo_write_back)
        viewer.layers.events.removed.connect(self._on_removed)
        self.choose_layer(self.layers.value)

    # ------------------------------------------------------------------ choosing
    def choose_layer(self, layer: Any) -> None:
        """Find the stored labels behind ``layer`` (quietly: the status line says why not)."""
        self._candidates = []
        if layer is not None and layer.metadata.get(WORKING_KEY) is None:
            try:
                self._candidates = labels_behind(layer.metadata, layer.source.path,
                                                 layer.name)
            except Exception as error:  # noqa: BLE001 - a broken store: said in words
                self._say(error_message(error, "Opening the store"))
            else:
                self._say(f"'{layer.name}' shows {self._describe(self._candidates[0])}."
                          if len(self._candidates) == 1 else
                          f"The store of '{layer.name}' holds several labels: pick one.")
        elif layer is not None:
            self._say(f"'{layer.name}' is a working copy: choose the stored layer it "
                      "came from to edit another region.")
        several = len(self._candidates) > 1
        self.names.choices = [c.name for c in self._candidates]
        self.names.visible = several
        self._names_row.setVisible(several)
        self._update_buttons()

    def stored_labels(self) -> StoredLabels | None:
        chosen = [c for c in self._candidates if c.name == self.names.value]
        return chosen[0] if chosen else (self._candidates[0] if self._candidates else None)

    @staticmethod
    def _describe(labels: StoredLabels) -> str:
        return f"the labels '{labels.name}' of {labels.store}"

    # ------------------------------------------------------------------ doing
    def edit_region(self) -> Any:
        """Copy level 0 of the region in view into a new working copy; returns it."""
        layer, labels = self.layers.value, self.stored_labels()
        if layer is None or labels is None:
            return self._refuse("Choose a Labels layer read from an OME-Zarr store first.")
        try:
            plane, ys, xs = view_region(self.viewer, layer, self.max_side)
            block = read_region(open_labels(labels.store, labels.name), plane, ys, xs)
        except InputError as error:
            return self._refuse(str(error))
        except Exception as error:  # a broken store: one sentence, not a traceback
            return self._fail(error, "Reading the labels")
        transform = transform_for(layer, range(layer.ndim))
        start = [*plane, ys.start, xs.start]
        origin = np.asarray(layer.data_to_world(np.zeros(layer.ndim)), float)
        moved = np.asarray(layer.data_to_world(np.asarray(start, float)), float) - origin
        # data_to_world includes the layer's affine; the translate sits inside it.
        transform["translate"] = tuple(np.asarray(layer.translate, float) + np.linalg.solve(
            np.asarray(layer.affine.linear_matrix, float), moved))
        data = block.reshape((1,) * len(plane) + block.shape)
        where = {"plane": list(plane), "y": [ys.start, ys.stop], "x": [xs.start, xs.stop]}
        working = self.viewer.add_labels(
            data, name=unique_name(self.viewer, f"{layer.name} working copy"),
            metadata={WORKING_KEY: {**labels.as_metadata(), **where}},
            colormap=layer.colormap, **transform)  # the stored labels' colours
        # napari hands plugins proxies of its layers: keep (weak) hold of the layers.
        self._working.append(weakref.ref(unwrap(working)))
        self._stored_of[id(unwrap(working))] = weakref.ref(unwrap(layer))
        hides = bool(layer.visible)
        if hides:
            layer.visible = False
            self._hid.add(id(unwrap(layer)))
        self._say(f"Working copy of rows {ys.start}-{ys.stop}, columns {xs.start}-"
                  f"{xs.stop}{self._plane_words(plane)}: paint it, then Write back."
                  + (f" '{layer.name}' is hidden while the copy is there." if hides else ""))
        self._update_buttons()
        return working

    def write_back(self) -> bool:
        """Write the working copy into the store; True when something was written."""
        working = self._current_working()
        if working is None:
            self._refuse("There is no working copy to write back: Edit the region "
                         "in view first.")
            return False
        where = working.metadata[WORKING_KEY]
        labels = StoredLabels(Path(where["store"]), where["name"])
        plane, ys, xs = tuple(where["plane"]), slice(*where["y"]), slice(*where["x"])
        data = np.asarray(working.data)
        if data.shape != (1,) * len(plane) + (ys.stop - ys.start, xs.stop - xs.start):
            self._refuse(f"'{working.name}' no longer has the shape of the region it "
                         "was copied from, so it cannot be written back.")
            return False
        try:
            snapshot = write_region(open_labels(labels.store, labels.name), plane, ys, xs,
                                    data.reshape(data.shape[-2:]))
        except InputError as error:
            self._refuse(str(error))
            return False
        except Exception as error:
            self._fail(error, "Writing the labels")
            return False
        if snapshot is None:
            show_info(f"Nothing to write: {self._describe(labels)} already hold "
                      f"'{working.name}'.")
            self._say("Nothing to write: the store already holds the working copy.")
            return False
        stored_layer = self._stored_of.get(id(unwrap(working))) or weakref.ref(unwrap(working))
        self._undo.append(Undo(labels, snapshot, stored_layer))
        self._refresh(stored_layer)
        self._say(f"Written into {self._describe(labels)}, every level. Undo write-back "
                  "puts the previous labels back.")
        self._update_buttons()
        return True

    def undo_write_back(self) -> bool:
        """Put back what the last write-back replaced; True when it did."""
        if not self._undo:
            self._refuse("There is no write-back to undo.")
            return False
        last = self._undo[-1]
        try:
            restore(open_labels(last.labels.store, last.labels.name), last.snapshot)
        except InputError as error:
            self._refuse(str(error))
            return False
        except Exception as error:
            self._fail(error, "Undoing the write-back")
            return False
        self._undo.pop()
        self._refresh(last.stored_layer)
        self._say(f"The write-back into {self._describe(last.labels)} is undone; the "
                  "working copy keeps your edits.")
        self._update_buttons()
        return True

    # ------------------------------------------------------------------ helpers
    def _current_working(self) -> Any:
        """The selected working copy, else the newest one still in the viewer."""
        alive = [find_in_viewer(self.viewer, ref()) for ref in self._working]
        alive = [layer for layer in alive if layer is not None]
        active = self.viewer.layers.selection.active
        if any(same(layer, active) for layer in alive):
            return active
        return alive[-1] if alive else None

    def _refresh(self, stored_layer: weakref.ref) -> None:
        layer = find_in_viewer(self.viewer, stored_layer())
        if layer is None or WORKING_KEY in layer.metadata:
            return  # gone, or a working copy (it holds what was written)
        try:
            _forget_cached_tiles()
        except Exception:  # noqa: BLE001 - a stale tile is shown, the store is right
            pass
        layer.refresh()

    def _on_removed(self, event: Any) -> None:
        """A working copy closed: show the stored layer it hid, once no other copy of it
        is left."""
        key = id(unwrap(event.value))
        self._hid.discard(key)  # a stored layer removed: nothing to show again
        self._working = [ref for ref in self._working
                         if ref() is not None and not same(ref(), event.value)]
        stored = self._stored_of.pop(key, None)
        layer = find_in_viewer(self.viewer, stored() if stored else None)
        if layer is not None and id(unwrap(layer)) in self._hid and not any(
                same(ref(), layer) for ref in self._stored_of.values()):
            self._hid.discard(id(unwrap(layer)))
            layer.visible = True
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.edit_button.setEnabled(bool(self._candidates))
        self.write_button.setEnabled(self._current_working() is not None)
        self.undo_button.setEnabled(bool(self._undo))

    @staticmethod
    def _plane_words(plane: tuple[int, ...]) -> str:
        return f", plane {', '.join(map(str, plane))}" if plane else ""

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _refuse(self, message: str) -> None:
        self._say(message)
        show_warning(message)

    def _fail(self, error: Exception, what: str) -> None:
        message = error_message(error, what)
        self._say(message)
        show_error(message)

    def dispose(self) -> None:
        self.layers.disconnect()
        self.viewer.layers.events.removed.disconnect(self._on_removed)

