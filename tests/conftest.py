"""Shared test set-up: widget tests (marked ``gui``) check that layers change on the main thread."""

from __future__ import annotations

import importlib.util

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Ignore pydantic's own deprecation category (npe2 and bioimageio.spec still use
    pydantic 1 idioms; those warnings carry pydantic's or npe2's module, never the
    package's, and would bury the package's own). By category, not by module: the
    warnings are attributed to whichever module called pydantic. Only where pydantic is
    installed: a filter whose category cannot be imported stops pytest."""
    if importlib.util.find_spec("pydantic") is not None:
        config.addinivalue_line(
            "filterwarnings", "ignore::pydantic.warnings.PydanticDeprecationWarning")


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
