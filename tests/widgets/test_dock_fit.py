"""Every dock fits a 1280 x 800 screen beside a usable canvas, in a real viewer: long
texts wrap, tall docks scroll, field labels are never cut."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QLabel, QScrollArea

pytestmark = pytest.mark.gui

PLUGIN = "napari-unsupseg"
DOCKS = ("Presegment", "Unsupervised segmentation", "Model inference", "Part discovery",
         "Train from labels", "Review labels", "Edit stored labels")
#: What a dock may ask for on a 1280 x 800 screen (the canvas keeps the rest).
MAX_WIDTH, MAX_HEIGHT = 450, 700


@pytest.fixture
def long_checkpoint(tmp_path):
    """A model whose description is long: two channels, its own mean and std."""
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig("unet", 3, in_channels=2, depth=2, base_channels=8,
                         mean=[0.123, 0.456], std=[0.234, 0.345])
    return save_checkpoint(tmp_path / "nuclei model.pt", build_model(config), config)


def _assert_fits(widget, name):
    hint = widget.sizeHint()
    assert hint.width() <= MAX_WIDTH and hint.height() <= MAX_HEIGHT, (name, hint)
    scroll = widget.findChild(QScrollArea)
    assert scroll is not None, f"{name}: a tall dock must scroll"
    body = scroll.widget()
    # The content fits the dock's width without a horizontal scroll bar.
    assert body.minimumSizeHint().width() <= MAX_WIDTH - 10, (name, body.minimumSizeHint())
    # A dock taller than the screen allows scrolls instead of growing the window.
    assert widget.minimumSizeHint().height() < 400, (name, widget.minimumSizeHint())


def _assert_labels_whole(widget, name):
    """Every field label is as wide as its text in the font it is drawn with."""
    forms = widget.label_forms()
    texts = {w.label for form in forms if form.labels for w in form if w.label}
    labels = [q for q in widget.findChildren(QLabel) if q.text() in texts and not q.wordWrap()]
    assert labels or not texts, name
    for label in labels:
        label.ensurePolished()
        needed = label.fontMetrics().horizontalAdvance(label.text())
        assert label.minimumWidth() >= needed, (name, label.text(), label.minimumWidth(), needed)


def test_every_dock_fits_a_small_screen(make_napari_viewer, qtbot, long_checkpoint):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "cells")
    docked = {}
    for name in DOCKS:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        docked[name] = widget
    qtbot.wait(50)
    for name, widget in docked.items():
        _assert_fits(widget, name)
        _assert_labels_whole(widget, name)

    # A model's description is long: it wraps, the dock does not widen.
    predict = docked["Model inference"]
    predict.checkpoint.value = str(long_checkpoint)
    qtbot.waitUntil(lambda: not predict.model_info.value.startswith("reading"), timeout=20_000)
    assert "std [0.234, 0.345]" in predict.model_info.value
    assert predict.model_info.native.wordWrap()
    qtbot.wait(50)
    _assert_fits(predict, "Model inference with a model")

    # Part discovery's features note names the weights file: it wraps too.
    parts = docked["Part discovery"]
    assert parts.features_note.native.wordWrap()
    _assert_fits(parts, "Part discovery")
