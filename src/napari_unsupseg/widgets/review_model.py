"""The state the review views share: the layer, its object table, the order, the current object.

One small evented object holds it; the table view, the navigator, the actions and
the comparison panel read it and subscribe to its signals, and none of them keeps
a copy. The logic (measuring, ordering, filtering) is :mod:`napari_unsupseg.core.review`;
this module only keeps the results and writes the table to ``layer.features``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from psygnal import Signal

from ..core.base.errors import InputError
from ..core.review import STATUSES, filter_rows, measure, review_order
from ..core.review.edits import Change
from ..core.review.table import MEASURED_PREFIXES, Table, bbox_of, check_labels, remeasure

#: The column holding each object's review status.
STATUS = "status"

def measure_columns(table: Table | None) -> list[str]:
    return [] if table is None else [c for c in table if c.startswith(MEASURED_PREFIXES)]


def labels_of(layer: Any) -> np.ndarray:
    """A Labels layer's data as an editable numpy array, or an :class:`InputError`."""
    if layer is None:
        raise InputError("Choose a Labels layer to review.")
    if layer.multiscale:
        raise InputError(f"'{layer.name}' is multiscale; napari cannot edit such a layer.")
    return check_labels(np.asarray(layer.data), f"The layer '{layer.name}'")


def intensity_channels(layers: Sequence[Any], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Each Image layer's channels by name, checked to have the labels' ``shape``."""
    channels: dict[str, np.ndarray] = {}
    for layer in layers:
        if layer.multiscale:
            raise InputError(f"'{layer.name}' is multiscale; choose a single-scale image.")
        data = np.asarray(layer.data)
        if layer.rgb and data.shape[:-1] == shape:
            for k, colour in enumerate("rgba"[: data.shape[-1]]):
                channels[f"{layer.name}-{colour}"] = data[..., k]
        elif data.shape == shape:
            channels[layer.name] = data
        else:
            raise InputError(
                f"The image '{layer.name}' has shape {data.shape} but the labels have shape "
                f"{shape}; choose an image of the same size."
            )
    return channels


def write_change(layer: Any, change: Change) -> int:
    """Write a change into a Labels layer as one undo step; returns the pixels written."""
    if change.size == 0:
        return 0
    with layer.block_history():
        layer.data_setitem(change.indices(), change.values)
    return change.size


def guarded(action: Callable[[], Any], report: Callable[[str], None] | None = None) -> Any:
    """Run ``action``; an :class:`InputError` becomes a napari notification, not a traceback."""
    try:
        return action()
    except InputError as error:
        show_error(str(error))
        if report is not None:
            report(str(error))
        return None


class ReviewModel:
    """The reviewed layer and everything known about its objects.

    Signals: ``layer_changed(layer)``, ``table_changed()`` (new measurements, statuses,
    sort or filter), ``current_changed(label)``, ``selection_changed(labels)``.
    """

    layer_changed = Signal(object)
    table_changed = Signal()
    current_changed = Signal(object)
    selection_changed = Signal(object)

    def __init__(self) -> None:
        self.layer: Any = None
        self.images: list[Any] = []
        self.table: Table | None = None
        self.current: int | None = None
        self.selection: list[int] = []
        self.sort_by = "label"
        self.descending = False
        self.filter_column: str | None = None
        self.low: float | None = None
        self.high: float | None = None
        self.status_filter: str | None = None
        self._order: np.ndarray | None = None
        #: Whether the table describes the layer as it is now (no edit since measuring).
        self.fresh = False
        #: True while :meth:`apply` writes (its own edits need no new measurement).
        self.writing = False

    # ------------------------------------------------------------------ inputs
    def set_layer(self, layer: Any) -> None:
        self.layer = layer
        self.table, self._order = None, None
        self.current, self.selection = None, []
        self.layer_changed.emit(layer)
        self.table_changed.emit()

    def set_images(self, layers: Sequence[Any]) -> None:
        self.images = list(layers)

    # ------------------------------------------------------------------ table
    def measure(self) -> Table:
        """Measure the layer's objects, keep their statuses, and show them in ``layer.features``."""
        labels = labels_of(self.layer)
        channels = intensity_channels(self.images, labels.shape)
        return self._adopt(measure(labels, channels, spacing=tuple(self.layer.scale)))

    def apply(self, change: Change) -> int:
        """Write ``change`` into the layer as one undo step and update the table around it.

        Only the rows of the labels it touched are measured again, when the table was
        up to date before the write; otherwise the whole layer is measured.
        """
        labels = labels_of(self.layer)
        if change.size == 0:
            return 0
        before = labels[change.box][change.mask]
        was_fresh = self.fresh and self.table is not None
        self.writing = True
        try:
            written = write_change(self.layer, change)
        finally:
            self.writing = False
        if not was_fresh:
            self.measure()
            return written
        affected = np.union1d(np.unique(before), np.unique(change.values))
        channels = intensity_channels(self.images, labels.shape)
        self._adopt(remeasure(self.table, labels, change.box, affected, channels,
                              spacing=tuple(self.layer.scale)))
        return written

    def _adopt(self, table: Table) -> Table:
        """Make ``table`` the current one: statuses and others' columns carried over."""
        table[STATUS] = self._statuses_for(table["label"])
        table.update(self._other_columns(table["label"]))
        self.table, self._order, self.fresh = table, None, True
        self.layer.features = {"index": table["label"], **table}
        if self.current is not None and self.current not in table["label"]:
            self.current = None
        self.selection = [s for s in self.selection if s in set(table["label"].tolist())]
        self.table_changed.emit()
        return table

    def clear(self) -> None:
        """Forget the table (the layer's labels went away)."""
        self.table, self._order, self.fresh = None, None, False
        self.table_changed.emit()

    def _statuses_for(self, labels: np.ndarray) -> np.ndarray:
        statuses = np.full(labels.size, STATUSES[0], dtype=object)
        source: Any = self.table
        if source is None:  # a layer reviewed before keeps its statuses in its features
            features = self.layer.features
            source = features if {"index", STATUS} <= set(features.columns) else None
        if source is not None:
            key = "label" if "label" in source and source is self.table else "index"
            known = dict(zip(np.asarray(source[key]).tolist(), np.asarray(source[STATUS]),
                             strict=True))
            for row, label in enumerate(labels.tolist()):
                status = known.get(label, STATUSES[0])
                statuses[row] = status if status in STATUSES else STATUSES[0]
        return statuses

    def boxes(self, labels: Sequence[int]) -> dict[int, tuple[slice, ...]] | None:
        """The table's bounding boxes of ``labels`` while the table is fresh, else None.

        They spare the actions a scan of the whole image.
        """
        if not self.fresh or self.table is None:
            return None
        rows = {int(v): k for k, v in enumerate(self.table["label"].tolist())}
        if any(int(v) not in rows for v in labels):
            return None
        return {int(v): bbox_of(self.table, rows[int(v)]) for v in labels}

    def _other_columns(self, labels: np.ndarray) -> Table:
        """Columns others put in ``layer.features`` (class names, categories), kept by label."""
        features = self.layer.features
        if "index" not in features or features.shape[0] == 0:
            return {}
        ours = set(measure_columns(self.table)) | {"index", "label", STATUS}
        position = {int(v): k for k, v in enumerate(np.asarray(features["index"]).tolist())}
        rows = np.array([position.get(int(v), -1) for v in labels.tolist()])
        columns: Table = {}
        for name in features.columns:
            if name in ours or name.startswith(MEASURED_PREFIXES):
                continue
            values = np.asarray(features[name], dtype=object)
            columns[name] = np.where(rows >= 0, values[np.maximum(rows, 0)], None)
        return columns

    def renumber_statuses(self, mapping: dict[int, int]) -> None:
        """Carry statuses over a relabelling (old label -> new label)."""
        if self.table is not None:
            self.table["label"] = np.array(
                [mapping.get(int(v), int(v)) for v in self.table["label"]], np.int64
            )

    def set_status(self, label: int, status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"Unknown status '{status}'; use one of {', '.join(STATUSES)}.")
        if self.table is None:
            raise InputError("Measure the objects first.")
        rows = np.flatnonzero(self.table["label"] == label)
        if rows.size == 0:
            raise InputError(f"There is no object with label {label}.")
        self.table[STATUS][rows] = status
        self.layer.features = {"index": self.table["label"], **self.table}
        self._order = None
        self.table_changed.emit()

    # ------------------------------------------------------------------ order
    def set_sort(self, column: str, descending: bool = False) -> None:
        self.sort_by, self.descending, self._order = column, descending, None
        self.table_changed.emit()

    def set_filter(self, column: str | None, low: float | None, high: float | None,
                   status: str | None = None) -> None:
        self.filter_column, self.low, self.high = column, low, high
        self.status_filter, self._order = status, None
        self.table_changed.emit()

    def visible_rows(self) -> np.ndarray:
        """Which rows the filters let through (a boolean mask)."""
        if self.table is None:
            return np.zeros(0, bool)
        keep = np.ones(self.table["label"].size, bool)
        if self.filter_column in self.table and self.filter_column != STATUS:
            keep &= filter_rows(self.table, self.filter_column, self.low, self.high)
        if self.status_filter is not None:
            keep &= self.table[STATUS] == self.status_filter
        return keep

    def order(self) -> np.ndarray:
        """The labels in review order (sorted and filtered as the table shows them)."""
        if self.table is None:
            return np.zeros(0, np.int64)
        if self._order is None:
            by = self.sort_by if self.sort_by in self.table else "label"
            if by == STATUS:
                rank = {s: k for k, s in enumerate(STATUSES)}
                keyed = {**self.table, STATUS: np.array([rank[s] for s in self.table[STATUS]])}
                self._order = review_order(keyed, by, self.descending, self.visible_rows())
            else:
                self._order = review_order(self.table, by, self.descending, self.visible_rows())
        return self._order

    # ------------------------------------------------------------------ current object
    def set_current(self, label: int | None) -> None:
        self.current = None if label is None else int(label)
        self.current_changed.emit(self.current)

    def set_selection(self, labels: Sequence[int]) -> None:
        self.selection = [int(v) for v in labels]
        self.selection_changed.emit(self.selection)

    def chosen(self) -> list[int]:
        """The labels an action works on: the selected rows, else the current object."""
        if self.selection:
            return list(self.selection)
        return [] if self.current is None else [self.current]
