"""Stepping through objects: the camera centres on each, zoomed to it, in its plane.

Buttons and keys on the reviewed layer (they are the layer's own bindings, so
they act while the layer is selected, and are removed when the widget closes or
another layer is chosen). None of them is one of napari's Labels shortcuts:

==========  =========================
``N``       next object
``Shift-N`` previous object
``A``       accept the current object
``R``       reject it
``T``       mark it "to fix"
==========  =========================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui import widgets
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.review import framing, step, zoom_to_fill
from .review_model import ReviewModel, guarded

KEYS = {"next": "n", "previous": "Shift-N", "accepted": "a", "rejected": "r", "to fix": "t"}


class Navigator(QWidget):
    """Previous / next, accept / reject, and the camera moves that go with them."""

    def __init__(self, viewer: Any, model: ReviewModel) -> None:
        super().__init__()
        self.viewer = viewer
        self.model = model
        self.message: Callable[[str], None] = lambda _text: None
        self._bound: Any = None
        #: True while the navigator itself redraws the layer (not an edit).
        self.moving = False
        self.previous_button = QPushButton(f"◀ Previous ({KEYS['previous']})")
        self.next_button = QPushButton(f"Next ({KEYS['next'].upper()}) ▶")
        self.status_buttons = {
            status: QPushButton(f"{status.capitalize()} ({KEYS[status].upper()})")
            for status in ("accepted", "rejected", "to fix")
        }
        self.fill = widgets.FloatSlider(value=0.5, min=0.1, max=0.95, step=0.05,
                                        label="object fills",
                                        tooltip="How much of the view an object fills when shown.")
        self.highlight = widgets.CheckBox(value=True, text="show only the current object")
        self.where = QLabel("No object chosen.")
        self.where.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.previous_button)
        row.addWidget(self.next_button)
        layout.addLayout(row)
        statuses = QHBoxLayout()
        for button in self.status_buttons.values():
            statuses.addWidget(button)
        layout.addLayout(statuses)
        options = QFormLayout()
        options.addRow("object fills", self.fill.native)
        options.addRow(self.highlight.native)
        layout.addLayout(options)
        layout.addWidget(self.where)
        self._connect()

    def _connect(self) -> None:
        self.next_button.clicked.connect(lambda: self.go(1))
        self.previous_button.clicked.connect(lambda: self.go(-1))
        for status, button in self.status_buttons.items():
            button.clicked.connect(lambda _=False, s=status: self.mark(s))
        self.model.current_changed.connect(self.show)
        self.model.table_changed.connect(self._table_changed)
        self.model.layer_changed.connect(self.bind_keys)
        self.highlight.changed.connect(lambda _v: self.show(self.model.current))

    # ------------------------------------------------------------------ actions
    def go(self, offset: int) -> int | None:
        """Show the object ``offset`` places from the current one in review order."""
        def move() -> int | None:
            if self.model.table is None:
                self.model.measure()
            label = step(self.model.order(), self.model.current, offset)
            if label is None:
                self.message("No object passes the filters.")
                return None
            self.model.set_current(label)
            return label

        return guarded(move, self.message)

    def mark(self, status: str, advance: bool = True) -> None:
        """Give the current object a status, then move on to the next one."""
        def act() -> None:
            if self.model.current is None:
                self.go(1)
                return
            self.model.set_status(self.model.current, status)
            if advance:
                self.go(1)

        guarded(act, self.message)

    def show(self, label: int | None) -> None:
        """Centre the camera on ``label``, zoomed to it, in its plane, and select it."""
        layer, table = self.model.layer, self.model.table
        if label is None or layer is None or table is None:
            return
        self.moving = True
        try:
            guarded(lambda: self._show(layer, table, label), self.message)
        finally:
            self.moving = False

    def _show(self, layer: Any, table: Any, label: int) -> None:
        frame = framing(table, label)
        centre = np.asarray(layer.data_to_world(frame.center), dtype=float)
        lower = np.asarray(layer.data_to_world(frame.lower), dtype=float)
        upper = np.asarray(layer.data_to_world(frame.upper), dtype=float)
        dims = self.viewer.dims
        offset = dims.ndim - layer.ndim  # layers are aligned on their last axes
        displayed = [d - offset for d in dims.displayed if d >= offset]
        for axis in range(layer.ndim):
            if axis not in displayed:
                dims.set_point(axis + offset, centre[axis])
        camera = self.viewer.scene.camera
        camera.center = tuple(centre[displayed])
        extent = np.abs(upper - lower)[displayed]
        camera.zoom = zoom_to_fill(extent[-2:], self.viewer.canvas.size, self.fill.value)
        layer.selected_label = label
        if layer.show_selected_label != bool(self.highlight.value):
            # Only on a change: setting it re-colours the whole layer, even to the same value.
            layer.show_selected_label = bool(self.highlight.value)
        self.where.setText(self.describe(label))

    def describe(self, label: int | None) -> str:
        """Where ``label`` is in the review order, and its status (the line under the
        buttons)."""
        table = self.model.table
        if label is None or table is None:
            return "No object chosen."
        rows = np.flatnonzero(table["label"] == label)
        if rows.size == 0:
            return f"Object {label} is no longer in the layer."
        order = self.model.order()
        rank = np.flatnonzero(order == label)
        where = f"{int(rank[0]) + 1} of {order.size}" if rank.size else "not in the filtered list"
        return f"Object {label} ({where}), status: {table['status'][int(rows[0])]}"

    def _table_changed(self) -> None:
        # An edit, undo, sort or filter changes the count and the rank: say it again.
        self.where.setText(self.describe(self.model.current))

    # ------------------------------------------------------------------ keys
    def bind_keys(self, layer: Any) -> None:
        """Bind the review keys on ``layer`` (and remove them from the previous one)."""
        self.unbind_keys()
        if layer is None:
            return
        handlers = {
            "next": lambda _layer: self.go(1),
            "previous": lambda _layer: self.go(-1),
            **{s: (lambda _layer, s=s: self.mark(s)) for s in ("accepted", "rejected", "to fix")},
        }
        for name, key in KEYS.items():
            layer.bind_key(key, handlers[name], overwrite=True)
        self._bound = layer

    def unbind_keys(self) -> None:
        if self._bound is None:
            return
        for key in KEYS.values():
            self._bound.bind_key(key, None)
        self._bound = None
