"""The "Review labels" widget in a real viewer: table, navigation, undoable actions, comparison."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _gui import error_messages
from _labels import damaged, grid_mask
from skimage.measure import regionprops_table

from napari_unsupseg.widgets._layers import same
from napari_unsupseg.widgets.review import ReviewWidget

pytestmark = pytest.mark.gui

PLUGIN = "napari-unsupseg"


@pytest.fixture
def review(make_napari_viewer):
    """A viewer with the grid mask and an intensity image, and the docked widget."""
    viewer = make_napari_viewer()
    labels = grid_mask()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random(labels.shape).astype(np.float32), name="intensity")
    layer = viewer.add_labels(labels.copy(), name="cells")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review labels")
    assert isinstance(widget, ReviewWidget)
    return viewer, layer, widget


def _select(widget, labels):
    widget.model.set_selection(labels)


def test_table_matches_regionprops_and_is_in_features(review):
    viewer, layer, widget = review
    widget.images.value = ["intensity"]
    table = widget.model.table
    expected = regionprops_table(layer.data, viewer.layers["intensity"].data,
                                 properties=("label", "area", "centroid", "bbox",
                                             "intensity_mean"))
    np.testing.assert_array_equal(table["label"], expected["label"])
    np.testing.assert_array_equal(table["area"], expected["area"])
    for key in ("centroid-0", "centroid-1", "bbox-0", "bbox-3"):
        np.testing.assert_allclose(table[key], expected[key])
    np.testing.assert_allclose(table["mean_intensity-intensity"], expected["intensity_mean"],
                               rtol=1e-6)
    features = layer.features
    assert features["index"].tolist() == list(range(1, 21))
    assert set(features["status"]) == {"unreviewed"}
    assert widget.table.columns.rowCount() == 20


def test_next_object_centres_the_camera_on_its_centroid(review):
    viewer, layer, widget = review
    widget.model.set_sort("area")
    camera = viewer.scene.camera
    zoom_before = camera.zoom
    widget.navigator.next_button.click()
    first = widget.model.current
    assert first == 1 and layer.selected_label == 1 and layer.show_selected_label
    row = int(np.flatnonzero(widget.model.table["label"] == first)[0])
    centroid = [widget.model.table[f"centroid-{a}"][row] for a in (0, 1)]
    np.testing.assert_allclose(camera.center[-2:], centroid)
    assert camera.zoom > zoom_before
    widget.navigator.next_button.click()
    assert widget.model.current == 2
    widget.navigator.previous_button.click()
    assert widget.model.current == 1
    # A click in the table goes to that row's object.
    widget.table._clicked(widget.table.columns.index(6, 0))
    assert widget.model.current == 7 and layer.selected_label == 7


def test_stack_navigation_moves_to_the_plane(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = np.zeros((5, 30, 30), np.uint16)
    stack[3, 10:20, 5:15] = 4
    stack[1, 2:6, 2:6] = 9
    layer = viewer.add_labels(stack, name="stack", scale=(2.0, 1.0, 1.0))
    widget = ReviewWidget(viewer)
    widget.navigator.go(1)
    assert widget.model.current == 4
    assert viewer.dims.current_step[0] == 3
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (14.5, 9.5))
    assert widget.model.table["volume"].tolist() == [200.0, 32.0]
    widget.navigator.go(1)
    assert viewer.dims.current_step[0] == 1 and layer.selected_label == 9
    widget.close()


def test_review_keys_mark_statuses_and_are_removed_on_close(review):
    _, layer, widget = review
    keymap = {str(k) for k in layer.keymap}
    assert {"N", "Shift+N", "A", "R", "T"} <= keymap
    widget.navigator.go(1)
    layer.keymap[next(k for k in layer.keymap if str(k) == "A")](layer)
    assert widget.model.table["status"][0] == "accepted" and widget.model.current == 2
    widget.navigator.mark("rejected", advance=False)
    assert layer.features["status"][1] == "rejected"
    widget.close()
    assert not {"N", "A", "R", "T"} & {str(k) for k in layer.keymap}
    widget.close()  # a second close is harmless


def test_closing_the_dock_removes_keys_and_mouse_modes(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(grid_mask(), name="cells")
    viewer.add_labels(grid_mask(), name="superpixels")
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review labels")
    widget.review_layer(layer)
    widget.actions.superpixels.value = viewer.layers["superpixels"]
    widget.actions.buttons["paint"].click()
    assert widget.actions._on_mouse in layer.mouse_drag_callbacks
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    assert not {"N", "A", "R", "T"} & {str(k) for k in layer.keymap}
    assert widget.actions._on_mouse not in layer.mouse_drag_callbacks and layer.mouse_pan


def _undo_restores(layer, before):
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_merge_is_one_undo_step(review):
    _, layer, widget = review
    before = layer.data.copy()
    _select(widget, [2, 3, 8])
    widget.actions.buttons["merge"].click()
    assert (layer.data[np.isin(before, [2, 3, 8])] == 2).all()
    np.testing.assert_array_equal(layer.data[~np.isin(before, [2, 3, 8])],
                                  before[~np.isin(before, [2, 3, 8])])
    assert 3 not in widget.model.table["label"] and widget.model.table["label"].size == 18
    _undo_restores(layer, before)


def test_delete_and_remove_small_are_one_undo_step_each(review):
    _, layer, widget = review
    before = layer.data.copy()
    _select(widget, [1, 5, 20])
    widget.actions.buttons["delete"].click()
    assert not np.isin(layer.data, [1, 5, 20]).any() and (layer.data == 2).sum() == 100
    _undo_restores(layer, before)
    layer.data_setitem((np.array([0, 0]), np.array([0, 1])), 30)  # a 2-pixel object
    with_small = layer.data.copy()
    widget.actions.min_size.value = 5
    widget.actions.buttons["small"].click()
    assert not (layer.data == 30).any() and (layer.data > 0).sum() == 2000
    _undo_restores(layer, with_small)


def test_split_along_superpixels_is_one_undo_step(review):
    viewer, layer, widget = review
    superpixels = np.zeros(layer.data.shape, np.uint16)
    superpixels[:, :11] = 1
    superpixels[:, 11:] = 2
    viewer.add_labels(superpixels, name="superpixels")
    widget.review_layer(layer)
    widget.actions.superpixels.value = viewer.layers["superpixels"]
    before = layer.data.copy()
    widget.model.set_current(1)
    widget.actions.buttons["split"].click()
    assert (layer.data == 1).sum() == 70 and (layer.data == 21).sum() == 30
    assert 21 in widget.model.table["label"]
    _undo_restores(layer, before)


def test_split_at_two_clicks(review, qtbot):
    _, layer, widget = review
    before = layer.data.copy()
    widget.actions.buttons["seeds"].click()
    assert widget.actions.mode == "seeds" and layer.mode == "pan_zoom"
    for position in ((6, 6), (12, 12)):  # two corners of object 1
        gen = widget.actions._on_mouse(layer, SimpleNamespace(type="mouse_press",
                                                              position=position))
        with pytest.raises(StopIteration):
            next(gen)
    qtbot.waitUntil(lambda: widget.actions.mode is None, timeout=2000)
    assert not widget.actions.buttons["seeds"].isChecked()
    assert widget.actions._on_mouse not in layer.mouse_drag_callbacks
    assert (layer.data == 1).sum() + (layer.data == 21).sum() == 100
    assert 0 < (layer.data == 21).sum() < 100
    _undo_restores(layer, before)


def test_superpixel_painting_is_one_undo_step_per_drag(review):
    viewer, layer, widget = review
    superpixels = (np.arange(layer.data.shape[1])[None, :] // 8 + 1).repeat(
        layer.data.shape[0], 0).astype(np.uint16)
    viewer.add_labels(superpixels, name="superpixels")
    widget.review_layer(layer)
    widget.actions.superpixels.value = viewer.layers["superpixels"]
    widget.actions.buttons["paint"].click()
    assert widget.actions.mode == "paint" and not layer.mouse_pan
    assert widget.actions._on_mouse in layer.mouse_drag_callbacks
    layer.selected_label = 50
    before = layer.data.copy()
    event = SimpleNamespace(type="mouse_press", position=(30.0, 3.0))
    drag = widget.actions._on_mouse(layer, event)
    next(drag)
    event.type, event.position = "mouse_move", (40.0, 20.0)
    next(drag)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(drag)
    painted = np.isin(superpixels, [1, 3])
    assert (layer.data[painted] == 50).all()
    np.testing.assert_array_equal(layer.data[~painted], before[~painted])
    assert 50 in widget.model.table["label"]
    _undo_restores(layer, before)
    widget.actions.buttons["paint"].click()
    assert widget.actions._on_mouse not in layer.mouse_drag_callbacks and layer.mouse_pan


def test_undo_refreshes_the_table(review, qtbot):
    _, layer, widget = review
    _select(widget, [4])
    widget.actions.buttons["delete"].click()
    assert 4 not in widget.model.table["label"]
    layer.undo()
    qtbot.waitUntil(lambda: 4 in widget.model.table["label"], timeout=3000)


def test_the_navigator_counts_again_after_an_edit_and_its_undo(review, qtbot):
    _, layer, widget = review
    n = widget.model.table["label"].size
    first = widget.navigator.go(1)
    assert first != 4
    assert widget.navigator.where.text().startswith(f"Object {first} (1 of {n})")
    _select(widget, [4])
    widget.actions.buttons["delete"].click()
    assert widget.navigator.where.text().startswith(f"Object {first} (1 of {n - 1})")
    layer.undo()
    qtbot.waitUntil(lambda: widget.model.table["label"].size == n, timeout=3000)
    assert widget.navigator.where.text().startswith(f"Object {first} (1 of {n})")
    # The object shown is deleted: the line says so instead of its old rank.
    _select(widget, [first])
    widget.actions.buttons["delete"].click()
    assert f"(1 of {n})" not in widget.navigator.where.text()


def test_fill_holes_and_relabel(review):
    _, layer, widget = review
    layer.data_setitem((np.array([7, 8]), np.array([7, 7])), 0)  # a hole in object 1
    holed = layer.data.copy()
    widget.actions.buttons["holes"].click()
    assert (layer.data[7:9, 7] == 1).all()
    _undo_restores(layer, holed)
    _select(widget, [3])
    widget.actions.buttons["delete"].click()
    widget.model.set_status(20, "accepted")
    widget.actions.buttons["relabel"].click()
    assert np.unique(layer.data).tolist() == list(range(20))
    assert widget.model.table["status"][-1] == "accepted"  # old 20 is now 19


def test_bad_input_is_a_notification_and_changes_nothing(review, make_napari_viewer):
    viewer, layer, widget = review
    before = layer.data.copy()
    widget.actions.buttons["merge"].click()  # nothing selected
    viewer.add_image(np.zeros((5, 5), np.float32), name="small")
    widget.images.value = ["small"]
    layer.data_setitem(np.nonzero(layer.data), 0)
    widget.measure()
    messages = error_messages()
    assert any("at least 2 objects" in m for m in messages)
    assert any("shape (5, 5)" in m for m in messages)
    widget.images.value = []
    widget.measure()
    assert any("no objects" in m for m in error_messages())
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_compare_makes_a_disagreement_layer_to_step_through(review):
    viewer, layer, widget = review
    viewer.add_labels(damaged(layer.data), name="candidate")
    widget.review_layer(layer)
    widget.comparison.candidate.value = viewer.layers["candidate"]
    widget.comparison.compare_button.click()
    result = widget.comparison.comparison
    assert (result.n_matched, result.precision, result.recall) == (15, 15 / 18, 15 / 20)
    assert "precision 0.833, recall 0.750" in widget.comparison.figures.text()
    disagreement = viewer.layers["cells vs candidate: disagreements"]
    assert sorted(disagreement.features["category"]) == sorted(
        ["missed"] * 3 + ["extra", "split", "merged"])
    colour = disagreement.colormap.map(np.array([1]))[0]
    np.testing.assert_allclose(colour, (1.0, 0.2, 0.2, 1.0))  # label 1 is a missed object
    widget.comparison.review_button.click()
    assert same(widget.model.layer, disagreement)  # the widget holds napari's proxy
    assert widget.model.table["label"].size == 6
    assert "category" in widget.model.table
    widget.navigator.go(1)
    assert disagreement.selected_label == 1
    # A rerun writes into the same, untouched layer.
    widget.review_layer(layer)
    widget.comparison.compare_button.click()
    assert len([x for x in viewer.layers if "disagreements" in x.name]) == 1


def test_filter_sort_and_csv_export(review, tmp_path):
    _, layer, widget = review
    layer.data_setitem(np.nonzero(layer.data == 6), 0)
    layer.data_setitem((np.array([1, 1, 1]), np.array([1, 2, 3])), 6)  # 3 pixels
    widget.measure()
    view = widget.table
    view.filter_column.setCurrentText("area")
    view.low.setText("50")
    view.apply_filter()
    assert 6 not in widget.model.order() and widget.model.order().size == 19
    assert view.columns.rowCount() == 19
    view.low.setText("")
    view.apply_filter()
    area_column = view.columns.columns.index("area")
    view._sort(area_column)
    assert widget.model.order()[0] == 6  # smallest first
    view._sort(area_column)
    assert widget.model.descending and widget.model.order()[-1] == 6
    widget.navigator.go(1)
    assert widget.model.current == 1  # ties in area keep label order
    view.csv_path.value = tmp_path / "objects.csv"
    view.export_button.click()
    lines = (tmp_path / "objects.csv").read_text().splitlines()
    assert len(lines) == 21 and lines[0].startswith("label,area,") and "status" in lines[0]


def test_an_empty_layer_docks_quietly(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((20, 20), np.uint16), name="empty")
    widget = ReviewWidget(viewer)
    assert widget.model.table is None and "no objects" in widget.status.text()
    assert not error_messages()
    widget.navigator.go(1)  # a key press on an empty layer: a plain message
    assert any("no objects" in m for m in error_messages())
    widget.close()
