"""Trained models as users count with them: objects one by one (touching ones split), every
image scaled by its own intensities, and any painting trains or gets one sentence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.predict import PredictParams, predict
from napari_unsupseg.core.predict.objects import separate_objects
from napari_unsupseg.core.train import TrainParams, train

FAST = dict(epochs=15, steps_per_epoch=8, batch_size=4, unet_depth=2, unet_channels=8,
            threads=1, validation_fraction=0.0)


def discs(centres: list[tuple[int, int]], radius: int, shape=(64, 96)) -> np.ndarray:
    """Instance labels of discs (a later disc does not cover an earlier one)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        out[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & (out == 0)] = k
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def matched(found: np.ndarray, truth: np.ndarray) -> list[float]:
    """For each true object, the best IoU of a found object."""
    return [max(iou(truth == t, found == f) for f in np.unique(found[found > 0]))
            for t in np.unique(truth[truth > 0])]


def test_touching_discs_in_a_mask_are_split_and_a_long_object_is_not():
    truth = discs([(32, 34), (32, 60)], 14)  # centres 26 apart: a neck 14 px wide
    found = separate_objects(truth > 0)
    assert found.dtype == np.uint32 and found.max() == 2
    assert min(matched(found, truth)) > 0.9
    from skimage.measure import label
    assert label(truth > 0).max() == 1  # connected parts, the baseline, see one object
    yy, xx = np.mgrid[:64, :96]
    ellipse = ((yy - 32) / 10) ** 2 + ((xx - 48) / 30) ** 2 <= 1
    assert separate_objects(ellipse).max() == 1
    stack = separate_objects(np.stack([truth > 0, ellipse]))
    assert stack.shape == (2, 64, 96) and np.unique(stack[1][stack[1] > 0]).tolist() == [3]


@pytest.mark.parametrize("object_value", [2, 1])
def test_a_model_painted_as_one_blob_returns_touching_discs_as_two_objects(object_value,
                                                                          monkeypatch):
    """Both discs painted with the same value (as a user paints one class): the class map
    joins them, the objects output gives each disc back; the objects' class is found
    whichever value it was painted with."""
    truth = discs([(32, 34), (32, 60)], 14)
    rng = np.random.default_rng(0)
    image = (np.where(truth > 0, 900.0, 200.0) + rng.normal(0, 40, truth.shape)).astype(
        np.uint16)[..., None]
    painted = np.where(truth > 0, object_value, 3 - object_value).astype(np.uint8)
    result = run_to_end(train([image], [painted], TrainParams(**FAST)))
    assert result.metadata["object_class"] == object_value
    out = run_to_end(predict(image, PredictParams(), model=result.model))
    assert iou(out.labels == object_value, truth > 0) > 0.9
    objects = out.extras["objects"]
    assert objects.shape == truth.shape and objects.max() == 2
    assert min(matched(objects, truth)) > 0.8
    assert out.metadata["objects"] == {"class": object_value, "count": 2}
    plain = run_to_end(predict(image, PredictParams(objects=False), model=result.model))
    assert "objects" not in plain.extras
    import napari_unsupseg.core.predict.objects as objects_module
    monkeypatch.setattr(objects_module, "MAX_OBJECT_PIXELS", 1000)  # a huge plane
    huge = run_to_end(predict(image, PredictParams(), model=result.model))
    assert "objects" not in huge.extras and "skipped" in huge.metadata["objects"]


def test_separate_objects_off_and_more_than_two_classes_give_no_objects():
    truth = discs([(32, 34)], 14)
    image = np.where(truth > 0, 0.9, 0.2).astype(np.float32)[..., None]
    painted = np.where(truth > 0, 2, 1).astype(np.uint8)
    off = run_to_end(train([image], [painted], TrainParams(**FAST, separate_objects=False)))
    assert off.metadata["object_class"] == 0
    three = painted.copy()
    three[:, 80:] = 3
    many = run_to_end(train([image], [three], TrainParams(**FAST)))
    assert many.metadata["object_class"] == 0
    out = run_to_end(predict(image, PredictParams(), model=many.model))
    assert "objects" not in out.extras


def test_the_same_model_gives_the_same_classes_on_a_dimmer_copy():
    """Each image is scaled by its own percentiles: an image and the same image at 0.3 of
    its brightness (another exposure) are the same to the model."""
    truth = discs([(20, 20), (40, 70)], 10)
    rng = np.random.default_rng(1)
    image = (np.where(truth > 0, 900.0, 150.0) + rng.normal(0, 60, truth.shape)).astype(
        np.float32)[..., None]
    painted = np.where(truth > 0, 2, 1).astype(np.uint8)
    painted[:, 48:] = 0
    result = run_to_end(train([image], [painted], TrainParams(**FAST)))
    assert result.metadata["intensity"] == "stretch"
    bright = run_to_end(predict(image, PredictParams(), model=result.model)).labels
    dim = run_to_end(predict(image * 0.3, PredictParams(), model=result.model)).labels
    assert iou(bright == 2, truth > 0) > 0.85
    assert (bright == dim).mean() > 0.999


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_strokes_on_random_images_train_or_get_one_sentence(data):
    height = data.draw(st.integers(9, 70), label="height")
    width = data.draw(st.integers(9, 70), label="width")
    channels = data.draw(st.sampled_from([1, 3]), label="channels")
    dtype = data.draw(st.sampled_from([np.uint8, np.uint16, np.float32]), label="dtype")
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, channels)) * 200).astype(dtype)
    painted = np.zeros((height, width), np.uint8)
    for _ in range(data.draw(st.integers(0, 6), label="strokes")):
        value = data.draw(st.integers(1, 3), label="class")
        y, x = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
        length = data.draw(st.integers(1, 40))
        if data.draw(st.booleans()):
            painted[y, x:x + length] = value
        else:
            painted[y:y + length, x] = value
    params = TrainParams(epochs=1, steps_per_epoch=2, batch_size=2, unet_depth=2,
                         unet_channels=4, threads=1)
    try:
        result = run_to_end(train([image], [painted], params))
    except InputError as error:
        message = str(error)
        assert message.endswith(".") and "\n" not in message and len(message) < 300
        assert len({int(v) for v in np.unique(painted) if v}) < 2  # only then refused
        return
    out = run_to_end(predict(image, PredictParams(), model=result.model))
    assert out.labels.shape == (height, width)
    assert set(np.unique(out.labels)) <= set(result.metadata["class_values"])
