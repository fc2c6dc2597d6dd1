"""Curation actions on the reviewed layer, each one undo step (Ctrl+Z undoes it whole).

The actions compute a :class:`~napari_unsupseg.core.review.edits.Change` in the core
(only the pixels that change); :meth:`.ReviewModel.apply` writes it with
``data_setitem`` inside one ``block_history`` block and measures again only the
objects it touched. Two mouse modes work on the layer while switched on (in
napari's pan/zoom mode, so that the brush does not paint too): superpixel painting
(a click or drag gives whole superpixels the selected label) and two-seed split
(two clicks inside an object cut it by a watershed between them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui import widgets
from napari.layers import Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QGridLayout, QPushButton, QVBoxLayout, QWidget

from ..core.base.errors import InputError
from ..core.review import (
    SuperpixelIndex,
    delete,
    fill_holes,
    merge,
    relabel_sequential,
    remove_small,
    split_by_seeds,
    split_by_superpixels,
)
from ._pickers import LayerPicker
from .review_model import ReviewModel, guarded, labels_of

NO_SUPERPIXELS = "(no superpixel layer)"


class Actions(QWidget):
    """Buttons for the actions and the two mouse modes."""

    def __init__(self, viewer: Any, model: ReviewModel) -> None:
        super().__init__()
        self.viewer = viewer
        self.model = model
        self.message: Callable[[str], None] = lambda _text: None
        self.edited: Callable[[], None] = lambda: None
        self.superpixels = LayerPicker(viewer, Labels, label="superpixels",
                                       none_label=NO_SUPERPIXELS,
                                       tooltip="A presegmentation layer (see Presegment).")
        self.min_size = widgets.SpinBox(value=20, min=1, max=10**9, label="smaller than",
                                        tooltip="Objects of fewer pixels are removed.")
        self.buttons = {
            name: QPushButton(text)
            for name, text in [
                ("merge", "Merge selected"),
                ("delete", "Delete selected"),
                ("split", "Split along superpixels"),
                ("seeds", "Split at two clicks"),
                ("small", "Remove small objects"),
                ("holes", "Fill holes"),
                ("relabel", "Relabel 1..N"),
                ("paint", "Paint superpixels"),
            ]
        }
        for name in ("seeds", "paint"):
            self.buttons[name].setCheckable(True)
        self.buttons["seeds"].setToolTip(
            "Click two points inside one object: it is cut between them."
        )
        self.buttons["paint"].setToolTip(
            "Click or drag on the layer (in pan/zoom mode) to give whole superpixels the "
            "selected label."
        )
        self.mode: str | None = None
        self._index: SuperpixelIndex | None = None
        self._seeds: list[tuple[int, ...]] = []
        self._hooked: Any = None

        grid = QGridLayout()
        names = list(self.buttons)
        for k, name in enumerate(names):
            grid.addWidget(self.buttons[name], k // 2, k % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        inputs = QFormLayout()
        inputs.addRow("superpixels", self.superpixels.combo.native)
        inputs.addRow("remove smaller than (px)", self.min_size.native)
        layout.addLayout(inputs)
        layout.addLayout(grid)
        self._connect()

    def _connect(self) -> None:
        actions = {
            "merge": self.merge,
            "delete": self.delete,
            "split": self.split,
            "small": self.remove_small,
            "holes": self.fill_holes,
            "relabel": self.relabel,
        }
        for name, action in actions.items():
            self.buttons[name].clicked.connect(lambda _=False, a=action: self.run(a))
        self.buttons["paint"].toggled.connect(lambda on: self.set_mode("paint" if on else None))
        self.buttons["seeds"].toggled.connect(lambda on: self.set_mode("seeds" if on else None))
        self.model.layer_changed.connect(lambda _layer: self.set_mode(None))
        self.superpixels.changed.connect(lambda _layer: self._index_reset())

    # ------------------------------------------------------------------ running
    def run(self, action: Callable[[np.ndarray], str]) -> None:
        """Run an action on the layer's labels; refusals become notifications."""
        def act() -> None:
            self.message(action(labels_of(self.model.layer)))

        guarded(act, self.message)

    def _write(self, change: Any) -> int:
        return self.model.apply(change)

    def _chosen(self, at_least: int = 1) -> list[int]:
        chosen = self.model.chosen()
        if len(chosen) < at_least:
            raise InputError(
                "Select the objects in the table first." if at_least == 1
                else f"Select at least {at_least} objects in the table (Shift or Ctrl click)."
            )
        return chosen

    # ------------------------------------------------------------------ actions
    def merge(self, labels: np.ndarray) -> str:
        chosen = self._chosen(2)
        into = self.model.current if self.model.current in chosen else min(chosen)
        self._write(merge(labels, chosen, into, self.model.boxes(chosen)))
        self.model.set_current(into)
        return f"Merged {len(chosen)} objects into label {into}."

    def delete(self, labels: np.ndarray) -> str:
        chosen = self._chosen()
        self._write(delete(labels, chosen, self.model.boxes(chosen)))
        self.model.set_selection([])
        return f"Deleted {len(chosen)} object(s)."

    def split(self, labels: np.ndarray) -> str:
        chosen = self._chosen()
        label = self.model.current if self.model.current in chosen else chosen[0]
        superpixels = self._superpixel_data(labels.shape)
        change = split_by_superpixels(labels, label, superpixels, self.model.boxes([label]))
        written = self._write(change)
        return f"Split label {label} along the superpixels ({written} pixels relabelled)."

    def remove_small(self, labels: np.ndarray) -> str:
        change = remove_small(labels, int(self.min_size.value))
        removed = np.unique(labels[change.box][change.mask]).size if change.size else 0
        self._write(change)
        return f"Removed {removed} object(s) smaller than {self.min_size.value} pixels."

    def fill_holes(self, labels: np.ndarray) -> str:
        chosen = self.model.selection or None
        written = self._write(fill_holes(labels, chosen))
        return f"Filled {written} hole pixel(s)."

    def relabel(self, labels: np.ndarray) -> str:
        present = np.unique(labels)
        present = present[present > 0]
        mapping = {int(old): new for new, old in enumerate(present.tolist(), start=1)}
        self.model.renumber_statuses(mapping)
        self._write(relabel_sequential(labels))
        if self.model.current is not None:
            self.model.current = mapping.get(self.model.current)
        return f"Relabelled {present.size} objects as 1..{present.size}."

    # ------------------------------------------------------------------ mouse modes
    def _superpixel_data(self, shape: tuple[int, ...]) -> np.ndarray:
        layer = self.superpixels.value
        if layer is None:
            raise InputError("Choose a superpixel layer first (the Presegment widget makes one).")
        data = labels_of(layer)
        if data.shape != shape:
            raise InputError(
                f"The superpixel layer '{layer.name}' has shape {data.shape} but the labels "
                f"have shape {shape}; choose one of the same size."
            )
        return data

    def _index_reset(self) -> None:
        self._index = None
        if self.mode == "paint":
            self.buttons["paint"].setChecked(False)

    def set_mode(self, mode: str | None) -> None:
        """Switch a mouse mode on (``"paint"``, ``"seeds"``) or every mode off (None)."""
        def switch() -> None:
            self._unhook()
            self.mode, self._seeds = None, []
            if mode is None:
                return
            layer = self.model.layer
            labels = labels_of(layer)
            if mode == "paint":
                self._index = SuperpixelIndex(self._superpixel_data(labels.shape))
            layer.mode = "pan_zoom"
            layer.mouse_pan = False  # a drag paints instead of moving the view
            layer.mouse_drag_callbacks.append(self._on_mouse)
            self._hooked, self.mode = layer, mode
            self.message("Drag over superpixels to paint them." if mode == "paint"
                         else "Click the first seed inside the object to split.")

        guarded(switch, self.message)
        for name in ("paint", "seeds"):
            button = self.buttons[name]
            button.blockSignals(True)
            button.setChecked(self.mode == name)
            button.blockSignals(False)

    def _unhook(self) -> None:
        layer, self._hooked = self._hooked, None
        if layer is None:
            return
        if self._on_mouse in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_mouse)
        if layer.mode == "pan_zoom":
            layer.mouse_pan = True

    def _pixel(self, layer: Any, event: Any) -> tuple[int, ...] | None:
        coords = np.round(np.asarray(layer.world_to_data(event.position))).astype(int)
        if np.any(coords < 0) or np.any(coords >= np.asarray(layer.data.shape)):
            return None
        return tuple(int(c) for c in coords)

    def _on_mouse(self, layer: Any, event: Any) -> Any:
        if str(layer.mode) != "pan_zoom" or self.mode is None:
            return
        if self.mode == "seeds":
            guarded(lambda: self._seed(layer, event), self.message)
            return
        painted: set[int] = set()
        with layer.block_history():  # the whole drag is one undo step
            self._paint(layer, event, painted)
            yield
            while event.type == "mouse_move":
                self._paint(layer, event, painted)
                yield
        self.edited()

    def _paint(self, layer: Any, event: Any, painted: set[int]) -> None:
        pixel = self._pixel(layer, event)
        if pixel is None or self._index is None:
            return
        superpixel = int(self._index.superpixels[pixel])
        if superpixel in painted:
            return
        painted.add(superpixel)
        change = self._index.paint(layer.data, [superpixel], int(layer.selected_label),
                                   preserve_labels=bool(layer.preserve_labels))
        if change.size:
            # Not write_change: its own block_history would commit each superpixel
            # as a separate undo step; the drag's block collects them all.
            layer.data_setitem(change.indices(), change.values)

    def _seed(self, layer: Any, event: Any) -> None:
        pixel = self._pixel(layer, event)
        if pixel is None:
            return
        self._seeds.append(pixel)
        if len(self._seeds) == 1:
            self.message(f"First seed at {pixel}; click the second inside the same object.")
            return
        seeds, self._seeds = self._seeds, []
        labels = labels_of(layer)
        label = int(labels[seeds[0]])
        if label == 0 or int(labels[seeds[1]]) != label:
            raise InputError("Both seeds must lie inside the same object; click two new seeds.")
        image = next((im for im in self.model.images
                      if not im.rgb and np.shape(im.data) == labels.shape), None)
        change = split_by_seeds(labels, label, seeds,
                                None if image is None else np.asarray(image.data),
                                self.model.boxes([label]))
        self.model.apply(change)
        # Leave the mode once napari has finished going through the layer's mouse
        # callbacks: removing ours from that list while it is being walked skips others.
        QTimer.singleShot(0, lambda: self.set_mode(None))
        self.message(f"Split label {label} in two at the seeds.")

    def close_modes(self) -> None:
        self.set_mode(None)
