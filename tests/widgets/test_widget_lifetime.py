"""Engine widgets: channels from several layers, previews on demand, nothing kept alive,
and a dock that goes away takes its run with it."""

from __future__ import annotations

import gc
import time
import weakref
from dataclasses import dataclass

import numpy as np
import pytest
from _gui import run_dock

from napari_unsupseg.core.base.engine import Progress, Result, provenance
from napari_unsupseg.core.base.params import param
from napari_unsupseg.widgets._base import EngineWidget
from napari_unsupseg.widgets._setup import make_setup
from napari_unsupseg.widgets.backprop import BackpropWidget

pytestmark = pytest.mark.gui


@dataclass
class CountParams:
    n_steps: int = param(4, "Steps.", min=1, max=100_000)
    delay: float = param(0.0, "Seconds per step.", min=0.0)


class CountingWidget(EngineWidget):
    """Records what its engine saw and how many previews it computed."""

    params_type = CountParams
    engine_label = "count"

    def engine(self, image, params, inputs, control):
        self.seen_shape = image.shape
        self.previews_computed = 0
        labels = (image[..., 0] > image[..., 0].mean()).astype(np.uint16) + 1
        for i in range(params.n_steps):
            if control.stop_requested:
                break
            time.sleep(params.delay)
            preview = None
            if control.preview_due():
                self.previews_computed += 1
                preview = labels
            yield Progress(step=i + 1, total=params.n_steps, preview=preview)
        return Result(labels, provenance("count", params))


def test_sample_cells_open_as_channel_layers_and_a_run_uses_both(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unsupseg", "cells")
    assert [layer.name for layer in viewer.layers][:2] == ["cells nuclei", "cells cytoplasm"]
    widget = CountingWidget(viewer)
    widget.image_picker.value = viewer.layers["cells nuclei"]
    # Layers opened together are ticked as further channels: no setting to change.
    assert widget.channel_layers.value == ["cells cytoplasm"]
    assert not widget.channel_axis.enabled
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    assert widget.seen_shape == (256, 256, 2)
    meta = widget.result_layer.metadata["napari"]
    assert meta["channel_layers"] == ["cells cytoplasm"]


def test_channel_layers_of_the_same_shape_are_offered_and_stacked(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    first = viewer.add_image(rng.random((2, 24, 32)).astype(np.float32), name="dapi")
    second = viewer.add_image(rng.random((2, 24, 32)).astype(np.float32), name="actin")
    viewer.add_image(rng.random((24, 32)).astype(np.float32), name="other shape")
    widget = CountingWidget(viewer)
    widget.image_picker.value = first
    assert [c for c in widget.channel_layers.choices] == ["actin"]
    assert widget.channel_layers.value == []  # not opened together: not ticked
    widget.channel_layers.value = ["actin"]
    widget.plane_mode.value = "every plane"
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    assert widget.seen_shape == (2, 24, 32, 2)
    setup = make_setup(first, params=CountParams(), engine_label="x", channel_layers=[second],
                       plane_mode="every plane")
    image = setup.image()
    np.testing.assert_array_equal(image[..., 1], second.data)


def test_channel_layer_of_another_shape_is_refused_in_words(make_napari_viewer):
    from napari_unsupseg.core.base.errors import InputError

    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    b = viewer.add_image(np.zeros((8, 9)), name="b")
    with pytest.raises(InputError, match="does not have the shape"):
        make_setup(a, params=CountParams(), engine_label="x", channel_layers=[b])


def test_engine_computes_previews_only_when_they_will_be_shown(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((32, 32)), name="img")
    widget = CountingWidget(viewer)
    widget.form["n_steps"].value = 200
    widget.form["delay"].value = 0.005
    started = time.monotonic()
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    seconds = time.monotonic() - started
    # At most one preview per 0.25 s (plus the first): not one per step.
    assert 1 <= widget.previews_computed <= seconds / widget.preview_interval + 2
    assert widget.previews_computed < 20


def test_previews_use_the_smallest_label_type(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((32, 32)), name="img")
    widget = BackpropWidget(viewer)
    widget.form["max_iter"].value = 3
    types = []
    widget.runner.previewed.connect(lambda event: types.append(event.preview.dtype))
    assert run_dock(qtbot, widget, 60_000, press=False) == "done"
    assert types and all(t == np.uint16 for t in types)
    assert widget.result_layer.data.dtype == np.uint16


def test_a_finished_run_keeps_no_image_alive(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    ref = weakref.ref(data)
    viewer.add_image(data, name="big")
    del data
    widget = CountingWidget(viewer)
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    viewer.layers.remove("big")
    qtbot.wait(50)
    gc.collect()
    assert ref() is None


def test_removing_the_dock_abandons_the_run_and_stops_following_the_viewer(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((32, 32)), name="img")
    inserted = viewer.layers.events.inserted
    before = len(inserted.callbacks)
    widget = CountingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="count")
    assert len(inserted.callbacks) > before
    widget.form["n_steps"].value = 10_000
    widget.form["delay"].value = 0.01
    with qtbot.waitSignal(widget.run_finished, timeout=10_000) as blocker:
        widget.run()
        qtbot.waitUntil(lambda: widget.result_layer is not None, timeout=5000)
        viewer.window.remove_dock_widget(widget)
    assert blocker.args == ["stopped"]
    assert len(inserted.callbacks) == before
    n_layers = len(viewer.layers)
    qtbot.wait(300)
    assert len(viewer.layers) == n_layers


@pytest.mark.parametrize("name", ["Unsupervised segmentation", "Train from labels",
                                  "Review labels", "Edit stored labels"])
def test_every_dock_stops_following_the_viewer_when_removed(make_napari_viewer, name):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16)), name="img")
    inserted = viewer.layers.events.inserted
    before = len(inserted.callbacks)
    _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", name)
    assert len(inserted.callbacks) > before
    viewer.window.remove_dock_widget(widget)
    assert len(inserted.callbacks) == before
