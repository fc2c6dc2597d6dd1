"""The limits line under Run (device and estimated peak memory), a Run refused when it
will not fit, and the time left in the status line. (That docking the widgets does not
import torch, this line included, is tests/test_no_torch_import.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from _gui import error_messages, open_dock

from napari_unsupseg.core.base import limits
from napari_unsupseg.core.base.engine import Progress
from napari_unsupseg.widgets._controls import RunControls

pytestmark = pytest.mark.gui


def _mib(line: str) -> float:
    """The estimate of a limits line, in MiB."""
    value, unit = line.split("; about ")[1].split(" of ")[0].split()
    return float(value) * (1024 if unit == "GiB" else 1)


def test_line_follows_the_layer_and_the_settings(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((128, 128, 3)), name="small", rgb=True)
    viewer.add_image(rng.random((1024, 1024, 3)), name="large", rgb=True)
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers["small"]
    line = widget.controls.limits.text()
    assert line.startswith("preseg on CPU, ") and "available" in line
    small = _mib(line)
    widget.image_picker.value = viewer.layers["large"]
    large = _mib(widget.controls.limits.text())
    assert large > small
    widget.form.set_values({"method": "quickshift"})  # a method with more working arrays
    assert _mib(widget.controls.limits.text()) > large


def test_run_refused_with_a_notification_when_it_will_not_fit(make_napari_viewer, qtbot,
                                                             monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((256, 256)), name="field")
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers["field"]
    monkeypatch.setattr(limits, "host_available_bytes", lambda: 4 * 2**20)
    widget.form.set_values({"n_segments": 50})  # any change recomputes the line
    assert widget.controls.limits.text().endswith(": will not fit")
    with qtbot.waitSignal(widget.run_finished, timeout=10_000) as blocker:
        widget.run_button.click()
    assert blocker.args[0] == "failed"
    message = error_messages()[-1]
    assert message.startswith("This preseg run would need about ") and message.count(". ") == 0
    assert widget.result_layer is None and [layer.name for layer in viewer.layers] == ["field"]


def test_backprop_line_says_it_moves_to_crops(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2048, 2048, 3), np.uint8), name="big", rgb=True)
    widget = open_dock(viewer, "Unsupervised segmentation")
    widget.image_picker.value = viewer.layers["big"]
    monkeypatch.setattr(limits, "host_available_bytes", lambda: 2 * limits.GIB)
    widget.form.set_values({"train_pixels": None})  # whole-image training: 14 GB here
    assert "training on crops" in widget.controls.limits.text()


def test_status_gives_the_time_left(qtbot, monkeypatch):
    controls = RunControls()
    qtbot.addWidget(controls)
    controls.show_progress(Progress(step=10, total=40, message="iteration 10"), elapsed=5.0)
    assert controls.status.text().endswith("iteration 10 · about 15 s left")
    controls.show_progress(Progress(step=40, total=40), text="done", elapsed=20.0)
    assert controls.status.text() == "done"


def test_predict_line_reads_the_chosen_model(make_napari_viewer, qtbot, tmp_path):
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig("unet", 2, in_channels=3, depth=2, base_channels=8)
    path = save_checkpoint(tmp_path / "small.pt", build_model(config), config)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((512, 512, 3), np.uint8), name="field", rgb=True)
    widget = open_dock(viewer, "Model inference")
    widget.image_picker.value = viewer.layers["field"]
    unknown = _mib(widget.controls.limits.text())  # no model yet: a large network assumed
    widget.checkpoint.value = path
    # The model's description is read in a worker: let it end with the test.
    qtbot.waitUntil(lambda: not widget.model_info.value.startswith("reading"), timeout=10_000)
    assert widget.controls.limits.text().startswith("predict on CPU, ")
    assert _mib(widget.controls.limits.text()) < unknown
