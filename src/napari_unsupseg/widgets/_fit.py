"""Docks that fit a small screen (1280 x 800) beside a usable canvas.

- :func:`scrolling_body`: a dock's content inside a scroll area, so a tall dock never
  asks the window for more height than the screen has; its size hint is capped.
- :func:`wrap_text`: long texts (a model's description, a note) wrap instead of
  widening the dock.
- :func:`compact_combos`: drop-downs do not widen the dock to their longest choice.
- :func:`fit_labels`: every field label of a dock gets the width its text needs in the
  font it is drawn with. magicgui measures labels before napari's style sheet applies,
  which cuts the widest by a few pixels ("architectur").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magicgui import widgets
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import QComboBox, QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

#: The largest size a dock asks for: it leaves a 1280 x 800 screen a usable canvas.
MAX_DOCK_WIDTH = 440
MAX_DOCK_HEIGHT = 680
#: The width of a drop-down, in characters.
COMBO_CHARACTERS = 8
#: Pixels added to a label's measured text (the style sheet's padding, rounding).
LABEL_SLACK = 6


class _DockScroll(QScrollArea):
    """A frameless scroll area whose size hint is its content's, capped."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        inner = self.widget()
        if inner is None:
            return super().sizeHint()
        hint = inner.sizeHint()
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(min(hint.width() + bar, MAX_DOCK_WIDTH),
                     min(hint.height(), MAX_DOCK_HEIGHT))


def scrolling_body(dock: QWidget) -> QVBoxLayout:
    """Give ``dock`` a scroll area filling it; returns the layout to add its content to."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = _DockScroll(dock)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    body = QWidget(scroll)
    scroll.setWidget(body)
    outer.addWidget(scroll)
    return QVBoxLayout(body)


def wrap_text(label: Any) -> None:
    """Let a text (a magicgui ``Label`` or a ``QLabel``) wrap at the dock's width."""
    native = label.native if isinstance(label, widgets.Widget) else label
    native.setWordWrap(True)
    native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)


def fit_labels(forms: Iterable[widgets.Container]) -> None:
    """Give the field labels of each magicgui form the width of its widest, measured in
    the font each is drawn with (call again once the dock is styled)."""
    for form in forms:
        texts = {w.label for w in form if w.label} if form.labels else set()
        labels = [label for label in form.native.findChildren(QLabel)
                  if label.text() in texts and not label.wordWrap()]
        for label in labels:
            label.ensurePolished()
        width = max((label.fontMetrics().horizontalAdvance(label.text())
                     for label in labels), default=0) + LABEL_SLACK
        for label in labels:
            label.setMinimumWidth(width)


def compact_combos(dock: QWidget) -> None:
    """Drop-downs as wide as about :data:`COMBO_CHARACTERS` characters, not as their
    longest choice (a long layer name or option would widen the dock); the open list
    still shows every choice in full."""
    for combo in dock.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)


class FittingDock:
    """Mixin placed before ``QWidget``: the field labels are measured again whenever the
    dock is shown or restyled (napari's style sheet changes fonts after building)."""

    _fitted = False

    def label_forms(self) -> list[widgets.Container]:
        """The magicgui forms whose labels line up (override)."""
        return []

    def fit(self) -> None:
        """Measure the labels, narrow the drop-downs (call once the dock is built; later
        shows measure again)."""
        self._fitted = True
        fit_labels(self.label_forms())
        compact_combos(self)  # type: ignore[arg-type]

    def event(self, event: Any) -> bool:
        if self._fitted and event.type() in _RESTYLED:
            self.fit()
        return super().event(event)  # type: ignore[misc]


_RESTYLED = (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange)
