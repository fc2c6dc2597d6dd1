"""OME-Zarr layers in the Presegment and Model inference docks: block by block, labels
written into the store, a multiscale Labels layer that fills as the blocks come."""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages as _errors
from _gui import open_dock, run_dock
from _zarr import smooth_volume, write_store

from napari_unsupseg.widgets import _zarr_run

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def _rgb_store(path):
    """A smooth 3-channel uint8 (c, y, x) image, 192 x 160, two levels."""
    from _models import smooth_rgb

    return write_store(path, np.moveaxis(smooth_rgb((192, 160)), -1, 0), axes="cyx")


def _open(viewer, path):
    layers = viewer.open(str(path), plugin="napari-ome-zarr")
    assert all(layer.multiscale for layer in layers)
    return layers


def _labels_in(path):
    """The label names the store lists, read with ome-zarr's own reader."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Labels, Reader

    nodes = list(Reader(parse_url(str(path)))())
    listed = [node for node in nodes if node.load(Labels)]
    return listed[0].zarr.root_attrs.get("ome", listed[0].zarr.root_attrs)["labels"] \
        if listed else []


def _engine_run(path, engine, params, name, model=None, block=64):
    """The same run through the engine the command line uses, into labels/<name>."""
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.base.omezarr import create_labels, open_omezarr
    from napari_unsupseg.core.predict.blocks import block_geometry, labels_dtype, run_blocks

    image = open_omezarr(path)
    core, margin = block_geometry(engine, params, block)
    margin = None if engine == "preseg" else margin  # the command line's: measured
    target = create_labels(image, name, labels_dtype(engine, model), chunk=core)
    drive(run_blocks(image, engine, params, target, model=model, block=block, margin=margin))
    return np.asarray(target.levels[0][...])


def test_preseg_runs_block_by_block_into_the_store(make_napari_viewer, qtbot, tmp_path):
    path = _rgb_store(tmp_path / "rgb.zarr")
    viewer = make_napari_viewer()
    first = _open(viewer, path)[0]
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = first
    assert not widget.block_size.widget.native.isHidden()
    widget.block_size.widget.value = 64
    widget.form.set_values({"method": "slic", "n_segments": 40})
    line = widget.controls.limits.text()
    assert "block by block" in line and "rgb.zarr" in line, line
    assert "3 channels" in line and "per block" in line, line
    assert run_dock(qtbot, widget, 120_000) == "done", _errors()
    assert not _errors()
    layer = viewer.layers.selection.active
    assert layer.__class__.__name__ == "Labels" and layer.multiscale
    np.testing.assert_allclose(layer.scale, first.scale)
    assert _labels_in(path) == ["preseg"]
    written = np.asarray(layer.data[0][...])
    assert written.shape == (192, 160) and written.min() > 0
    # What napari shows (its thumbnail: the smallest level) has the labels, not the
    # empty arrays the layer was made with.
    assert len(np.unique(layer.thumbnail.reshape(-1, 4), axis=0)) > 1
    assert "labels/preseg" in widget.status.text()
    # The engine the command line runs gives the same labels on the same store.
    params = widget._setup().params
    np.testing.assert_array_equal(_engine_run(path, "preseg", params, "cli"), written)
    # A second run writes beside the first, never over it.
    assert run_dock(qtbot, widget, 120_000) == "done"
    assert "preseg-2" in _labels_in(path) and "preseg" in _labels_in(path)
    from napari_unsupseg.core.base.omezarr import open_omezarr

    again = open_omezarr(path / "labels" / "preseg-2")
    assert len(again.levels) == 2


def test_a_read_only_store_is_refused_before_any_work(make_napari_viewer, qtbot, tmp_path,
                                                     monkeypatch):
    path = _rgb_store(tmp_path / "rgb.zarr")
    viewer = make_napari_viewer()
    _open(viewer, path)
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers[0]
    from napari_unsupseg.core.base import omezarr

    monkeypatch.setattr(omezarr.os, "access", lambda *args: False)
    assert run_dock(qtbot, widget, 120_000) == "failed"
    assert any("read-only" in message for message in _errors()), _errors()
    assert not (path / "labels").exists()
    assert [layer.__class__.__name__ for layer in viewer.layers] == ["Image"] * 3


def test_predict_writes_classes_of_a_z_stack_plane_by_plane(make_napari_viewer, qtbot,
                                                            tmp_path):
    import torch
    from _models import sharp_unet

    from napari_unsupseg.core.models.checkpoints import save_checkpoint
    from napari_unsupseg.core.predict import PredictParams

    loaded = sharp_unet(classes=3, channels=2)
    checkpoint = save_checkpoint(tmp_path / "unet.pt", loaded.model, loaded.config)
    path = write_store(tmp_path / "stack.zarr", smooth_volume((2, 3, 96, 80)))
    viewer = make_napari_viewer()
    layers = _open(viewer, path)
    widget = open_dock(viewer, "Model inference")
    widget.image_picker.value = layers[0]
    widget.plane_mode.value = "every plane (one by one)"
    widget.block_size.widget.value = 48
    widget.checkpoint.value = str(checkpoint)
    widget.form.set_values({"tile_size": 64, "overlap": 8})
    assert "block by block" in widget.controls.limits.text()
    assert run_dock(qtbot, widget, 120_000) == "done", _errors()
    layer = viewer.layers.selection.active
    assert layer.multiscale and layer.data[0].shape == (3, 96, 80)
    np.testing.assert_allclose(layer.scale, layers[0].scale)
    assert _labels_in(path) == ["predict"]
    written = np.asarray(layer.data[0][...])
    assert len(np.unique(written)) > 1
    params = PredictParams(checkpoint=str(checkpoint), tile_size=64, overlap=8)
    with torch.no_grad():
        expected = _engine_run(path, "predict", params, "cli",
                               model=widget.model_for(params, widget.collect_inputs(
                                   widget._setup())), block=48)
    np.testing.assert_array_equal(expected, written)
    assert "class" in layer.features.columns


def test_a_models_objects_are_stitched_into_labels_of_their_own(make_napari_viewer, qtbot,
                                                               tmp_path):
    """A model that separates objects: they go to labels/predict_objects, one label per
    object across block borders, shown as a layer the Edit stored labels dock can open."""
    from dataclasses import replace

    from _models import sharp_unet
    from scipy import ndimage as ndi

    from napari_unsupseg.core.base.stored_labels import labels_behind
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    loaded = sharp_unet(classes=2, channels=2)
    checkpoint = save_checkpoint(tmp_path / "unet.pt", loaded.model,
                                 replace(loaded.config, object_class=1))
    path = write_store(tmp_path / "plane.zarr", smooth_volume((2, 1, 96, 80))[:, 0],
                       axes="cyx")
    viewer = make_napari_viewer()
    layers = _open(viewer, path)
    widget = open_dock(viewer, "Model inference")
    widget.image_picker.value = layers[0]
    widget.block_size.widget.value = 48
    widget.checkpoint.value = str(checkpoint)
    widget.form.set_values({"tile_size": 64, "overlap": 8})
    assert run_dock(qtbot, widget, 120_000) == "done", _errors()
    assert sorted(_labels_in(path)) == ["predict", "predict_objects"]
    objects_layer = next(layer for layer in viewer.layers if "predict_objects" in layer.name)
    stored = labels_behind(objects_layer.metadata, None, objects_layer.name)
    assert [label.name for label in stored] == ["predict_objects"]
    objects = np.asarray(objects_layer.data[0][...])
    classes = np.asarray(next(layer for layer in viewer.layers
                              if layer.name.endswith("(predict)")).data[0][...])
    # Every connected part of the object class is one object or more, never cut by a
    # block border into pieces of different ids that do not touch another object.
    assert ((objects > 0) == (classes == 1)).all()
    parts, n_parts = ndi.label(classes == 1)
    assert len(np.unique(objects[objects > 0])) >= n_parts


def test_a_stopped_run_keeps_its_blocks_and_says_so(make_napari_viewer, qtbot, tmp_path):
    import zarr
    from napari.utils.notifications import notification_manager

    from napari_unsupseg.core.base.omezarr import open_omezarr

    path = _rgb_store(tmp_path / "rgb.zarr")
    viewer = make_napari_viewer()
    _open(viewer, path)
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers[0]
    widget.block_size.widget.value = 32
    with qtbot.waitSignal(widget.run_finished, timeout=60_000) as blocker:
        widget.run_button.click()
        widget.cancel()  # asked before the worker reaches its first blocks
    assert blocker.args[0] == "stopped"
    assert _labels_in(path) == ["preseg"]  # listed: the metadata was written
    labels = open_omezarr(path / "labels" / "preseg")
    provenance = dict(zarr.open_group(str(labels.path), mode="r").attrs)["napari_unsupseg"]
    assert provenance["stopped_early"] and provenance["blocks_done"] < 30
    assert "Stopped after" in widget.status.text()
    assert any("Stopped after" in n.message for n in notification_manager.records)


def test_the_result_layer_shows_blocks_written_after_it_was_added(make_napari_viewer,
                                                                   tmp_path):
    from napari_unsupseg.core.base.omezarr import create_labels, open_omezarr
    from napari_unsupseg.widgets._setup import make_setup

    path = _rgb_store(tmp_path / "rgb.zarr")
    viewer = make_napari_viewer()
    layers = _open(viewer, path)
    setup = make_setup(layers[0], params=None, engine_label="superpixels")
    image = open_omezarr(path)
    plan = _zarr_run.ZarrPlan("preseg", path, image, 64, 64, 0)
    run = _zarr_run.BlockRun(plan, "blocks")
    run.target = create_labels(image, "blocks", np.uint32, chunk=64)
    run.layer = _zarr_run.add_result_layer(viewer, run, setup, "blocks", {})
    assert run.layer.multiscale
    viewer.reset_view()  # the whole image: napari shows (and keeps) the smallest level
    before = np.unique(run.layer.thumbnail.reshape(-1, 4), axis=0)
    run.target.write_block((), slice(0, 192), slice(0, 160), np.full((192, 160), 7, np.uint32))
    _zarr_run.refresh(run, force=True)
    after = np.unique(run.layer.thumbnail.reshape(-1, 4), axis=0)
    assert len(before) == 1 and not np.array_equal(before, after)


def test_an_abandoned_run_says_what_it_left(make_napari_viewer, qtbot, tmp_path,
                                            monkeypatch):
    import time

    from napari_unsupseg.core.predict import blocks

    read = blocks.read_block
    monkeypatch.setattr(blocks, "read_block", lambda *a, **k: (time.sleep(0.05), read(*a, **k))[1])
    path = _rgb_store(tmp_path / "rgb.zarr")
    viewer = make_napari_viewer()
    _open(viewer, path)
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers[0]
    widget.block_size.widget.value = 32
    with qtbot.waitSignal(widget.run_finished, timeout=60_000) as blocker:
        widget.run_button.click()
        qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=30_000)  # blocks coming
        widget.cancel()
        widget.cancel()  # the second press abandons the run
    assert blocker.args[0] == "stopped"  # what the dock's signal calls an abandoned run
    assert _labels_in(path) == []  # not listed: no metadata was written
    assert (path / "labels" / "preseg" / "0").exists()
    assert "without OME metadata" in widget.status.text(), widget.status.text()
