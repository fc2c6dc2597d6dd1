"""Helpers for the widget tests: the plugin's docks, their runs and the errors shown."""

from __future__ import annotations

from napari.utils.notifications import NotificationSeverity, notification_manager


def error_messages() -> list[str]:
    """The error notifications shown since the test started."""
    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


PLUGIN = "napari-unsupseg"


def open_dock(viewer, name: str):
    """The plugin's dock ``name``, added to ``viewer`` as its menu adds it."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def run_dock(qtbot, widget, timeout: int = 60_000, *, press: bool = True) -> str:
    """Start the dock's run (its button, or its ``run`` method where a test drives that)
    and wait for it to end; the dock is idle again. Returns the outcome ("done", ...)."""
    with qtbot.waitSignal(widget.run_finished, timeout=timeout) as blocker:
        if press:
            widget.run_button.click()
        else:
            widget.run()
    assert not widget.is_running and widget.run_button.isEnabled()
    return blocker.args[0]
