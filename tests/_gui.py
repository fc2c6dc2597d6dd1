"""Helpers for the widget tests."""

from __future__ import annotations

from napari.utils.notifications import NotificationSeverity, notification_manager


def error_messages() -> list[str]:
    """The error notifications shown since the test started."""
    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]
