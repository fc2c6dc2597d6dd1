"""Failures in plain words: one sentence in a dock's status line and a napari notification,
never a traceback dialog (the runner and the docks that read files show them alike)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from napari.utils.notifications import show_error

from ..core.base.errors import InputError

logger = logging.getLogger(__name__)


def error_message(exc: BaseException, what: str = "Segmentation") -> str:
    """The plain-words message for an exception: InputError as is, else '<what> failed'."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"{what} failed: {text}"


def show_failure(exc: BaseException, set_status: Callable[[str], None],
                 what: str = "Segmentation") -> None:
    """Show a failed run in plain words: the widget's status line and a napari
    notification (main thread); anything but an InputError is logged with its traceback."""
    if not isinstance(exc, InputError):
        logger.error("%s failed", what, exc_info=exc)
    message = error_message(exc, what)
    set_status(f"Failed: {message}")
    show_error(message)
