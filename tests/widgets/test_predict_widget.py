"""The Model inference widget end to end in a real viewer: checkpoint chooser, tiled run in
a worker, palette colours and class names on the Labels layer, transform, metadata."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from _gui import error_messages as _errors
from _gui import run_dock
from _models import legacy_torchscript
from scipy import ndimage as ndi

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import load_checkpoint, save_checkpoint
from napari_unsupseg.core.predict import PredictParams, predict, predict_scene
from napari_unsupseg.widgets.predict import PredictWidget

pytestmark = pytest.mark.gui

NAMES = ["background", "cell", "membrane"]
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig("unet", 3, in_channels=3, depth=2, base_channels=8, class_names=NAMES,
                         palette=PALETTE, background=True, mean=[0.5] * 3, std=[0.25] * 3)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return save_checkpoint(tmp_path / "cells.pt", model, config)


def image():
    rng = np.random.default_rng(0)
    data = ndi.gaussian_filter(rng.random((90, 77, 3)), (3, 3, 0))
    return ((data - data.min()) / np.ptp(data) * 255).astype(np.uint8)


def test_widget_predicts_classes_with_palette_and_names(make_napari_viewer, qtbot, checkpoint):
    viewer = make_napari_viewer()
    data = image()
    viewer.add_image(data, name="cells", rgb=True, scale=(0.5, 2.0), translate=(10.0, -3.0))
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="inference")
    assert "checkpoint" not in [w.name for w in widget.form.basic]
    widget.checkpoint.value = str(checkpoint)
    # Read in a worker: the window does not wait for the file.
    qtbot.waitUntil(lambda: not widget.model_info.value.startswith("reading"), timeout=10_000)
    info = widget.model_info.value
    assert "U-Net" in info and "Classes: 3" in info
    widget.form["tile_size"].value = 64
    widget.form["overlap"].value = 16
    widget.form["confidence"].value = True

    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    layer = viewer.layers["cells classes"]
    expected = run_to_end(predict(data, PredictParams(tile_size=64, overlap=16),
                                  model=load_checkpoint(checkpoint)))
    np.testing.assert_array_equal(np.asarray(layer.data), expected.labels)
    assert len(np.unique(layer.data)) >= 2
    np.testing.assert_allclose(layer.scale, (0.5, 2.0))
    np.testing.assert_allclose(layer.translate, (10.0, -3.0))
    assert layer.metadata["engine"] == "predict"
    assert layer.metadata["model"]["architecture"] == "unet"
    assert layer.metadata["parameters"]["checkpoint"] == str(checkpoint)
    # hover text: the class name of the label under the cursor
    assert list(layer.features["class"]) == NAMES
    assert list(layer.features["index"]) == [0, 1, 2]
    label = int(np.asarray(layer.data)[45, 40])
    status = layer.get_status(layer.data_to_world((45, 40)), dims_displayed=[0, 1], world=True)
    assert f"class: {NAMES[label]}" in status["coordinates"]
    # colours follow the palette (label 2 = membrane = blue)
    np.testing.assert_allclose(layer.colormap.map(2)[:3], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(layer.colormap.map(1)[:3], [1, 0, 0], atol=1e-6)
    confidence = viewer.layers["cells classes confidence"]
    assert confidence.data.shape == data.shape[:2]
    assert 0.3 < float(confidence.data.min()) and float(confidence.data.max()) <= 1.0
    np.testing.assert_allclose(confidence.scale, (0.5, 2.0))
    # A rerun replaces its extra layers as it replaces its labels: nothing piles up.
    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    names = [layer.name for layer in viewer.layers]
    assert names.count("cells classes confidence") == 1 and len(names) == 3


def test_widget_refuses_without_a_checkpoint_and_reports_a_bad_one(
        make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(image(), name="cells", rgb=True)
    widget = PredictWidget(viewer)
    assert run_dock(qtbot, widget, 60_000, press=False) == "failed"
    errors = _errors()
    assert any("Choose a checkpoint" in e for e in errors)
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    widget.checkpoint.value = str(bad)
    qtbot.waitUntil(lambda: not widget.model_info.value.startswith("reading"), timeout=10_000)
    assert "could not be recognised" in widget.model_info.value
    assert run_dock(qtbot, widget, 60_000, press=False) == "failed"
    assert "cells classes" not in viewer.layers


def test_cancel_keeps_the_tiles_done_so_far(make_napari_viewer, qtbot, checkpoint, monkeypatch):
    engine = PredictWidget.engine

    def slow_engine(self, image, params, inputs, control):  # 50 ms a tile, as on a slow CPU
        run = engine(self, image, params, inputs, control)
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                return stop.value
            time.sleep(0.05)
            yield event

    monkeypatch.setattr(PredictWidget, "engine", slow_engine)
    viewer = make_napari_viewer()
    data = np.tile(image(), (3, 3, 1))  # 270 x 231: many tiles of 64 px
    viewer.add_image(data, name="big", rgb=True)
    widget = PredictWidget(viewer)
    widget.checkpoint.value = str(checkpoint)
    widget.form["tile_size"].value = 64
    widget.form["overlap"].value = 16
    steps = []

    def stop_early(event):
        steps.append((event.step, event.total))
        if event.total and event.step >= 2 and not widget.runner.stopping:
            widget.cancel()  # once: a second press would abandon the run

    with qtbot.waitSignal(widget.run_finished, timeout=60_000) as blocker:
        widget.run()
        widget.worker.yielded.connect(stop_early)
    assert blocker.args[0] == "stopped"
    step, total = max(steps)
    assert total > 20 and step < total
    layer = widget.result_layer
    assert layer is not None and layer.metadata.get("stopped_early") is True
    assert layer.metadata["engine"] == "predict"  # the engine, not the widget's label
    filled = np.asarray(layer.data) > 0
    assert 0 < filled.mean() < 1  # the first tiles are there, the rest is still empty
    # A finished result: the classes' palette and names, as after a full run.
    assert "class" in layer.features.columns


def test_torchscript_archive_runs_only_when_allowed(make_napari_viewer, qtbot, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig("unet", 2, in_channels=3, depth=2, base_channels=8)
    path = tmp_path / "scripted.pt"
    with legacy_torchscript():
        torch.jit.script(build_model(config).eval()).save(str(path))
    viewer = make_napari_viewer()
    viewer.add_image(image(), name="cells", rgb=True)
    widget = PredictWidget(viewer)
    widget.checkpoint.value = str(path)
    assert not widget.allow_code.value
    assert run_dock(qtbot, widget, 60_000, press=False) == "failed"
    assert any("TorchScript archive" in e for e in _errors())
    assert "cells classes" not in viewer.layers
    widget.allow_code.value = True
    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    assert viewer.layers["cells classes"].data.shape == (90, 77)


def test_a_model_trained_on_painted_labels_is_described_as_painted(
        make_napari_viewer, qtbot, tmp_path):
    from napari_unsupseg.core.train.model import class_names

    # As training saves it: painted 1 = nuclei, 2 = background; 3 was never painted.
    names = class_names("nuclei, background", [1, 2], 4)
    config = ModelConfig("unet", 4, in_channels=2, depth=2, base_channels=8,
                         class_names=names, background=True)
    path = save_checkpoint(tmp_path / "painted.pt", build_model(config), config)
    viewer = make_napari_viewer()
    viewer.add_image(image()[..., :2], name="cells", channel_axis=None)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="inference")
    widget.checkpoint.value = str(path)
    qtbot.waitUntil(lambda: not widget.model_info.value.startswith("reading"), timeout=10_000)
    info = widget.model_info.value
    assert "Classes (as painted): 1 = nuclei, 2 = background" in info
    assert "unlabelled" not in info and "unused" not in info
    assert "class 0 is background" not in info


def test_a_model_that_separates_objects_gives_an_objects_layer(
        make_napari_viewer, qtbot, checkpoint, monkeypatch):
    """The objects (``extras["objects"]``) become a Labels layer beside the classes; a rerun
    replaces an untouched one and keeps one the user edited."""
    import napari_unsupseg.widgets.predict as predict_widget

    def with_objects(image, params, **kwargs):
        result = yield from predict_scene(image, params, **kwargs)
        result.extras["objects"] = ndi.label(np.asarray(result.labels) == 1)[0]
        return result

    monkeypatch.setattr(predict_widget, "predict_scene", with_objects)
    viewer = make_napari_viewer()
    viewer.add_image(image(), name="cells", rgb=True, scale=(0.5, 2.0))
    widget = PredictWidget(viewer)
    widget.checkpoint.value = str(checkpoint)
    assert run_dock(qtbot, widget, 60_000, press=False) == "done", _errors()
    classes, objects = viewer.layers["cells classes"], viewer.layers["cells objects"]
    np.testing.assert_array_equal(objects.data > 0, np.asarray(classes.data) == 1)
    assert objects.data.max() >= 1 and objects.data.dtype.kind == "u"
    np.testing.assert_allclose(objects.scale, (0.5, 2.0))
    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    assert [layer.name for layer in viewer.layers].count("cells objects") == 1
    objects = viewer.layers["cells objects"]
    objects.data_setitem((np.array([0]), np.array([0])), 99)
    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    assert objects.data[0, 0] == 99 and "cells objects [2]" in viewer.layers
