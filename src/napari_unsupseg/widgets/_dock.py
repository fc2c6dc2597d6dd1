"""When a dock widget goes away: one rule for every widget of the plugin.

napari closes a dock widget in two ways: a close event, or (the dock's close button,
``remove_dock_widget``) by taking the widget out of its dock, setting its parent to
``None`` without closing it. :class:`DockLifetime` acts once in either case: it
disposes of every :class:`~._runner.EngineRunner` the widget owns (its runs are
abandoned, none starts again), then calls the widget's ``dispose()`` to undo its viewer
connections.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent

from ._runner import EngineRunner


class DockLifetime:
    """Mixin placed before ``QWidget``: ``dispose()`` once when the dock goes away."""

    def dispose(self) -> None:
        """Stop following the viewer (override; called once, runs already abandoned)."""

    def _dispose_once(self) -> None:
        if not getattr(self, "_disposed", False):
            self._disposed = True
            for runner in self.findChildren(EngineRunner):  # type: ignore[attr-defined]
                runner.dispose()
            self.dispose()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self._dispose_once()
        super().closeEvent(event)  # type: ignore[misc]

    def event(self, event: Any) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:  # type: ignore[attr-defined]
                self._docked = True
            elif getattr(self, "_docked", False):
                self._dispose_once()
        return super().event(event)  # type: ignore[misc]
