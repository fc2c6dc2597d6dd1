"""The Part discovery dock widget end to end in a real viewer (docked via the manifest).

Tiny stacks and a few training steps keep this quick on a CPU; napari checks that
layers are only changed on the main thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _gui import PLUGIN, open_dock, run_dock
from _gui import error_messages as _errors
from napari.layers import Labels, Points

from napari_unsupseg.core.samples.parts import part_collection
from napari_unsupseg.widgets.parts import EVERY_IMAGE, PartsWidget

pytestmark = pytest.mark.gui


def _dock(viewer):
    widget = open_dock(viewer, "Part discovery")
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
    assert run_dock(qtbot, widget, 90_000) == "done", _errors()
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
    assert run_dock(qtbot, widget, 90_000) == "failed"
    assert any("stack" in message for message in _errors())


def test_missing_weights_file_is_refused(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    images, _ = part_collection(2, 32, 2, seed=0)
    viewer.add_image(images, name="two", rgb=True)
    widget = _dock(viewer)
    widget.weights_file.value = tmp_path / "absent.pth"
    assert run_dock(qtbot, widget, 90_000) == "failed"
    assert any("does not exist" in message for message in _errors())


def test_only_whole_stack_modes_are_offered(make_napari_viewer, qtbot):
    """Parts are found across the collection, so a stack offers no 'current plane' run."""
    from napari_unsupseg.widgets._base import CURRENT_PLANE

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    widget = PartsWidget(viewer)
    assert list(widget.plane_mode.choices) == [EVERY_IMAGE]
    assert CURRENT_PLANE not in widget.plane_mode.choices


def test_the_parts_sample_opens_and_runs_in_the_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "critters")  # File > Open Sample > Unsupervised Segmentation
    image, truth = viewer.layers["critters"], viewer.layers["critters parts truth"]
    assert image.rgb and image.data.shape == (8, 128, 128, 3)
    assert isinstance(truth, Labels) and not truth.visible
    assert set(np.unique(truth.data)) == {0, 1, 2, 3, 4}  # background and 4 parts
    expected, _ = part_collection(n_images=8, size=128, n_parts=4, seed=0)
    assert np.array_equal(image.data, expected)  # the documented synthetic collection
    widget = _dock(viewer)
    widget.image_picker.value = image
    assert widget.plane_mode.value == EVERY_IMAGE
    widget.saliency.value = truth  # non-zero = object
    widget.form.set_values({"n_parts": 4, "iterations": 10, "working_size": 32,
                            "batch_size": 2, "device": "cpu"})
    assert run_dock(qtbot, widget, 90_000) == "done", _errors()
    assert widget.result_layer.data.shape == (8, 128, 128)
    assert 0 < widget.result_layer.data.max() <= 4


def test_no_sample_key_is_also_a_command_id():
    # napari registers each sample as the command "<plugin>.<key>": a key equal to a
    # command's name (a sample called "parts" beside the widget napari-unsupseg.parts)
    # stops every widget of the plugin from registering.
    import yaml

    from napari_unsupseg import _samples

    manifest = yaml.safe_load((Path(_samples.__file__).parent / "napari.yaml").read_text())
    commands = {c["id"] for c in manifest["contributions"]["commands"]}
    keys = {f"{PLUGIN}.{s['key']}" for s in manifest["contributions"]["sample_data"]}
    assert not keys & commands
