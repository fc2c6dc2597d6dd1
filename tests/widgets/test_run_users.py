"""Every dock runs through the one runner (tested in test_runner.py): a smoke test each for the
engine widgets, the training widget, "apply to a folder" and reading a checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from _gui import error_messages
from PIL import Image

from napari_unsupseg.core.base.engine import Progress, Result, provenance
from napari_unsupseg.core.base.params import param
from napari_unsupseg.widgets._base import EngineWidget
from napari_unsupseg.widgets._runner import EngineRunner, RunTexts
from napari_unsupseg.widgets.backprop import BackpropWidget
from napari_unsupseg.widgets.predict import PredictWidget
from napari_unsupseg.widgets.train import TrainWidget

pytestmark = pytest.mark.gui


@dataclass
class SlowParams:
    fail: bool = param(False, "Raise at the first step.")


class SlowWidget(EngineWidget):
    """An engine that goes on after a stop is asked for (only a second press ends it)."""

    params_type = SlowParams
    engine_label = "slow"

    def engine(self, image, params, inputs, control):
        for step in range(1, 2000):
            if params.fail:
                raise RuntimeError("boom")
            time.sleep(0.01)
            yield Progress(step, 2000)
        return Result(np.ones(image.shape[:2], np.uint16), provenance("slow", params))


def _press_cancel_twice(qtbot, runner, cancel, signal):
    with qtbot.waitSignal(runner.progressed, timeout=60_000):
        pass
    cancel()
    assert runner.running and runner.stopping
    with qtbot.waitSignal(signal, timeout=30_000) as ended:
        cancel()
    return ended.args


def test_an_engine_widget_is_the_runners_view(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="img")
    widget = SlowWidget(viewer)
    assert widget.runner.view is widget
    widget.run()
    assert not widget.run_button.isEnabled() and not widget.form.basic.enabled
    args = _press_cancel_twice(qtbot, widget.runner, widget.cancel_button.click,
                               widget.run_finished)
    assert args == ["stopped"]  # abandoned: the widget's word for a run that ended early
    assert widget.status.text() == RunTexts().abandoned
    assert widget.run_button.isEnabled() and widget.form.basic.enabled
    widget.form["fail"].value = True
    with qtbot.waitSignal(widget.run_finished, timeout=30_000) as ended:
        widget.run()
    assert ended.args == ["failed"] and error_messages() == ["Segmentation failed: boom"]
    assert widget.run_button.isEnabled()


def test_the_training_widget_abandons_on_a_second_cancel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((48, 48)).astype(np.float32), name="img")
    painted = np.zeros((48, 48), np.uint8)
    painted[:8], painted[-8:] = 1, 2
    viewer.add_labels(painted, name="painted")
    widget = TrainWidget(viewer)
    assert widget.runner.view is widget
    widget.labels_picker.value = viewer.layers["painted"]
    widget.input.image_picker.value = viewer.layers["img"]
    widget.form.set_values({"epochs": 10_000, "steps_per_epoch": 2, "batch_size": 2,
                            "unet_depth": 2, "unet_channels": 4, "threads": 1})
    widget.train()
    assert not widget.train_button.isEnabled() and widget.cancel_button.isEnabled()
    args = _press_cancel_twice(qtbot, widget.runner, widget.cancel, widget.runner.ended)
    assert args == ["abandoned", None]
    assert widget.status.text() == "Abandoned: nothing was kept."
    assert widget.model is None and widget.train_button.isEnabled()
    assert not widget.apply_button.isEnabled() and not error_messages()


def _fake_batch(fail):
    def run_batch(jobs, engine, params, *, workers=2, control=None, **_):
        for step in range(1, 2000):
            if fail:
                raise RuntimeError("no scheduler")
            time.sleep(0.01)
            yield Progress(step, 2000)
        return None

    return run_batch


def test_apply_to_a_folder_is_the_runners_view(make_napari_viewer, qtbot, tmp_path,
                                               monkeypatch):
    import napari_unsupseg.core.batch as batch

    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / "a.png")
    widget = BackpropWidget(make_napari_viewer())
    folder = widget.folder
    assert folder.runner.view is folder and folder.runner.parent() is widget
    folder.source.value, folder.target.value = str(source), str(tmp_path / "out")
    monkeypatch.setattr(batch, "run_batch", _fake_batch(fail=False))
    folder.button.clicked.emit(False)
    assert folder.button.text == "Stop the folder run"
    args = _press_cancel_twice(qtbot, folder.runner, lambda: folder.button.clicked.emit(False),
                               folder.runner.ended)
    assert args == ["abandoned", None]
    assert folder.status.value == "Abandoned: the files already written are kept."
    assert folder.button.text == "Apply to folder"
    monkeypatch.setattr(batch, "run_batch", _fake_batch(fail=True))
    with qtbot.waitSignal(folder.runner.ended, timeout=30_000) as ended:
        folder.start()
    assert ended.args[0] == "failed"
    assert error_messages() == ["The batch failed: no scheduler"]
    assert folder.status.value == "Failed: The batch failed: no scheduler"


def test_a_dock_that_goes_away_disposes_every_runner(make_napari_viewer, qtbot, tmp_path):
    """The prediction dock has three: the run, the checkpoint reader and the folder run."""
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="predict")
    runners = widget.findChildren(EngineRunner)
    assert {widget.runner, widget.reader, widget.folder.runner} == set(runners)
    widget.checkpoint.value = str(tmp_path / "missing.pt")
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: not any(runner.running for runner in runners), timeout=10_000)
    for runner in runners:
        runner.start(lambda control: iter(()), "after")
        assert not runner.running
