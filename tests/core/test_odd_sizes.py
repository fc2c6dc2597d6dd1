"""No engine assumes a size multiple of its network's stride: odd sizes, thin images, strokes
on every edge, and random sizes / channels / dtypes / strokes either work or stop with one
plain sentence (an InputError), never another exception."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_unsupseg.core.backprop import BackpropParams, segment
from napari_unsupseg.core.backprop.params import default_params
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.models import ModelConfig, build_model
from napari_unsupseg.core.models.checkpoints import LoadedModel
from napari_unsupseg.core.parts import PartsParams, discover_parts
from napari_unsupseg.core.predict import PredictParams, predict
from napari_unsupseg.core.preseg import PRESEG_METHODS, PresegParams, run_preseg
from napari_unsupseg.core.train import TrainParams, train
from napari_unsupseg.core.train.data import VALIDATION_BLOCK, painted_windows, prepare

#: The smallest training run: two steps of a two-level U-Net on small crops.
TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, crop_size=32, unet_depth=2,
            unet_channels=4, threads=1, patience=0, time_limit=0.0)
#: Sides that are no multiple of 8, 16 or 32 (primes, one pixel, thin strips).
ODD_SHAPES = [(1, 1), (1, 37), (37, 1), (7, 13), (33, 257), (100, 90), (101, 67)]


def _image(shape: tuple[int, int], channels: int = 1, dtype=np.uint8, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.random((*shape, channels))
    if np.issubdtype(np.dtype(dtype), np.integer):
        return (values * np.iinfo(dtype).max).astype(dtype)
    return values.astype(dtype)


def _trains_or_refuses(images, labels, **changes) -> bool:
    """Training either gives a model (True) or stops with one plain sentence (False)."""
    try:
        result = run_to_end(train(images, labels, TrainParams(**{**TINY, **changes})))
    except InputError as error:
        assert str(error).strip() and "\n" not in str(error)
        return False
    assert result.model is not None
    assert result.metadata["steps"] >= 1
    return True


# ----------------------------------------------------------------------- training


@pytest.mark.parametrize("shape", [(100, 90), (33, 257), (257, 33), (130, 71)])
def test_validation_windows_fit_any_image_size(shape):
    """The held-out blocks at an image's edge stop there (they crashed for sides that are
    no multiple of the block): every held pixel is a painted pixel, held once."""
    labels = np.ones(shape, np.uint8)
    labels[shape[0] // 3: 2 * shape[0] // 3, shape[1] // 3: 2 * shape[1] // 3] = 2
    image = _image(shape)
    data = prepare([image[..., :]], [labels], 64, 0.3, np.random.default_rng(0))
    held = np.zeros(shape, np.int64)
    for window in data.windows:
        assert window.target.shape == (data.crop, data.crop)
        part = window.target[: shape[0] - window.y0, : shape[1] - window.x0]
        held[window.y0: window.y0 + part.shape[0], window.x0: window.x0 + part.shape[1]] += (
            part > 0)
        outside = window.target.copy()
        outside[: part.shape[0], : part.shape[1]] = 0
        assert not outside.any()  # nothing held beyond the image
    assert held.max() <= 1
    assert data.validation_pixels == held.sum() > 0
    assert not (held.astype(bool) & (data.planes[0].train > 0)).any()  # held out of training
    assert VALIDATION_BLOCK == 32


def test_the_reported_crash_now_trains():
    """100 x 90, densely painted: enough pixels for a validation part (it crashed)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 90)).astype(np.uint8)[..., None]
    labels = np.ones((100, 90), np.uint8)
    labels[30:60, 30:60] = 2
    params = TrainParams(**{**TINY, "crop_size": 64}, validation_fraction=0.15)
    result = run_to_end(train([image], [labels], params))
    assert result.model is not None
    assert result.metadata["validation_pixels"] >= 1000


@pytest.mark.parametrize("edge", ["top", "bottom", "left", "right"])
@pytest.mark.parametrize("shape", [(33, 257), (100, 90)])
def test_one_pixel_strokes_on_every_edge(shape, edge):
    labels = np.zeros(shape, np.uint8)
    line = {"top": np.s_[0, :], "bottom": np.s_[-1, :], "left": np.s_[:, 0],
            "right": np.s_[:, -1]}[edge]
    labels[line] = 1
    labels[shape[0] // 2, shape[1] // 4: shape[1] // 2] = 2
    _trains_or_refuses([_image(shape)], [labels])


@pytest.mark.parametrize("architecture", ["unet", "unet_mobilenet", "deeplabv3plus_mobilenet"])
def test_every_kind_of_network_trains_at_an_odd_size(architecture):
    """Crops are padded to the network's stride inside the model, not by the image size."""
    labels = np.ones((37, 53), np.uint8)
    labels[:, 20:] = 2
    assert _trains_or_refuses([_image((37, 53), 3)], [labels], architecture=architecture,
                              crop_size=33)


def test_a_single_class_in_one_corner_is_one_sentence():
    labels = np.zeros((41, 29), np.uint8)
    labels[:3, :3] = 1
    with pytest.raises(InputError, match="Only one class"):
        run_to_end(train([_image((41, 29))], [labels], TrainParams(**TINY)))


def test_an_image_whose_strokes_are_all_held_out_trains():
    """With several images, all the strokes of a small one can land in validation blocks:
    the island floors then come from the other planes (it crashed on the empty one)."""
    big, small = _image((200, 200)), _image((40, 40), seed=1)
    big_labels = np.ones((200, 200), np.uint8)
    big_labels[50:150, 50:150] = 2
    small_labels = np.zeros((40, 40), np.uint8)
    small_labels[5:10, 5:20] = 1
    small_labels[20:25, 5:20] = 2
    images, labels = [big, small], [big_labels, small_labels]
    # The seed's draws hold out every stroke of the small image (what this test is about).
    data = prepare(images, labels, TINY["crop_size"], 0.3, np.random.default_rng(1))
    assert not data.planes[1].train.any()
    assert len(list(painted_windows(data))) == 1
    assert _trains_or_refuses(images, labels, seed=1, validation_fraction=0.3)


@st.composite
def painted_images(draw):
    height, width = draw(st.integers(8, 300)), draw(st.integers(8, 300))
    channels = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    image = _image((height, width), channels, dtype, seed=draw(st.integers(0, 99)))
    classes = draw(st.integers(1, 3))
    labels = np.zeros((height, width), np.uint8)
    if draw(st.booleans()):  # dense: every pixel painted, in bands
        labels[:] = 1 + (np.arange(width)[None, :] * classes // width)
    else:  # strokes: lines of random width at random places, edges included
        for _ in range(draw(st.integers(1, 6))):
            value = draw(st.integers(1, classes))
            thick = draw(st.integers(1, 5))
            if draw(st.booleans()):
                row = draw(st.integers(0, height - 1))
                labels[row: row + thick, :] = value
            else:
                col = draw(st.integers(0, width - 1))
                labels[:, col: col + thick] = value
    return image, labels


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(painted_images())
def test_any_painting_trains_or_gets_one_sentence(case):
    image, labels = case
    trained = _trains_or_refuses([image], [labels], validation_fraction=0.15)
    # Two painted classes always train: a refusal is only for a single class.
    assert trained == (len(np.unique(labels[labels > 0])) >= 2)


# -------------------------------------------------------------------- other engines


def _tiny_unet(channels: int = 1) -> LoadedModel:
    torch.manual_seed(0)
    config = ModelConfig("unet", 3, in_channels=channels, depth=3, base_channels=4,
                         mean=[0.5] * channels, std=[0.25] * channels)
    return LoadedModel(build_model(config), config)


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_predict_at_odd_sizes(shape):
    model = _tiny_unet()
    image = _image(shape, dtype=np.uint16)
    try:
        result = run_to_end(predict(image, PredictParams(tile_size=64, overlap=16),
                                    model=model))
    except InputError as error:  # a plane under 2 pixels a side is refused in words
        assert min(shape) < 2 and "\n" not in str(error)
        return
    assert result.labels.shape == shape


@cache
def _trainable_network(architecture: str) -> LoadedModel:
    torch.manual_seed(0)
    config = ModelConfig(architecture, 3, in_channels=1, mean=[0.5], std=[0.25],
                         **({"depth": 2, "base_channels": 4} if architecture == "unet" else {}))
    return LoadedModel(build_model(config), config)


@pytest.mark.parametrize("shape", [(2, 2), (2, 300), (300, 2), (3, 3), (7, 13), (299, 5)])
@pytest.mark.parametrize("architecture", ["unet", "unet_mobilenet", "deeplabv3plus_mobilenet",
                                          "deeplabv3_mobilenet"])
def test_every_kind_of_network_predicts_thin_images(architecture, shape):
    """Tiles of 2 px a side reach the network as they are (DeepLab pads nothing): its
    MobileNetV2 stem, unpadded, needed 3 px (it crashed)."""
    result = run_to_end(predict(_image(shape), PredictParams(tile_size=64, overlap=16),
                                model=_trainable_network(architecture)))
    assert result.labels.shape == shape


@pytest.mark.parametrize("method", sorted(PRESEG_METHODS))
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (7, 13), (33, 71), (2, 300),
                                   (300, 2), (257, 33)])
def test_preseg_at_odd_sizes(method, shape):
    image = _image(shape, 3)
    try:
        result = run_to_end(run_preseg(image, PresegParams(method=method, n_segments=20)))
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert result.labels.shape == shape
    assert result.labels.min() >= 1


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_backprop_at_odd_sizes(shape):
    image = _image(shape, 3)
    params = BackpropParams(max_iter=2, restarts=1, seed=0)
    try:
        result = run_to_end(segment(image, params))
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert result.labels.shape == shape


@pytest.mark.parametrize("shape", [(5, 6000), (6000, 5), (2, 14000)])
def test_backprop_crops_of_thin_strips(shape):
    """An image over the memory budget trains on crops: a strip thinner than a crop gets
    crops cut at its sides (they were drawn at the full crop size and crashed)."""
    image = _image(shape, 3)
    params = default_params(max_iter=2, memory_budget_mb=64, n_features=8, superpixels="none")
    result = run_to_end(segment(image, params))
    assert result.metadata["mode"] == "crops"
    assert result.labels.shape == shape


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (37, 1), (33, 71), (2, 300), (300, 2)])
def test_parts_at_odd_sizes(shape):
    images = np.stack([_image(shape, 3, seed=s) for s in range(2)])
    params = PartsParams(n_parts=2, iterations=2, batch_size=2, working_size=32)
    try:
        result = run_to_end(discover_parts(images, params))
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert result.labels.shape == images.shape[:3]
