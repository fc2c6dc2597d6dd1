"""The base dock widget, driven by a tiny fake engine: fast, no torch.

Covers the parameter form, layer picking, axes and planes, the worker (progress,
throttled previews, cancel), result layers (transform, metadata, edit safety) and
errors as notifications.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from _gui import error_messages as _errors
from _gui import run_dock

from napari_unsupseg.core.base.engine import Progress, Result, provenance
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.base.params import Shown, nested, param, specs
from napari_unsupseg.widgets._base import CURRENT_PLANE, EngineWidget, error_message
from napari_unsupseg.widgets._form import OptionalValue, ParamForm, widget_for

pytestmark = pytest.mark.gui


@dataclass
class FakeParams:
    n_steps: int = param(5, "How many steps.", min=1, max=100_000)
    delay: float = param(0.0, "Seconds per step.", min=0.0)
    threshold: float = param(0.5, "Where to split.", min=0.0, max=1.0)
    fail: str = param("no", "Fail on purpose.", choices=("no", "input", "runtime", "at_start"))
    n_labels: int | None = param(None, "Optional count.", min=1)
    note: str = param("hi", "A text.")
    gain: float = param(1e-3, "A small float.", min=0.0, advanced=True)
    stack_mode: str = param("planes", "Stack mode.", choices=("planes", "joint"))
    seed: int = param(0, "Seed.", min=0)


def fake_engine(image, params, control=None):
    """Labels 1/2 by thresholding channel 0; previews when due; finishes early on request."""
    if params.fail == "at_start":
        raise RuntimeError("device exploded")
    grey = image[..., 0].astype(float)
    grey = (grey - grey.min()) / max(np.ptp(grey), 1e-9)
    labels = np.where(grey > params.threshold, 2, 1).astype(np.uint16)
    done = 0
    for i in range(params.n_steps):
        if control is not None and control.stop_requested:
            break
        done = i + 1
        if params.delay:
            time.sleep(params.delay)
        if params.fail == "input" and i == 1:
            raise InputError("That image cannot be used.")
        if params.fail == "runtime" and i == 1:
            raise RuntimeError("CUDA out of memory")
        due = control is not None and control.preview_due()
        yield Progress(step=i + 1, total=params.n_steps, loss=1.0 / (i + 1), n_labels=2,
                       preview=labels if due else None)
    metadata = provenance("fake", params, seed=params.seed, timings={"total": 0.0},
                          stack_mode=params.stack_mode, image_shape=list(image.shape),
                          stopped_early=done < params.n_steps, steps=done)
    return Result(labels=labels, metadata=metadata)


class FakeWidget(EngineWidget):
    params_type = FakeParams
    engine_label = "fake"
    hidden_params = ("stack_mode",)
    stack_param = "stack_mode"
    stack_modes = {"every plane, jointly": "joint", "every plane, one by one": "planes"}

    def engine(self, image, params, inputs, control):
        return fake_engine(image, params, control)


def _viewer_and_widget(make_napari_viewer, **image_kwargs):
    viewer = make_napari_viewer()
    data = image_kwargs.pop("data", None)
    if data is None:
        data = np.zeros((32, 32), np.float32)
        data[:, 16:] = 1.0
    viewer.add_image(data, name=image_kwargs.pop("name", "img"), **image_kwargs)
    widget = FakeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="fake")
    return viewer, widget


def _no_thread_running(qtbot):
    from qtpy.QtCore import QThreadPool

    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=3000)


# ----------------------------------------------------------------------------- form


def test_form_builds_every_parameter_with_defaults():
    form = ParamForm(FakeParams, hidden=("stack_mode",))
    assert [s.name for s in form.specs] == [
        s.name for s in specs(FakeParams) if s.name != "stack_mode"
    ]
    assert "gain" in [w.name for w in form.advanced]
    assert "n_steps" in [w.name for w in form.basic]
    assert isinstance(form["n_labels"], OptionalValue)
    assert form["n_steps"].tooltip == "How many steps."
    assert form["fail"].choices == ("no", "input", "runtime", "at_start")
    params = form.params(stack_mode="joint")
    assert params == FakeParams(stack_mode="joint")
    form["n_labels"].value = 4
    form["gain"].value = 0.002
    assert form.params().n_labels == 4
    assert form.params().gain == pytest.approx(0.002)
    form.reset()
    assert form.params() == FakeParams()


def test_form_reports_bad_values_in_plain_words():
    form = ParamForm(FakeParams)
    form["note"].value = ""  # a str field may be empty; fine
    form.params()
    spec = next(s for s in specs(FakeParams) if s.name == "threshold")
    widget = widget_for(spec)
    assert (widget.min, widget.max) == (0.0, 1.0)

    @dataclass
    class Strict:
        k: int = param(3, "k", min=2)

    form = ParamForm(Strict)
    form["k"].min = 0  # as if the widget allowed it
    form["k"].value = 1
    with pytest.raises(InputError, match="at least 2"):
        form.params()


@dataclass
class _Inner:
    kind: str = param("x", "Kind.", choices=("x", "y"))
    size: int = param(4, "Size.", min=1)
    hidden: float = param(0.5, "Not shown.", min=0.0)


@dataclass
class _Outer:
    steps: int = param(2, "Steps.", min=1)
    inner: _Inner = nested(
        lambda: _Inner(kind="any", size=8), prefix="inner_",
        shown={"kind": Shown(name="kinds", choices=("any", "x", "y")),
               "size": Shown(label="inner count", aliases=("inner_count",), advanced=True)},
    )


def test_form_shows_a_nested_object_flat_and_builds_it_back():
    """The form and the command line list nested parameters from one flattening: no code
    of their own for the outer engine."""
    form = ParamForm(_Outer)
    assert [w.label for w in form.basic] == ["steps", "kinds"]
    assert [w.label for w in form.advanced] == ["inner count"]
    assert form["kinds"].value == "any" and form["inner_size"].value == 8
    assert form.params() == _Outer()
    form.set_values({"inner_count": 3, "kinds": "y"})  # an alias sets the field too
    assert form.params().inner == _Inner(kind="y", size=3, hidden=0.5)


def test_error_message_words():
    assert error_message(InputError("Plain.")) == "Plain."
    assert error_message(RuntimeError("boom")) == "Segmentation failed: boom"


# ----------------------------------------------------------------------------- pickers


def test_picker_follows_layers(make_napari_viewer):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    picker = widget.image_picker
    assert picker.value.name == "img"
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="labels")
    viewer.add_image(np.zeros((4, 4)), name="second")
    assert picker.combo.choices == ("img", "second")
    assert picker.value.name == "img"  # the choice stays
    viewer.layers["img"].name = "renamed"
    assert "renamed" in picker.combo.choices
    assert picker.value.name == "renamed"  # follows the rename
    viewer.layers.remove("renamed")
    assert picker.combo.choices == ("second",)
    assert picker.value.name == "second"
    viewer.layers.remove("second")
    assert picker.value is None


def test_channel_axis_is_never_guessed(make_napari_viewer):
    viewer, widget = _viewer_and_widget(
        make_napari_viewer, data=np.zeros((2, 16, 16), np.uint16), name="cells"
    )
    assert widget.channel_axis.value is None  # "none" until the user says otherwise
    assert 0 in widget.channel_axis.choices
    assert "Axis 0" in widget.channel_hint.value  # a hint, not a choice made for them
    assert widget.plane_mode.value == CURRENT_PLANE
    widget.channel_axis.value = 0
    assert widget.plane_mode.native.isHidden()  # (2, 16, 16) with channels on 0 is one plane
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    widget.image_picker.value = viewer.layers["photo"]
    assert widget.channel_axis.choices == (-1,)
    assert not widget.channel_axis.enabled


# ----------------------------------------------------------------------------- runs


def test_run_writes_labels_with_transform_and_metadata(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(
        make_napari_viewer, scale=(2.0, 0.5), translate=(10.0, -3.0)
    )
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    layer = viewer.layers["img fake"]
    assert layer is not None and widget.result_layer.name == "img fake"
    assert layer.data.shape == (32, 32)
    assert layer.data.dtype.kind == "u"
    assert not layer.multiscale and layer.editable
    np.testing.assert_allclose(layer.scale, (2.0, 0.5))
    np.testing.assert_allclose(layer.translate, (10.0, -3.0))
    assert set(np.unique(layer.data)) == {1, 2}
    meta = layer.metadata
    assert meta["engine"] == "fake"
    assert meta["parameters"]["n_steps"] == 5
    assert meta["seed"] == 0
    assert "napari_unsupseg_version" in meta and "timings" in meta
    assert meta["napari"]["source_layer"] == "img"
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    assert viewer.layers.selection.active.name == "img fake"


def test_rgb_drops_colour_axis_and_mean_colour(make_napari_viewer, qtbot):
    rgb = np.zeros((24, 20, 3), np.uint8)
    rgb[:, 10:] = (200, 30, 30)
    viewer, widget = _viewer_and_widget(
        make_napari_viewer, data=rgb, name="photo", rgb=True, scale=(3.0, 3.0)
    )
    widget.mean_colour.value = True
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    labels = viewer.layers["photo fake"]
    assert labels.data.shape == (24, 20)
    np.testing.assert_allclose(labels.scale, (3.0, 3.0))
    mean = viewer.layers["photo fake mean colour"]
    assert mean.rgb and mean.data.shape == (24, 20, 3)
    np.testing.assert_allclose(mean.scale, (3.0, 3.0))


def test_stack_current_plane_and_every_plane(make_napari_viewer, qtbot):
    stack = np.zeros((4, 2, 16, 16), np.float32)  # (z, c, y, x)
    stack[:, 0, :, 8:] = 1.0
    viewer, widget = _viewer_and_widget(
        make_napari_viewer, data=stack, name="stack", scale=(5.0, 1.0, 0.5, 0.5),
        translate=(100.0, 0.0, 1.0, 2.0),
    )
    widget.channel_axis.value = 1
    assert not widget.plane_mode.native.isHidden()
    viewer.dims.set_current_step(0, 2)
    widget.plane_mode.value = CURRENT_PLANE
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    plane = viewer.layers["stack fake plane 2"]
    assert plane.data.shape == (16, 16)
    np.testing.assert_allclose(plane.scale, (0.5, 0.5))
    np.testing.assert_allclose(plane.translate, (1.0, 2.0))
    assert plane.metadata["napari"]["plane"] == [2]
    assert plane.metadata["image_shape"] == [16, 16, 2]

    widget.plane_mode.value = "every plane, jointly"
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    joint = viewer.layers["stack fake"]
    assert joint.data.shape == (4, 16, 16)
    np.testing.assert_allclose(joint.scale, (5.0, 0.5, 0.5))
    np.testing.assert_allclose(joint.translate, (100.0, 1.0, 2.0))
    assert joint.metadata["stack_mode"] == "joint"
    assert joint.metadata["image_shape"] == [4, 16, 16, 2]


def test_previews_are_throttled_and_on_the_main_thread(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    widget.form["n_steps"].value = 120
    widget.form["delay"].value = 0.01  # about 80 previews a second from the engine
    writes = []
    viewer.layers.events.inserted.connect(
        lambda e: e.value.events.data.connect(lambda _: writes.append(time.monotonic()))
    )
    start = time.monotonic()
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    elapsed = time.monotonic() - start
    # Previews at most 4 a second (plus the first one and the final result).
    assert len(writes) <= elapsed * 4 + 2
    assert len(writes) >= 2
    gaps = np.diff(writes[:-1])
    assert (gaps >= 0.2).all()


def test_cancel_finishes_the_result_and_leaves_viewer_usable(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    widget.form["n_steps"].value = 100_000
    widget.form["delay"].value = 0.01
    with qtbot.waitSignal(widget.run_finished, timeout=10_000) as blocker:
        widget.run()
        assert not widget.run_button.isEnabled()
        assert widget.cancel_button.isEnabled()
        qtbot.waitUntil(lambda: widget.result_layer is not None, timeout=5000)
        started = time.monotonic()
        widget.cancel_button.click()
    assert time.monotonic() - started < 1.5
    assert blocker.args == ["stopped"]
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    layer = viewer.layers["img fake"]
    assert layer.metadata["stopped_early"] is True
    assert set(np.unique(layer.data)) == {1, 2}
    # No thread left running; the viewer still works.
    _no_thread_running(qtbot)
    viewer.add_points([[1, 1]])
    widget.form["n_steps"].value = 3
    widget.form["delay"].value = 0.0
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    assert viewer.layers["img fake"].metadata.get("stopped_early") is False


# ----------------------------------------------------------------------------- edit safety


def test_untouched_result_is_reused_painted_result_is_kept(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    first = viewer.layers["img fake"]
    # An untouched result is updated in place by a rerun.
    widget.form["threshold"].value = 0.9
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    assert len([layer for layer in viewer.layers if layer.name.startswith("img fake")]) == 1
    assert widget.result_layer.name == "img fake"
    # Paint on it as the brush does (a committed paint step), then rerun.
    first.paint((5, 5), 7, refresh=True)
    painted = np.array(first.data)
    assert (painted == 7).any()
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    np.testing.assert_array_equal(first.data, painted)  # the edit is intact
    assert widget.result_layer.name == "img fake [2]"
    # Undo still works on the painted layer.
    first.undo()
    assert not (np.asarray(first.data) == 7).any()
    # A data replacement by the user also counts as an edit.
    second = viewer.layers["img fake [2]"]
    second.data = np.zeros_like(second.data)
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"
    assert not np.asarray(second.data).any()
    assert widget.result_layer.name == "img fake [3]"


def test_painting_during_a_run_moves_the_run_to_a_new_layer(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    widget.form["n_steps"].value = 60
    widget.form["delay"].value = 0.02
    with qtbot.waitSignal(widget.run_finished, timeout=20_000):
        widget.run()
        qtbot.waitUntil(lambda: widget.result_layer is not None, timeout=5000)
        live = widget.result_layer
        live.paint((3, 3), 9)
        painted = np.array(live.data)
    np.testing.assert_array_equal(live.data, painted)
    assert widget.result_layer.name == "img fake [2]"


def test_a_brush_press_counts_as_an_edit_before_the_stroke_ends(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    run_dock(qtbot, widget, 20_000, press=False)
    layer = widget.result_layer
    layer.mode = "pan_zoom"
    for callback in list(layer.mouse_drag_callbacks):
        callback(layer, None)
    assert not widget.tracker.is_edited(layer)  # panning is not editing
    layer.mode = "paint"
    for callback in list(layer.mouse_drag_callbacks):
        callback(layer, None)
    assert widget.tracker.is_edited(layer)
    run_dock(qtbot, widget, 20_000, press=False)
    assert widget.result_layer.name == "img fake [2]"


def test_new_layer_every_run_option(make_napari_viewer, qtbot):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    widget.new_layer_each_run.value = True
    run_dock(qtbot, widget, 20_000, press=False)
    run_dock(qtbot, widget, 20_000, press=False)
    assert [layer.name for layer in viewer.layers][-2:] == ["img fake", "img fake [2]"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ("input", "That image cannot be used."),
        ("runtime", "Segmentation failed: CUDA out of memory"),
        ("at_start", "Segmentation failed: device exploded"),
    ],
)
def test_engine_errors_become_notifications(make_napari_viewer, qtbot, fail, message):
    viewer, widget = _viewer_and_widget(make_napari_viewer)
    source = np.array(viewer.layers["img"].data)
    widget.form["fail"].value = fail
    assert run_dock(qtbot, widget, 20_000, press=False) == "failed"
    assert _errors() == [message]
    assert widget.status.text() == f"Failed: {message}"
    np.testing.assert_array_equal(viewer.layers["img"].data, source)
    widget.form["fail"].value = "no"
    assert run_dock(qtbot, widget, 20_000, press=False) == "done"  # idle and usable again


def test_nan_image_and_no_image(make_napari_viewer, qtbot):
    data = np.ones((16, 16), np.float32)
    data[3, 3] = np.nan
    viewer, widget = _viewer_and_widget(make_napari_viewer, data=data)
    assert run_dock(qtbot, widget, 20_000, press=False) == "failed"
    assert "NaN" in _errors()[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]
    viewer.layers.clear()
    assert run_dock(qtbot, widget, 20_000, press=False) == "failed"
    assert "Choose an image layer" in _errors()[-1]


def test_other_layers_are_cut_like_the_image(make_napari_viewer):
    # A channel-first stack (z=3, c=2, y, x): other layers (scribbles) may come
    # with or without the channel axis, as napari's "new labels layer" makes them.
    viewer, widget = _viewer_and_widget(
        make_napari_viewer, data=np.zeros((3, 2, 16, 16), np.float32), name="cells"
    )
    widget.channel_axis.value = 1
    widget.plane_mode.value = "every plane, jointly"
    setup = widget._setup()
    assert setup.result_shape == (3, 16, 16)
    assert setup.image().shape == (3, 16, 16, 2)
    hints = np.zeros((3, 16, 16), np.uint8)
    hints[1, 2, 2] = 5
    assert setup.select(hints)[1, 2, 2] == 5
    with_channels = np.zeros((3, 2, 16, 16), np.uint8)
    with_channels[2, 1, 4, 4] = 7
    assert setup.select(with_channels)[2, 4, 4] == 7
    with pytest.raises(InputError, match="must match"):
        setup.select(np.zeros((5, 5), np.uint8), "scribbles layer 's'")
    viewer.dims.set_current_step(0, 1)
    widget.plane_mode.value = CURRENT_PLANE
    setup = widget._setup()
    assert setup.plane == (1,) and setup.result_shape == (16, 16)
    assert setup.image().shape == (16, 16, 2)
    assert setup.select(hints)[2, 2] == 5
    assert setup.select(hints[0]).shape == (16, 16)  # one plane of hints for one plane
