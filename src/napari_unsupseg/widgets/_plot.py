"""A small live plot of training curves, drawn by matplotlib's Qt canvas.

matplotlib is imported when the plot is created (when a training widget is docked),
never at plugin import. Redraws are throttled: points arrive at every training step.
The plot is hidden while it has no point (empty axes say nothing and take room).
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget


class LossPlot(QWidget):
    """Training loss per step and validation loss per epoch, against the step."""

    def __init__(self, parent: QWidget | None = None, min_interval: float = 0.5) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.min_interval = min_interval
        self._last_draw = 0.0
        self.axes: Any = None
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:  # an optional extra: the curves are still recorded
            layout.addWidget(QLabel("Install matplotlib to see the loss curves."))
        else:
            self.figure = Figure(figsize=(3.2, 1.9), tight_layout=True)
            self.canvas = FigureCanvasQTAgg(self.figure)
            self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self.canvas.setFixedHeight(170)
            layout.addWidget(self.canvas)
            self.axes = self.figure.add_subplot(111)
        self.clear()

    def clear(self) -> None:
        """Empty curves (a new training run starts)."""
        self.train: tuple[list[int], list[float]] = ([], [])
        self.validation: tuple[list[int], list[float]] = ([], [])
        self.setVisible(False)
        if self.axes is None:
            return
        self.axes.clear()
        (self._train_line,) = self.axes.plot([], [], lw=1, label="training")
        (self._val_line,) = self.axes.plot([], [], "o-", ms=3, lw=1.5, label="validation")
        self.axes.set_xlabel("training step", fontsize=8)
        self.axes.set_ylabel("loss (lower is better)", fontsize=8)
        self.axes.tick_params(labelsize=7)
        self.axes.legend(fontsize=7, loc="upper right")
        self.canvas.draw_idle()

    def add(self, step: int, loss: float | None = None, val_loss: float | None = None,
            force: bool = False) -> None:
        """Add a training and/or validation point; redraw if it is time."""
        if val_loss is not None:
            self.validation[0].append(step)
            self.validation[1].append(val_loss)
        elif loss is not None:
            self.train[0].append(step)
            self.train[1].append(loss)
        else:
            return
        self.setVisible(True)
        now = time.monotonic()
        if force or val_loss is not None or now - self._last_draw >= self.min_interval:
            self.redraw()

    def set_validation_label(self, text: str) -> None:
        """Rename the per-epoch curve (e.g. when it is the training loss per epoch)."""
        if self.axes is not None and self._val_line.get_label() != text:
            self._val_line.set_label(text)
            self.axes.legend(fontsize=7, loc="upper right")

    def redraw(self) -> None:
        self._last_draw = time.monotonic()
        if self.axes is None:
            return
        self._train_line.set_data(*self.train)
        self._val_line.set_data(*self.validation)
        self.axes.relim()
        self.axes.autoscale_view()
        self.canvas.draw_idle()

    def points(self) -> dict[str, Any]:
        """What is plotted (for tests and for saving)."""
        return {"train": [list(v) for v in self.train],
                "validation": [list(v) for v in self.validation]}
