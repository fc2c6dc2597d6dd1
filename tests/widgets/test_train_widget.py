"""The Train from labels widget in a real viewer: it trains, previews and plots, Cancel
keeps the best model, Apply writes the painted class values without touching edits,
and the saved model loads."""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages

from napari_unsupseg.core.models.checkpoints import describe_checkpoint, load_checkpoint
from napari_unsupseg.core.samples.synthetic import nuclei
from napari_unsupseg.widgets._layers import same
from napari_unsupseg.widgets.train import TrainWidget

pytestmark = pytest.mark.gui

SMALL = {"epochs": 500, "steps_per_epoch": 4, "batch_size": 4, "unet_depth": 2,
         "unet_channels": 8, "threads": 1, "time_limit": 0.0, "learning_rate": 5e-3}


def _start(viewer, qtbot):
    image, truth = nuclei(64, seed=3)
    viewer.add_image(image[..., 0], name="nuclei", scale=(0.5, 0.5))
    painted = np.where(truth > 0, 5, 3).astype(np.uint8)
    painted[32:] = 0
    viewer.add_labels(painted, name="painted", scale=(0.5, 0.5))
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    widget.preview_interval = 0.2
    widget.labels_picker.value = viewer.layers["painted"]
    widget.input.image_picker.value = viewer.layers["nuclei"]
    widget.form.set_values(SMALL)
    return widget, truth > 0


def test_train_preview_cancel_apply_save(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget, fg = _start(viewer, qtbot)
    assert not widget.apply_button.isEnabled()
    assert widget.plot.isHidden()  # no empty axes before there is a curve
    widget.train()
    assert widget.runner.running
    qtbot.waitUntil(lambda: "nuclei prediction" in viewer.layers, timeout=30_000)
    qtbot.waitUntil(lambda: len(widget.plot.points()["validation"][0]) >= 2, timeout=30_000)
    assert not widget.plot.isHidden()
    assert widget.plot.axes.get_xlabel() == "training step"
    assert widget.plot.axes.get_ylabel().startswith("loss")
    assert len(widget.plot.points()["train"][0]) >= 8
    with qtbot.waitSignal(widget.runner.ended, timeout=30_000) as ended:
        widget.cancel()
    assert ended.args[0] == "stopped"
    assert widget.model is not None and widget.metadata["stopped_early"] is True
    assert widget.metadata["best_epoch"] >= 1
    assert widget.apply_button.isEnabled() and not error_messages()
    preview = viewer.layers["nuclei prediction"]
    assert set(np.unique(preview.data)) <= {3, 5}
    np.testing.assert_allclose(preview.scale, (0.5, 0.5))

    # Apply: the painted class values come back
    widget.apply_picker.value = viewer.layers["nuclei"]
    with qtbot.waitSignal(widget.runner.ended, timeout=30_000) as ended:
        widget.apply()
    assert ended.args[0] == "done"
    applied = widget.writer.layer
    labels = np.asarray(applied.data)
    assert labels.shape == (64, 64) and set(np.unique(labels)) <= {3, 5}
    inter = ((labels == 5) & fg).sum() / ((labels == 5) | fg).sum()
    assert inter > 0.5
    assert list(applied.features["class"])[3] == "class 3"

    # an edited result is never written again
    applied.data_setitem((np.array([0]), np.array([0])), 9)
    before = np.asarray(applied.data).copy()
    with qtbot.waitSignal(widget.runner.ended, timeout=30_000):
        widget.apply()
    np.testing.assert_array_equal(np.asarray(applied.data), before)
    assert widget.writer.layer is not applied

    path = widget.save(tmp_path / "trained.pt")
    assert load_checkpoint(path).config.class_names[5] == "class 5"
    # Described as painted: the two values, not output 0 nor the values between.
    assert "Classes (as painted): 3 = class 3, 5 = class 5\n" in describe_checkpoint(path)


def test_bad_labels_are_a_notification_and_change_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, _ = _start(viewer, qtbot)
    viewer.layers["painted"].data = np.zeros((64, 64), np.uint8)
    layers = [layer.name for layer in viewer.layers]
    with qtbot.waitSignal(widget.runner.ended, timeout=30_000) as ended:
        widget.train()
    assert ended.args[0] == "failed"
    assert any("No pixel is labelled" in m for m in error_messages())
    assert [layer.name for layer in viewer.layers] == layers
    assert widget.model is None


def test_an_image_of_odd_size_trains(make_napari_viewer, qtbot):
    """100 x 90 (no multiple of 32), painted densely: the widget trains (it crashed)."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 255, (100, 90)).astype(np.uint8), name="odd")
    painted = np.ones((100, 90), np.uint8)
    painted[30:60, 30:60] = 2
    viewer.add_labels(painted, name="painted")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    widget.labels_picker.value = viewer.layers["painted"]
    widget.input.image_picker.value = viewer.layers["odd"]
    widget.form.set_values({**SMALL, "epochs": 2})
    with qtbot.waitSignal(widget.runner.ended, timeout=60_000) as ended:
        widget.train()
    assert ended.args[0] == "done", error_messages()
    assert widget.model is not None and not error_messages()
    assert widget.metadata["validation_pixels"] >= 1000


def test_the_labels_you_paint_are_chosen_never_a_hidden_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unsupseg", "cells")  # its ground truth is a hidden layer
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    assert widget.labels_picker.value is None
    assert "No labels layer chosen" in widget.labels_note.value
    shape = viewer.layers["cells nuclei"].data.shape
    painted = viewer.add_labels(np.zeros(shape, np.uint8), name="painted")
    assert same(widget.labels_picker.value, painted)
    assert widget.labels_note.value == "Trains on the labels painted in 'painted'."
    other = viewer.add_labels(np.zeros(shape, np.uint8), name="other")
    assert same(widget.labels_picker.value, other)
    viewer.layers.selection.active = painted  # back to painting the first one
    assert same(widget.labels_picker.value, painted)
    # A layer the plugin wrote (a prediction) is not taken for the user's painting.
    viewer.add_labels(np.zeros(shape, np.uint8), name="cells prediction",
                      metadata={"napari_unsupseg": "training preview"})
    assert same(widget.labels_picker.value, painted)
    # A hidden layer is used only when picked by hand, and the note says it is hidden.
    widget.labels_picker.value = viewer.layers["cells nuclei truth"]
    assert "(a hidden layer)" in widget.labels_note.value
    # Where the user paints: which strokes work.
    assert "along object edges" in widget.strokes_hint.value
    assert widget.strokes_hint.native.wordWrap()


def test_a_dock_opened_after_painting_chooses_the_painted_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unsupseg", "mosaic")
    painted = viewer.add_labels(np.zeros((256, 256), np.uint8), name="my strokes")
    viewer.layers.selection.active = viewer.layers["mosaic"]  # the image is selected
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    assert same(widget.labels_picker.value, painted)
