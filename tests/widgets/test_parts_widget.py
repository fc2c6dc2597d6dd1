"""The Part discovery dock widget end to end in a real viewer (docked via the manifest).

Tiny stacks and a few training steps keep this quick on a CPU; napari checks that
layers are only changed on the main thread.
"""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages as _errors
from napari.layers import Labels, Points

from napari_unsupseg.core.samples.parts import part_collection
from napari_unsupseg.widgets.parts import EVERY_IMAGE, PartsWidget

pytestmark = pytest.mark.gui

PLUGIN = "napari-unsupseg"


def _run(qtbot, widget, timeout=90_000):
    with qtbot.waitSignal(widget.run_finished, timeout=timeout) as blocker:
        widget.run_button.click()
    assert not widget.is_running
    return blocker.args[0]


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Part discovery")
    assert isinstance(widget, PartsWidget)
    return widget


def test_parts_on_a_stack_give_labels_and_centres(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    images, truth = part_collection(4, 48, 2, seed=0)
    image = viewer.add_image(images, name="critters", rgb=True, scale=(1, 0.5, 0.5))
    saliency = viewer.add_labels((truth > 0).astype(np.uint8), name="objects",
                                 scale=(1, 0.5, 0.5))
    widget = _dock(viewer)
    widget.image_picker.value = image
    assert widget.plane_mode.value == EVERY_IMAGE  # the whole stack by default
    widget.saliency.value = saliency
    widget.form.set_values({"n_parts": 2, "iterations": 40, "working_size": 32,
                            "batch_size": 2, "device": "cpu"})
    assert _run(qtbot, widget) == "done", _errors()
    result = widget.result_layer
    assert isinstance(result, Labels) and result.data.shape == (4, 48, 48)
    # The engine gives uint8; the base widget widens labels so that painting has room.
    assert result.data.dtype.kind == "u" and result.data.max() <= 2
    assert np.allclose(result.scale, (1, 0.5, 0.5))
    meta = result.metadata
    assert meta["engine"] == "parts" and meta["saliency"] == "mask given"
    assert "texture" in meta["features"]
    assert list(result.features["part"]) == ["background", "part 1", "part 2"]
    points = [layer for layer in viewer.layers if isinstance(layer, Points)]
    assert len(points) == 1
    centres = points[0]
    assert centres.data.shape[1] == 3 and 1 <= len(centres.data) <= 8
    assert set(np.unique(centres.data[:, 0])) <= {0, 1, 2, 3}
    assert np.allclose(centres.scale, (1, 0.5, 0.5))
    # Each centre lies on the plane of its image, inside the image.
    assert (centres.data[:, 1:] >= -0.5).all() and (centres.data[:, 1:] <= 47.5).all()
    assert not _errors()


def test_a_single_image_is_refused_in_plain_words(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    images, _ = part_collection(1, 32, 2, seed=0)
    viewer.add_image(images[0], name="one", rgb=True)
    widget = _dock(viewer)
    assert _run(qtbot, widget) == "failed"
    assert any("stack" in message for message in _errors())


def test_missing_weights_file_is_refused(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    images, _ = part_collection(2, 32, 2, seed=0)
    viewer.add_image(images, name="two", rgb=True)
    widget = _dock(viewer)
    widget.weights_file.value = tmp_path / "absent.pth"
    assert _run(qtbot, widget) == "failed"
    assert any("does not exist" in message for message in _errors())


def test_only_whole_stack_modes_are_offered(make_napari_viewer, qtbot):
    """Parts are found across the collection, so a stack offers no 'current plane' run."""
    from napari_unsupseg.widgets._base import CURRENT_PLANE

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    widget = PartsWidget(viewer)
    assert list(widget.plane_mode.choices) == [EVERY_IMAGE]
    assert CURRENT_PLANE not in widget.plane_mode.choices
