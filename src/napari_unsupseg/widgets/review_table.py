"""The object table: sortable by any column, filtered by a range or a status, CSV export.

A ``QTableView`` over a light Qt model that reads the review model's columns on
demand, so 10,000 objects show at once (no widget per cell). Clicking a column
header sorts (again: reverses), clicking a row goes to that object, selecting
several rows chooses the labels that merge / delete act on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui import widgets
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.base.errors import InputError
from ..core.review import STATUSES, write_csv
from ._form import chosen_path
from .review_model import STATUS, ReviewModel, guarded

ALL_STATUSES = "any status"
NO_FILTER = "no range filter"


class _Columns(QAbstractTableModel):
    """The review model's table in its current order, for a QTableView."""

    def __init__(self, model: ReviewModel) -> None:
        super().__init__()
        self.model = model
        self.columns: list[str] = []
        self.labels = np.zeros(0, np.int64)
        self.rows = np.zeros(0, np.int64)

    def reload(self) -> None:
        self.beginResetModel()
        table = self.model.table
        self.columns = [] if table is None else list(table)
        self.labels = self.model.order()
        if table is not None:
            position = {int(v): k for k, v in enumerate(table["label"].tolist())}
            self.rows = np.array([position[int(v)] for v in self.labels], np.int64)
        else:
            self.rows = np.zeros(0, np.int64)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else int(self.labels.size)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or self.model.table is None:
            return None
        value = self.model.table[self.columns[index.column()]][self.rows[index.row()]]
        if isinstance(value, float | np.floating):
            return f"{value:.6g}"
        return str(value)

    def headerData(  # noqa: N802 - Qt's name
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            name = self.columns[section]
            if name == self.model.sort_by:
                name += " ▼" if self.model.descending else " ▲"
            return name
        return None


class ObjectTable(QWidget):
    """Filter controls, the table and CSV export."""

    def __init__(self, model: ReviewModel) -> None:
        super().__init__()
        self.model = model
        self.columns = _Columns(model)
        self.view = QTableView()
        self.view.setModel(self.columns)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().setVisible(False)
        self.view.setMinimumHeight(180)
        self.filter_column = QComboBox()
        self.filter_column.setToolTip("Show only objects whose value in this column is in range.")
        self.low = QLineEdit()
        self.low.setPlaceholderText("min")
        self.high = QLineEdit()
        self.high.setPlaceholderText("max")
        self.status = QComboBox()
        self.status.addItems([ALL_STATUSES, *STATUSES])
        self.csv_path = widgets.FileEdit(mode="w", filter="*.csv", label="CSV")
        self.export_button = QPushButton("Export table as CSV")
        self.message = print_nothing

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        filters = QHBoxLayout()
        for widget in (self.filter_column, self.low, self.high, self.status):
            filters.addWidget(widget)
        layout.addLayout(filters)
        layout.addWidget(self.view)
        export = QHBoxLayout()
        export.addWidget(self.csv_path.native)
        export.addWidget(self.export_button)
        layout.addLayout(export)
        self._connect()

    def _connect(self) -> None:
        self.model.table_changed.connect(self.reload)
        self.model.current_changed.connect(self.show_current)
        self.view.horizontalHeader().sectionClicked.connect(self._sort)
        self.view.clicked.connect(self._clicked)
        self.view.selectionModel().selectionChanged.connect(self._selected)
        for edit in (self.low, self.high):
            edit.editingFinished.connect(self.apply_filter)
        self.filter_column.currentIndexChanged.connect(self.apply_filter)
        self.status.currentIndexChanged.connect(self.apply_filter)
        self.export_button.clicked.connect(lambda: guarded(self.export, self.message))

    # ------------------------------------------------------------------ model -> view
    def reload(self) -> None:
        table = self.model.table
        numeric = [] if table is None else [
            c for c in table if c != STATUS and np.issubdtype(np.asarray(table[c]).dtype, np.number)
        ]
        current = self.filter_column.currentText()
        self.filter_column.blockSignals(True)
        self.filter_column.clear()
        self.filter_column.addItems([NO_FILTER, *numeric])
        if current in numeric:
            self.filter_column.setCurrentText(current)
        self.filter_column.blockSignals(False)
        self.columns.reload()
        self.show_current(self.model.current)

    def show_current(self, label: int | None) -> None:
        if label is None:
            return
        rows = np.flatnonzero(self.columns.labels == label)
        if rows.size:
            self.view.scrollTo(self.columns.index(int(rows[0]), 0))
            if label not in self.model.selection:
                self.view.selectRow(int(rows[0]))

    # ------------------------------------------------------------------ view -> model
    def _sort(self, section: int) -> None:
        column = self.columns.columns[section]
        descending = column == self.model.sort_by and not self.model.descending
        self.model.set_sort(column, descending)

    def _clicked(self, index: QModelIndex) -> None:
        self.model.set_current(int(self.columns.labels[index.row()]))

    def _selected(self, *_: Any) -> None:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        self.model.set_selection([int(self.columns.labels[r]) for r in rows])

    def apply_filter(self, *_: Any) -> None:
        guarded(self._apply_filter, self.message)

    def _apply_filter(self) -> None:
        column = self.filter_column.currentText()
        status = self.status.currentText()
        self.model.set_filter(
            None if column in ("", NO_FILTER) else column,
            _number(self.low.text(), "min"),
            _number(self.high.text(), "max"),
            None if status == ALL_STATUSES else status,
        )

    def export(self) -> None:
        if self.model.table is None:
            raise InputError("Measure the objects first; there is no table to export.")
        path = self.csv_path.value
        if chosen_path(path) is None:
            raise InputError("Choose a CSV file to write the table to.")
        written = write_csv(self.model.table, path)
        self.message(f"Wrote {self.model.table['label'].size} objects to {written}.")


def _number(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"The {what} of the filter must be a number; got '{text}'.") from None


def print_nothing(_text: str) -> None:
    """Default message sink until the widget connects its status line."""
