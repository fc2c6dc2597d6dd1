"""The run controls view: Run / Cancel / Defaults, the device and memory line, a progress
bar and a status line.

It holds no run state: a widget tells it when a run starts and ends
(:meth:`RunControls.set_busy`) and hands it each progress event
(:meth:`RunControls.show_progress`). Main thread only.
"""

from __future__ import annotations

import math
import time

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.base.engine import Progress
from ..core.base.limits import time_left

#: Seconds between two updates of the bar and the status line during a run.
SHOW_INTERVAL = 0.25


class RunControls(QWidget):
    """Buttons, progress bar and status text of an engine widget."""

    def __init__(self, run_label: str = "Run", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_label)
        self.run_button.setToolTip("Run on the chosen image.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop the run: the result so far is finished (merges, class ids) and kept. "
            "Press again to abandon it."
        )
        self.cancel_button.setEnabled(False)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Set every parameter back to its default.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        #: Before a run: the device and the run's estimated peak memory.
        self.limits = QLabel("")
        self.limits.setWordWrap(True)
        self.limits.setToolTip("The device that runs the engine, and an estimate of the "
                               "memory the run will take with these settings.")
        self._last_shown = -math.inf

        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.reset_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.limits)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)

    def set_busy(self, busy: bool, succeeded: bool = False) -> None:
        """A run starts (busy) or ends (``succeeded``: whether it left a result)."""
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.reset_button.setEnabled(not busy)
        if busy:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1 if succeeded else 0)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_limits(self, text: str) -> None:
        self.limits.setText(text)

    def show_progress(self, event: Progress, *, quiet: bool = False,
                      text: str | None = None, elapsed: float | None = None) -> None:
        """Show ``event``: the bar, and the text unless ``quiet`` (e.g. when a stop message
        must stay visible). At most every SHOW_INTERVAL seconds, and always the last step:
        a progress bar repaints at once, which in a window holding an OpenGL canvas redraws
        the whole window, and that time is taken from the run. ``text``: the widget's own
        words for the event (default: step, loss, labels and the engine's message).
        ``elapsed``: seconds since the run started, for the time left at this rate."""
        now = time.monotonic()
        if now - self._last_shown < SHOW_INTERVAL and event.step < event.total:
            return
        self._last_shown = now
        if event.total > 0:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        if quiet:
            return
        left = time_left(event.step, event.total, elapsed) if elapsed is not None else ""
        if text is not None:
            self.set_status(f"{text} · {left}" if left else text)
            return
        parts = [f"step {event.step}/{event.total}"] if event.total > 0 else []
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4g}")
        if event.n_labels is not None:
            parts.append(f"{event.n_labels} labels")
        if event.message:
            parts.append(event.message)
        if left:
            parts.append(left)
        self.set_status(" · ".join(parts))
