"""The "Edit stored labels" dock on OME-Zarr labels opened by napari-ome-zarr: a working
copy of the region in view, written back into every level, undone."""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages

pytest.importorskip("napari_ome_zarr")

from _zarr import smooth_volume, write_store  # noqa: E402
from napari.layers import Labels  # noqa: E402
from napari.utils.notifications import (  # noqa: E402
    NotificationSeverity,
    notification_manager,
)

from napari_unsupseg.core.base import omezarr  # noqa: E402
from napari_unsupseg.core.base.stored_labels import open_labels  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (2, 64, 80)  # z, y, x of the labels; scale (2, 0.5, 0.25) from tests/_zarr.py


def _store(tmp_path):
    path = write_store(tmp_path / "img.zarr", smooth_volume((1, *SHAPE)), "0.4")
    target = omezarr.create_labels(omezarr.open_omezarr(path), "cells", np.uint32, chunk=32)
    truth = np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) + 1
    target.write_block((slice(0, 2),), slice(0, 64), slice(0, 80), truth)
    target.finish()
    return path, truth


def _levels(path):
    return [np.asarray(level[:]) for level in open_labels(path, "cells").levels]


def _messages(severity):
    return [n.message for n in notification_manager.records if n.severity == severity]


def test_edit_write_back_and_undo_a_region_of_stored_labels(make_napari_viewer, tmp_path):
    path, truth = _store(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-ome-zarr")
    stored = next(layer for layer in viewer.layers if isinstance(layer, Labels))
    assert stored.multiscale
    stored.visible = True  # napari-ome-zarr opens labels hidden
    _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Edit stored labels")
    widget.layers.value = stored
    assert widget.names.native.isHidden()  # one labels image: nothing to choose
    # The second plane, about 24 rows x 40 columns around pixel (30, 40).
    viewer.dims.set_point(0, 2.0)
    camera = viewer.scene.camera
    camera.center = (0.0, 30 * 0.5, 40 * 0.25)
    camera.zoom = viewer.canvas.size[0] / (24 * 0.5)

    working = widget.edit_region()
    assert not error_messages()
    assert isinstance(working, Labels) and not working.multiscale
    assert "working copy" in working.name and not stored.visible
    plane, (y0, y1), (x0, x1) = (working.metadata["omezarr_labels_working"][k]
                                 for k in ("plane", "y", "x"))
    assert plane == [1]
    assert abs((y1 - y0) - 25) <= 1 and y0 <= 30 < y1 and x0 <= 40 < x1
    expected_width = viewer.canvas.size[1] / camera.zoom / 0.25
    assert abs((x1 - x0) - min(expected_width + 1, 80)) <= 1
    assert working.data.shape == (1, y1 - y0, x1 - x0)
    np.testing.assert_array_equal(working.data[0], truth[1, y0:y1, x0:x1])
    np.testing.assert_allclose(working.scale, stored.scale)
    np.testing.assert_allclose(working.translate, (2.0, y0 * 0.5, x0 * 0.25))

    working.data[0, 2:6, 3:9] = 4242  # the user paints
    assert widget.write_back()
    painted = truth.copy()
    painted[1, y0 + 2:y0 + 6, x0 + 3:x0 + 9] = 4242
    level0, level1 = _levels(path)
    np.testing.assert_array_equal(level0, painted)
    np.testing.assert_array_equal(level1, painted[:, ::2, ::2])
    assert np.asarray(stored.data[0][1, y0 + 2, x0 + 3]) == 4242  # the layer reads it
    assert not widget.write_back()  # nothing new: nothing written
    assert any("Nothing to write" in m for m in _messages(NotificationSeverity.INFO))

    assert widget.undo_write_back()
    level0, level1 = _levels(path)
    np.testing.assert_array_equal(level0, truth)
    np.testing.assert_array_equal(level1, truth[:, ::2, ::2])
    assert working.data[0, 2, 3] == 4242  # the user's edit is still in the working copy
    assert not widget.undo_button.isEnabled()

    second = widget.edit_region()  # a second copy of the same region
    viewer.layers.remove(working)  # closing a copy: nothing written, nothing asked
    assert not stored.visible  # the second copy still covers it
    viewer.layers.remove(second)  # the last copy closed: the stored layer comes back
    assert stored.visible and not widget.write_button.isEnabled()
    np.testing.assert_array_equal(_levels(path)[0], truth)


def test_a_view_too_large_is_refused_in_words(make_napari_viewer, tmp_path):
    path, _ = _store(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-ome-zarr")
    stored = next(layer for layer in viewer.layers if isinstance(layer, Labels))
    _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Edit stored labels")
    widget.layers.value = stored
    widget.max_side = 16  # the whole 64 x 80 image is in view
    n_layers = len(viewer.layers)
    assert widget.edit_region() is None
    assert len(viewer.layers) == n_layers
    assert any("zoom in" in m for m in _messages(NotificationSeverity.WARNING))
    assert not error_messages()


def test_a_read_only_store_is_refused_in_words(make_napari_viewer, tmp_path, monkeypatch):
    from napari_unsupseg.core.base import stored_labels

    path, truth = _store(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-ome-zarr")
    stored = next(layer for layer in viewer.layers if isinstance(layer, Labels))
    _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Edit stored labels")
    widget.layers.value = stored
    working = widget.edit_region()  # the whole image is in view
    assert working.data.shape == (1, 64, 80)
    working.data[0, :4, :4] = 77
    monkeypatch.setattr(stored_labels.os, "access", lambda *args: False)
    assert not widget.write_back()
    assert any("is read-only" in m for m in _messages(NotificationSeverity.WARNING))
    assert "read-only" in widget.status.text() and not widget.undo_button.isEnabled()
    monkeypatch.undo()
    np.testing.assert_array_equal(_levels(path)[0], truth)


def test_labels_named_in_metadata_and_a_choice_among_several(make_napari_viewer, tmp_path):
    """A dock's result names its store in the layer's metadata (here a store of its own);
    an image with two labels, under a layer renamed by the user, asks which."""
    import dask.array as da

    path, truth = _store(tmp_path)
    image = omezarr.open_omezarr(path)
    nuclei = omezarr.create_labels(image, "nuclei", np.uint16)
    nuclei.write_block((slice(0, 2),), slice(0, 64), slice(0, 80), np.full(SHAPE, 9, np.uint16))
    nuclei.finish()
    own = omezarr.create_labels(image, "regions", np.uint32, store=tmp_path / "regions.zarr")
    own.write_block((slice(0, 2),), slice(0, 64), slice(0, 80), truth)
    own.finish()
    viewer = make_napari_viewer()
    levels = [da.from_zarr(level) for level in open_labels(own.path, "regions").levels]
    result = viewer.add_labels(levels, multiscale=True, name="regions", scale=own.scales[0],
                               metadata={"omezarr_labels": {"store": str(own.path),
                                                            "name": "regions"}})
    _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Edit stored labels")
    widget.layers.value = result
    assert widget.edit_button.isEnabled() and widget.names.native.isHidden()
    working = widget.edit_region()  # the whole image is in view
    np.testing.assert_array_equal(working.data[0], truth[0])
    working.data[0, 10:12, 20:22] = 5000
    assert widget.write_back()
    assert np.asarray(result.data[1][0, 5, 10]) == 5000  # level 1, read by the layer
    assert not error_messages()

    viewer.open(str(path), plugin="napari-ome-zarr")
    cells, nuclei = (next(layer for layer in viewer.layers if layer.name.endswith(end))
                     for end in ("/cells", "/nuclei"))
    widget.layers.value = cells  # named after its labels: no question
    assert widget.names.native.isHidden() and widget.stored_labels().name == "cells"
    nuclei.name = "my annotation"  # renamed: the store holds two labels, pick one
    widget.layers.value = nuclei
    assert not widget.names.native.isHidden()
    assert set(widget.names.choices) == {"cells", "nuclei"}
    widget.names.value = "nuclei"
    working = widget.edit_region()
    assert working.data.dtype == np.uint16 and set(np.unique(working.data)) == {9}
