"""The presegmentation and backprop dock widgets in a real viewer, docked via the manifest.

Small images and few iterations keep this quick on a CPU; layers are only
changed on the main thread (NAPARI_ENSURE_PLUGIN_MAIN_THREAD makes napari check).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _gui import error_messages as _errors
from _gui import open_dock, run_dock
from napari.layers import Labels
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QLabel

from napari_unsupseg.core import samples
from napari_unsupseg.widgets._base import CURRENT_PLANE
from napari_unsupseg.widgets.backprop import BackpropWidget
from napari_unsupseg.widgets.preseg import PresegWidget

pytestmark = pytest.mark.gui

PLUGIN = "napari-unsupseg"


def _small_mosaic(viewer, **kwargs):
    image, truth = samples.mosaic(size=64, n_regions=4)
    return viewer.add_image(image, name="mosaic", rgb=True, **kwargs), truth


def _quick(widget, **values):
    """Few iterations on the CPU, for tests."""
    widget.form.set_values({"max_iter": 4, "device": "cpu", **values})


def test_manifest_docks_both_widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    preseg = open_dock(viewer, "Presegment")
    backprop = open_dock(viewer, "Unsupervised segmentation")
    assert isinstance(preseg, PresegWidget)
    assert isinstance(backprop, BackpropWidget)
    # npe2 hands plugins a proxy that refuses layer changes off the main thread.
    assert type(backprop.viewer).__name__ == "PublicOnlyProxy"


def test_manifest_entries_import_the_widget_classes():
    import importlib

    from npe2 import PluginManifest

    from napari_unsupseg.widgets._base import EngineWidget

    manifest = PluginManifest.from_distribution(PLUGIN)
    commands = {c.id: c for c in manifest.contributions.commands}
    widgets = {w.command: w.display_name for w in manifest.contributions.widgets}
    for command, display in [
        ("napari-unsupseg.presegment", "Presegment"),
        ("napari-unsupseg.backprop", "Unsupervised segmentation"),
    ]:
        module, attr = commands[command].python_name.split(":")
        assert issubclass(getattr(importlib.import_module(module), attr), EngineWidget)
        assert widgets[command] == display


def test_manifest_widgets_are_the_registry_engines_review_and_stored_labels():
    from npe2 import PluginManifest

    from napari_unsupseg.core.registry import ENGINES

    manifest = PluginManifest.from_distribution(PLUGIN)
    commands = {c.id: c for c in manifest.contributions.commands}
    docked = {commands[w.command].python_name: w.display_name
              for w in manifest.contributions.widgets}
    expected = {e.widget: e.title for e in ENGINES.values()}
    expected["napari_unsupseg.widgets.review:ReviewWidget"] = "Review labels"
    expected["napari_unsupseg.widgets.stored_labels:StoredLabelsWidget"] = "Edit stored labels"
    assert docked == expected


def test_preseg_on_the_mosaic_sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mosaic")
    widget = open_dock(viewer, "Presegment")
    widget.image_picker.value = viewer.layers["mosaic"]
    widget.form.set_values({"method": "slic", "n_segments": 50})
    widget.mean_colour.value = True
    assert run_dock(qtbot, widget, 60_000) == "done"
    layer = viewer.layers["mosaic superpixels"]
    assert isinstance(layer, Labels)
    assert layer.data.shape == (256, 256) and layer.data.dtype.kind == "u"
    assert 20 <= layer.data.max() <= 100
    assert layer.metadata["engine"] == "preseg"
    assert layer.metadata["parameters"]["n_segments"] == 50
    assert viewer.layers["mosaic superpixels mean colour"].rgb


def test_preseg_every_plane_of_a_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = samples.cells(size=48, n_cells=4)  # (2, 48, 48): channels first
    stack = np.stack([image, image[:, ::-1], image[:, :, ::-1]])  # (z=3, c=2, y, x)
    viewer.add_image(stack, name="cells", scale=(4.0, 1.0, 0.2, 0.2))
    widget = open_dock(viewer, "Presegment")
    widget.channel_axis.value = 1
    widget.plane_mode.value = "every plane (one by one)"
    widget.form.set_values({"method": "felzenszwalb", "min_size": 10})
    assert run_dock(qtbot, widget, 60_000) == "done"
    layer = viewer.layers["cells superpixels"]
    assert layer.data.shape == (3, 48, 48)
    np.testing.assert_allclose(layer.scale, (4.0, 0.2, 0.2))
    assert layer.metadata["n_planes"] == 3
    assert layer.metadata["napari"]["channel_axis"] == 1


def test_backprop_runs_live_and_writes_an_editable_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _small_mosaic(viewer, scale=(0.5, 0.5), translate=(3.0, 4.0))
    widget = open_dock(viewer, "Unsupervised segmentation")
    _quick(widget, seed=3)
    previews = []
    viewer.layers.events.inserted.connect(
        lambda e: previews.append(e.value.metadata.get("status", "final"))
    )
    assert run_dock(qtbot, widget, 60_000) == "done"
    assert previews and previews[0].startswith("live preview")
    layer = viewer.layers["mosaic backprop"]
    assert layer.data.shape == (64, 64) and layer.data.dtype.kind == "u"
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    np.testing.assert_allclose(layer.translate, (3.0, 4.0))
    meta = layer.metadata
    assert meta["engine"] == "backprop" and meta["seed"] == 3
    assert meta["parameters"]["max_iter"] == 4
    assert "napari_unsupseg_version" in meta and "total" in meta["timings"]
    assert 2 <= len(np.unique(layer.data)) <= 32
    # The result is editable: brush, fill, undo.
    before = np.array(layer.data)
    layer.paint((10, 10), 99)
    layer.fill((40, 40), 98)
    assert (layer.data == 99).any() and (layer.data == 98).any()
    layer.undo()
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    # ... and a rerun leaves the edited layer alone.
    layer.paint((10, 10), 99)
    edited = np.array(layer.data)
    assert run_dock(qtbot, widget, 60_000) == "done"
    np.testing.assert_array_equal(viewer.layers["mosaic backprop"].data, edited)
    assert widget.result_layer.name == "mosaic backprop [2]"


def test_backprop_cancel_mid_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _small_mosaic(viewer)
    widget = open_dock(viewer, "Unsupervised segmentation")
    _quick(widget, max_iter=5000, patience=0, min_labels=1)
    with qtbot.waitSignal(widget.run_finished, timeout=60_000) as blocker:
        widget.run_button.click()
        qtbot.waitUntil(lambda: widget.result_layer is not None, timeout=60_000)
        widget.cancel_button.click()
        started = time.monotonic()
    assert blocker.args == ["stopped"]
    assert time.monotonic() - started < 5.0  # one iteration at most (a loaded CI machine)
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=5000)
    layer = viewer.layers["mosaic backprop"]
    assert layer.metadata["stopped_early"] is True
    assert layer.data.shape == (64, 64)
    assert widget.run_button.isEnabled()
    viewer.add_image(np.zeros((8, 8)), name="still usable")


def test_scribbles_separate_two_classes(make_napari_viewer, qtbot):
    # Two halves of nearly the same grey: without hints the segmenter splits them
    # into several noisy labels; scribbles of two classes make them two segments.
    rng = np.random.default_rng(0)
    image = np.full((48, 48, 3), 0.5, np.float32)
    image[:, 24:] += 0.03
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="halves", rgb=True)
    widget = open_dock(viewer, "Unsupervised segmentation")
    _quick(widget, max_iter=8)
    assert widget.scribbles.value is None  # none by default
    scribbles = widget.add_scribbles_layer()
    assert scribbles.data.shape == (48, 48) and scribbles.mode == "paint"
    assert widget.scribbles.value.name == "halves scribbles"
    scribbles.data_setitem(np.nonzero(_box(20, 28, 4, 12)), 1)
    scribbles.data_setitem(np.nonzero(_box(20, 28, 36, 44)), 2)
    assert run_dock(qtbot, widget, 60_000) == "done"
    labels = np.asarray(viewer.layers["halves backprop"].data)
    left, right = labels[:, :24], labels[:, 24:]
    assert np.bincount(left.ravel()).argmax() == 1
    assert np.bincount(right.ravel()).argmax() == 2
    assert (left == 1).mean() > 0.75 and (right == 2).mean() > 0.75
    # The scribbles themselves are untouched.
    assert set(np.unique(scribbles.data)) == {0, 1, 2}


def test_backprop_adds_the_bright_objects_as_their_own_layer(make_napari_viewer, qtbot):
    image = np.full((48, 64), 0.1, np.float32)
    image[6:16, 6:16] = image[26:40, 30:44] = 0.9
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    widget = open_dock(viewer, "Unsupervised segmentation")
    widget.form.set_values({"bright_objects": True, "seed": 0})
    assert run_dock(qtbot, widget, 60_000) == "done"
    objects = viewer.layers["nuclei objects"]
    assert objects.data.shape == (48, 64) and objects.data.max() == 2
    assert objects.metadata["objects"]["count"] == 2
    assert "nuclei backprop" in viewer.layers  # the labels stay beside them


def _box(y0, y1, x0, x1, shape=(48, 48)):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_absent_device_is_a_plain_notification(make_napari_viewer, qtbot):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    viewer = make_napari_viewer()
    _small_mosaic(viewer)
    widget = open_dock(viewer, "Unsupervised segmentation")
    _quick(widget, device="cuda")
    assert run_dock(qtbot, widget, 60_000) == "failed"
    (message,) = _errors()
    assert "CUDA" in message and "Traceback" not in message
    assert [layer.name for layer in viewer.layers] == ["mosaic"]
    _quick(widget)  # back to the CPU: works again
    assert run_dock(qtbot, widget, 60_000) == "done"


def test_wrong_layer_and_nan_are_plain_notifications(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((16, 16), np.uint8), name="only labels")
    widget = open_dock(viewer, "Unsupervised segmentation")
    assert widget.image_picker.value is None  # a Labels layer is not offered
    assert run_dock(qtbot, widget, 60_000) == "failed"
    assert "Choose an image layer" in _errors()[-1]
    nan = np.ones((16, 16), np.float32)
    nan[2, 2] = np.nan
    viewer.add_image(nan, name="nan")
    assert widget.image_picker.value.name == "nan"
    assert run_dock(qtbot, widget, 60_000) == "failed"
    assert "NaN" in _errors()[-1]
    assert [layer.name for layer in viewer.layers] == ["only labels", "nan"]


def test_current_plane_of_a_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = samples.mosaic(size=32, n_regions=3)
    stack = np.stack([image, image[::-1], image[:, ::-1]])  # (3, 32, 32, 3) RGB
    viewer.add_image(stack, name="movie", rgb=True, scale=(7.0, 1.0, 1.0))
    widget = open_dock(viewer, "Unsupervised segmentation")
    viewer.dims.set_current_step(0, 1)
    assert widget.plane_mode.value == CURRENT_PLANE
    _quick(widget, max_iter=2)
    assert run_dock(qtbot, widget, 60_000) == "done"
    layer = viewer.layers["movie backprop plane 1"]
    assert layer.data.shape == (32, 32)
    np.testing.assert_allclose(layer.scale, (1.0, 1.0))


@pytest.mark.parametrize("name", ["preseg", "backprop", "predict", "parts", "train"])
def test_every_engine_parameter_is_a_form_field(qtbot, name):
    """The docks' forms and the command line are built from one dataclass per engine: every
    parameter of every engine in the registry is a field of its form, with its default."""
    from napari_unsupseg.core.base.params import specs
    from napari_unsupseg.core.registry import ENGINES
    from napari_unsupseg.widgets._form import ParamForm

    engine = ENGINES[name]
    form = ParamForm(engine.params)
    assert set(form.widgets) == {s.name for s in specs(engine.params)}
    assert form.params() == engine.params()  # the defaults come back unchanged


def test_forms_read_in_words(make_napari_viewer):
    """No field of any dock is labelled with a code name ("w con", "n conv", "lr")."""
    viewer = make_napari_viewer()
    code_words = {"w", "n", "con", "conv", "iter", "lr", "tol", "mb", "dist"}
    for name in ("Presegment", "Unsupervised segmentation", "Model inference",
                 "Part discovery", "Train from labels"):
        widget = open_dock(viewer, name)
        for field in widget.form.widgets.values():
            assert not code_words & set(field.label.split()), (name, field.label)
    backprop = open_dock(viewer, "Unsupervised segmentation")
    assert backprop.form["w_con"].label == "continuity weight"
    assert backprop.form["w_scribble"].label == "scribble weight"
    shown = {label.text() for label in backprop.findChildren(QLabel)}
    assert {"continuity weight", "scribble weight", "max iterations"} <= shown


def test_presegment_shows_only_the_chosen_methods_settings(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_dock(viewer, "Presegment")
    form = widget.form

    def shown(name):
        return not form[name].native.isHidden()

    form["method"].value = "slic"
    assert shown("n_segments") and shown("compactness") and shown("sigma")
    assert not any(shown(n) for n in ("scale", "min_size", "kernel_size", "n_regions"))
    assert shown("norm_low")  # shared by every method
    form["method"].value = "felzenszwalb"
    assert shown("scale") and shown("min_size") and not shown("n_segments")
    form["method"].value = "quickshift"
    assert shown("kernel_size") and shown("max_dist") and not shown("scale")
    # Hidden settings keep their values: a run reads the whole form.
    assert widget.form.params().n_segments == 1000
    # The segmenter's superpixel settings follow its superpixel method the same way.
    backprop = open_dock(viewer, "Unsupervised segmentation").form
    backprop["superpixels"].value = "slic"
    assert not backprop["superpixel_n_segments"].native.isHidden()
    assert backprop["superpixel_scale"].native.isHidden()
    backprop["superpixels"].value = "none"
    assert backprop["superpixel_n_segments"].native.isHidden()
    assert not backprop["min_size"].native.isHidden()  # the segmenter's own, not a method's
    backprop["superpixels"].value = "auto"  # depends on the network: every one is shown
    assert not backprop["superpixel_scale"].native.isHidden()


def test_backprop_progress_says_which_restart_and_ends_full(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _small_mosaic(viewer)
    widget = open_dock(viewer, "Unsupervised segmentation")
    _quick(widget, max_iter=6, restarts=3, min_labels=1, patience=0)
    seen = []  # (status line, bar value, bar maximum) after each event

    def record(event):
        words = widget.restart_progress.describe(event, widget.runner.elapsed)
        seen.append((words, widget.progress_bar.value(), widget.progress_bar.maximum()))

    widget.runner.progressed.connect(record)
    assert run_dock(qtbot, widget, 60_000) == "done"
    lines = [words for words, _, _ in seen if words]
    assert lines[0].startswith("restart 1 of 3 · iteration 1 (at most 6)")
    assert any(line.startswith("restart 3 of 3 · iteration 6 (at most 6)") for line in lines)
    assert all(("s left" in line) or line.endswith("finishing") for line in lines)
    assert "step " not in " ".join(lines)
    # The bar never goes back, and a finished run shows a full bar.
    values = [value for _, value, _ in seen]
    assert values == sorted(values)
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    assert widget.status.text().startswith("Done: ")


def test_the_final_message_stays_after_a_quick_run(make_napari_viewer, qtbot):
    """Events still queued when a quick run ends never write over its final message."""
    viewer = make_napari_viewer(show=True)
    _small_mosaic(viewer)
    widget = open_dock(viewer, "Presegment")
    widget.form.set_values({"method": "slic", "n_segments": 30})
    worker = []
    widget.runner.progressed.connect(lambda _e: worker.append(widget.runner.worker))
    assert run_dock(qtbot, widget, 60_000) == "done"
    final = widget.status.text()
    assert final.startswith("Done: ") and "in layer 'mosaic superpixels'" in final
    # A late event of the ended run, as a busy window may deliver it.
    from napari_unsupseg.core.base.engine import Progress

    worker[-1].yielded.emit(Progress(1, 1, message="plane 1/1"))
    qtbot.wait(300)
    assert widget.status.text() == final
