"""Shared test set-up: widget tests (marked ``gui``) check that layers change on the main thread."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _gui_main_thread_only(request, monkeypatch):
    """napari raises when a plugin changes a layer from another thread while this is set;
    each widget test starts with no notifications left from the one before."""
    if request.node.get_closest_marker("gui") is None:
        return
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("NAPARI_ENSURE_PLUGIN_MAIN_THREAD", "1")
    notification_manager.records.clear()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small images gain nothing from two threads, and on a busy machine OpenMP's barriers
    make two threads several times slower; results are the same. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
