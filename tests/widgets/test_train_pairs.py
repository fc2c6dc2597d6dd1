"""Train from labels on many images: more layer pairs, a folder of files, refusals in
words; and the objects a model separates written as a Labels layer on Apply."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from _gui import error_messages
from scipy import ndimage as ndi

import napari_unsupseg.core.predict as core_predict
import napari_unsupseg.core.train as core_train
from napari_unsupseg.core.samples.synthetic import nuclei
from napari_unsupseg.widgets._layers import same
from napari_unsupseg.widgets._train_pairs import PAIRING_RULE, pair_files
from napari_unsupseg.widgets.train import TrainWidget

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

TINY = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "unet_depth": 2,
        "unet_channels": 8, "threads": 1, "time_limit": 0.0}
SIZE = 48


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A small grey image and two classes painted on its upper half (1 = back, 2 = nuclei)."""
    image, truth = nuclei(SIZE, seed=seed, bits=8)
    painted = np.where(truth > 0, 2, 1).astype(np.uint8)
    painted[SIZE // 2:] = 0
    return image[..., 0], painted


def _dock(viewer, pairs: int = 1) -> TrainWidget:
    for k in range(1, pairs + 1):
        image, painted = _pair(k)
        viewer.add_image(image, name=f"image {k}")
        viewer.add_labels(painted, name=f"painted {k}")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    widget.input.image_picker.value = viewer.layers["image 1"]
    widget.labels_picker.value = viewer.layers["painted 1"]
    widget.form.set_values(TINY)
    return widget


def _train(qtbot, widget) -> str:
    with qtbot.waitSignal(widget.runner.ended, timeout=120_000) as ended:
        widget.train()
    return ended.args[0]


def _seen(meta) -> int:
    """The painted pixels training saw: those it trained on and those it validated on."""
    return sum(meta["labelled_pixels"].values()) + meta["validation_pixels"]


def _with_objects(monkeypatch) -> None:
    """Stand in for a model that separates objects: its nuclei, one label each."""
    real = core_predict.predict

    def predict(image, params, **kwargs):
        result = yield from real(image, params, **kwargs)
        labels = np.asarray(result.labels)
        objects = np.zeros(labels.shape, np.uint32)
        for index in np.ndindex(labels.shape[:-2]):
            objects[index] = ndi.label(labels[index] == 2)[0]
        result.extras["objects"] = objects
        return result

    monkeypatch.setattr(core_predict, "predict", predict)


def test_training_on_two_layer_pairs_then_apply_writes_objects(
        make_napari_viewer, qtbot, monkeypatch):
    real_train = core_train.train

    def train(*args, **kwargs):  # a model that separates objects in its last preview
        result = yield from real_train(*args, **kwargs)
        result.extras["objects"] = ndi.label(result.labels == 2)[0]
        return result

    monkeypatch.setattr(core_train, "train", train)
    viewer = make_napari_viewer()
    widget = _dock(viewer, pairs=2)
    row = widget.pairs.add_pair()
    # A new row offers the layers not used yet.
    assert same(row.image.value, viewer.layers["image 2"])
    assert same(row.labels.value, viewer.layers["painted 2"])
    assert _train(qtbot, widget) == "done", error_messages()
    assert widget.model is not None and not error_messages()
    meta = widget.metadata
    painted = [int((viewer.layers[f"painted {k}"].data > 0).sum()) for k in (1, 2)]
    assert _seen(meta) == sum(painted)  # both pairs, every painted pixel
    assert meta["images"] == ["image 1", "image 2"]
    assert meta["labels"] == ["painted 1", "painted 2"]
    preview = viewer.layers["image 1 prediction"]
    np.testing.assert_array_equal(viewer.layers["image 1 objects"].data > 0,
                                  np.asarray(preview.data) == 2)

    # Apply with a model that separates objects: a second Labels layer, beside the classes.
    _with_objects(monkeypatch)
    widget.apply_picker.value = viewer.layers["image 2"]
    with qtbot.waitSignal(widget.runner.ended, timeout=60_000) as ended:
        widget.apply()
    assert ended.args[0] == "done", error_messages()
    classes = widget.writer.layer
    objects = viewer.layers["image 2 objects"]
    assert objects.data.shape == classes.data.shape == (SIZE, SIZE)
    assert objects.data.dtype.kind == "u"
    np.testing.assert_array_equal(objects.data > 0, np.asarray(classes.data) == 2)
    # An untouched objects layer is replaced by the next Apply; an edited one is kept.
    with qtbot.waitSignal(widget.runner.ended, timeout=60_000):
        widget.apply()
    assert [layer.name for layer in viewer.layers].count("image 2 objects") == 1
    objects = viewer.layers["image 2 objects"]
    objects.data_setitem((np.array([0]), np.array([0])), 7)
    edited = np.asarray(objects.data).copy()
    with qtbot.waitSignal(widget.runner.ended, timeout=60_000):
        widget.apply()
    assert "image 2 objects" in viewer.layers and "image 2 objects [2]" in viewer.layers
    np.testing.assert_array_equal(viewer.layers["image 2 objects"].data, edited)
    # Objects are the plugin's output: never taken for the labels the user paints.
    assert same(widget.labels_picker.value, viewer.layers["painted 1"])


def test_every_labelled_plane_of_a_stack_beside_a_plane(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    planes = [_pair(seed) for seed in (4, 5, 6)]
    stack = viewer.add_image(np.stack([image for image, _ in planes]), name="stack")
    painted = np.stack([labels for _, labels in planes])
    painted[1] = 0  # an unlabelled plane teaches nothing
    labels = viewer.add_labels(painted, name="stack painted")
    widget.labels_picker.value = viewer.layers["painted 1"]
    widget.pairs.add_pair(stack, labels)
    assert _train(qtbot, widget) == "done", error_messages()
    assert _seen(widget.metadata) == int((viewer.layers["painted 1"].data > 0).sum()) + int(
        (painted > 0).sum())


def test_a_folder_of_images_and_labels(make_napari_viewer, qtbot, tmp_path):
    (tmp_path / "labels").mkdir()
    image, painted = _pair(2)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", painted)  # beside the image
    image, painted = _pair(3)
    tifffile.imwrite(tmp_path / "b.tif", image)
    tifffile.imwrite(tmp_path / "labels" / "b.tif", painted)  # in the labels sub-folder
    tifffile.imwrite(tmp_path / "c.tif", image)  # no labels: skipped
    pairs, unpaired = pair_files(tmp_path)
    assert [(i.name, lab.relative_to(tmp_path).as_posix()) for i, lab in pairs] == [
        ("a.tif", "a_labels.tif"), ("b.tif", "labels/b.tif")]
    assert [p.name for p in unpaired] == ["c.tif"]

    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.pairs.folder.value = str(tmp_path)
    assert widget.pairs.folder_note.value == "2 image(s) with labels; 1 without labels (skipped)"
    assert "NAME_labels.tif" in widget.pairs.folder.tooltip
    assert _train(qtbot, widget) == "done", error_messages()
    painted = int((viewer.layers["painted 1"].data > 0).sum())
    painted += sum(int((tifffile.imread(lab) > 0).sum()) for _, lab in pairs)
    assert _seen(widget.metadata) == painted
    assert widget.metadata["images"] == ["image 1", str(tmp_path / "a.tif"),
                                         str(tmp_path / "b.tif")]


def test_a_folder_where_nothing_pairs_is_a_sentence(make_napari_viewer, qtbot, tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _pair(2)[0])
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.pairs.folder.value = str(tmp_path)
    widget.train()
    assert not widget.runner.running and widget.model is None
    assert error_messages() == [f"No image in the folder {tmp_path} has a label file. "
                                f"{PAIRING_RULE}"]
    # A colour file beside grey layers: read in the worker, refused in one sentence.
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((SIZE, SIZE, 3), np.uint8),
                     photometric="rgb")
    tifffile.imwrite(tmp_path / "a_labels.tif", _pair(2)[1])
    assert _train(qtbot, widget) == "failed"
    assert error_messages()[-1] == ("The image a.tif has 3 channel(s), but 'image 1' has 1; "
                                    "every image to train on needs the same channels.")
    assert widget.model is None


def test_mismatched_pairs_are_notifications_not_exceptions(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.add_image(np.zeros((SIZE, SIZE)), name="other")
    viewer.add_labels(np.zeros((SIZE - 8, SIZE), np.uint8), name="small")
    widget.labels_picker.value = viewer.layers["painted 1"]  # it follows the newest layer
    row = widget.pairs.add_pair(viewer.layers["other"], viewer.layers["small"])
    widget.train()
    assert not widget.runner.running
    assert error_messages()[-1] == (f"The labels layer 'small' has shape {(SIZE - 8, SIZE)}, "
                                    f"but the image 'other' has shape {(SIZE, SIZE)} without "
                                    "its channels; they must match.")
    # Another channel count: one sentence naming both images.
    viewer.add_image(np.zeros((SIZE, SIZE, 3), np.uint8), name="colour", rgb=True)
    row.image.value = viewer.layers["colour"]
    row.labels.value = viewer.layers["painted 1"]
    widget.train()
    assert error_messages()[-1] == ("The image 'colour' has 3 channel(s), but 'image 1' has "
                                    "1; every image to train on needs the same channels.")
    # Removing the row trains on the main pair alone.
    widget.pairs.remove_pair(row)
    assert widget.pairs.rows == []
    assert _train(qtbot, widget) == "done", error_messages()
    assert widget.metadata["images"] == ["image 1"]
