"""Volumes, multiscale and lazy (dask) image layers in the engine docks, in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages as _errors
from _gui import open_dock, run_dock

from napari_unsupseg.widgets import _volume
from napari_unsupseg.widgets._base import CURRENT_PLANE
from napari_unsupseg.widgets.predict import VOLUME_OBJECTS
from napari_unsupseg.widgets.preseg import VOLUME

pytestmark = pytest.mark.gui


def _blobs(shape=(8, 48, 48), seed=0):
    """Bright balls on a dark background: objects that cross several planes."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    image = np.zeros(shape, np.float32)
    for _ in range(4):
        centre = [rng.uniform(0, n) for n in shape]
        r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, (3, 8, 8), strict=True))
        image[r2 < 1] = 1.0
    return image + rng.normal(0, 0.05, shape).astype(np.float32)


def test_preseg_segments_a_z_stack_as_one_volume(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_blobs(), name="stack", scale=(2.0, 1.0, 1.0), translate=(5.0, 0, 0))
    widget = open_dock(viewer, "Presegment")
    assert widget.plane_mode.value == CURRENT_PLANE  # the default stays the plane shown
    assert VOLUME in widget.plane_mode.choices
    assert widget.spacing_line.label.native.isHidden()
    widget.plane_mode.value = VOLUME
    assert not widget.spacing_line.label.native.isHidden()
    assert "2, 1, 1" in widget.spacing_line.label.value
    viewer.layers["stack"].scale = (3.0, 1.0, 1.0)
    assert "3, 1, 1" in widget.spacing_line.label.value  # follows the layer's scale
    assert "default" not in widget.spacing_line.label.value
    viewer.layers["stack"].scale = (1.0, 1.0, 1.0)  # napari's default: probably not said
    assert "set its scale first" in widget.spacing_line.label.value
    viewer.layers["stack"].scale = (2.0, 1.0, 1.0)
    for name in ("stack_mode", "spacing_z", "spacing_y", "spacing_x"):
        assert name not in widget.form.widgets  # filled by the dock, not typed
    widget.form.set_values({"method": "slic", "n_segments": 20})
    assert run_dock(qtbot, widget, 60_000) == "done"
    assert not _errors()
    layer = viewer.layers["stack superpixels"]
    assert layer.data.shape == (8, 48, 48)
    np.testing.assert_allclose(layer.scale, (2.0, 1.0, 1.0))
    np.testing.assert_allclose(layer.translate, (5.0, 0.0, 0.0))
    meta = layer.metadata
    assert meta["segmented_as"] == "volume"
    parameters = meta["parameters"]
    assert parameters["stack_mode"] == "volume"
    assert (parameters["spacing_z"], parameters["spacing_y"], parameters["spacing_x"]) == (
        2.0, 1.0, 1.0)
    planes_per_label = [len(np.unique(np.nonzero(layer.data == k)[0]))
                        for k in np.unique(layer.data) if k]
    assert max(planes_per_label) >= 3  # supervoxels span planes


def test_every_plane_mode_still_segments_planes_on_their_own(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_blobs(shape=(3, 32, 32)), name="stack", scale=(2.0, 1.0, 1.0))
    widget = open_dock(viewer, "Presegment")
    widget.plane_mode.value = "every plane (one by one)"
    widget.form.set_values({"method": "slic", "n_segments": 10})
    assert run_dock(qtbot, widget, 60_000) == "done"
    layer = viewer.layers["stack superpixels"]
    assert layer.metadata["segmented_as"] == "planes"
    for k in np.unique(layer.data[layer.data > 0]):
        assert len(np.unique(np.nonzero(layer.data == k)[0])) == 1


def test_volume_needs_a_volume_method_in_plain_words(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_blobs(shape=(3, 32, 32)), name="stack")
    widget = open_dock(viewer, "Presegment")
    widget.plane_mode.value = VOLUME
    widget.form.set_values({"method": "felzenszwalb"})
    assert run_dock(qtbot, widget, 60_000) == "failed"
    assert any("volume mode" in message for message in _errors())
    assert "stack superpixels" not in [layer.name for layer in viewer.layers]


def test_volume_mode_only_for_a_z_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_dock(viewer, "Presegment")
    viewer.add_image(np.zeros((2, 3, 16, 16), np.float32), name="tz")
    widget.image_picker.value = viewer.layers["tz"]
    assert "every plane (one by one)" in widget.plane_mode.choices
    assert VOLUME not in widget.plane_mode.choices  # t and z would be flattened together
    widget.channel_axis.value = 0  # (c, z, y, x): one axis before the plane again
    assert VOLUME in widget.plane_mode.choices


def test_predict_offers_objects_in_3d_with_the_layer_spacing(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack", scale=(3.0, 0.5, 0.5))
    widget = open_dock(viewer, "Model inference")
    assert VOLUME_OBJECTS in widget.plane_mode.choices
    widget.plane_mode.value = VOLUME_OBJECTS
    assert "3, 0.5, 0.5" in widget.spacing_line.label.value
    params = widget._setup().params
    assert params.objects_mode == "volume"
    assert (params.spacing_z, params.spacing_y, params.spacing_x) == (3.0, 0.5, 0.5)
    widget.plane_mode.value = "every plane (one by one)"
    assert widget._setup().params.objects_mode == "planes"
    assert widget.spacing_line.label.native.isHidden()


def test_multiscale_layer_gives_single_scale_labels_at_level_0(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    base = _blobs(shape=(1, 96, 96))[0]
    levels = [base, base[::2, ::2]]
    image = viewer.add_image(levels, name="pyramid", multiscale=True, scale=(0.5, 0.5),
                             translate=(10.0, 20.0))
    assert image.multiscale
    widget = open_dock(viewer, "Presegment")
    widget.form.set_values({"method": "slic", "n_segments": 12})
    assert run_dock(qtbot, widget, 60_000) == "done"
    assert not _errors()
    layer = viewer.layers["pyramid superpixels"]
    assert not layer.multiscale
    assert layer.data.shape == (96, 96)
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    np.testing.assert_allclose(layer.data_to_world((95, 95)), image.data_to_world((95, 95)))


def test_dask_stack_in_volume_mode(make_napari_viewer, qtbot):
    da = pytest.importorskip("dask.array")
    viewer = make_napari_viewer()
    lazy = da.from_array(_blobs(shape=(6, 40, 40), seed=1), chunks=(1, 40, 40))
    viewer.add_image(lazy, name="lazy", scale=(2.0, 1.0, 1.0))
    widget = open_dock(viewer, "Presegment")
    widget.plane_mode.value = VOLUME
    widget.form.set_values({"method": "slic", "n_segments": 10})
    assert run_dock(qtbot, widget, 60_000) == "done"
    layer = viewer.layers["lazy superpixels"]
    assert isinstance(layer.data, np.ndarray) and layer.data.shape == (6, 40, 40)
    assert layer.metadata["parameters"]["spacing_z"] == 2.0


def test_a_huge_lazy_read_is_refused_in_words(make_napari_viewer, qtbot, monkeypatch):
    da = pytest.importorskip("dask.array")
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).random((4, 64, 64), dtype=np.float32)
    viewer.add_image(da.from_array(data, chunks=(1, 64, 64)), name="big")
    widget = open_dock(viewer, "Presegment")
    monkeypatch.setattr(_volume, "LAZY_READ_LIMIT", 3 * 64 * 64 * 4)  # three planes
    widget.plane_mode.value = "every plane (one by one)"
    assert run_dock(qtbot, widget, 60_000) == "failed"
    assert any("command line" in message and "current plane" in message
               for message in _errors())
    widget.plane_mode.value = CURRENT_PLANE  # one plane fits
    assert run_dock(qtbot, widget, 60_000) == "done"
