"""The segmenter's bright objects: the labels on the bright side of an Otsu split of the
label means, every connected object its own label, touching ones split."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.filters import threshold_otsu

from napari_unsupseg.core.backprop import default_params, segment
from napari_unsupseg.core.backprop.bright import bright_labels
from napari_unsupseg.core.base.engine import run_to_end

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: (centre, radius, brightness) of the built field's nuclei: two touch, one is dim.
NUCLEI = [((20, 20), 9, 0.9), ((60, 22), 10, 0.8), ((60, 40), 10, 0.8),
          ((25, 65), 8, 0.5), ((70, 80), 9, 0.9)]


def _field(noise: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """(grey field (96, 112, 1) float32, true instances): dark noisy background, five
    nuclei, two of them touching."""
    rng = np.random.default_rng(3)
    image = rng.normal(0.1, noise, (96, 112)).astype(np.float32)
    truth = np.zeros((96, 112), np.int32)
    for k, (centre, radius, value) in enumerate(NUCLEI, start=1):
        rows, cols = disk(centre, radius, shape=truth.shape)
        image[rows, cols] += value - 0.1
        truth[rows, cols] = k
    return np.clip(image, 0, 1)[..., np.newaxis], truth


def test_the_rule_is_otsus_threshold_on_the_histogram_of_label_means():
    """Label ids in no order, means computed here: the bright side is the labels whose mean
    is above scikit-image's Otsu level of the means weighted by the labels' sizes."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.permutation(9)[rng.integers(0, 9, (40, 40))]  # means in no order
        grey = rng.random((40, 40)) + rng.random(9)[labels] * 3
        ids, inverse, size = np.unique(labels, return_inverse=True, return_counts=True)
        mean = np.bincount(inverse.ravel(), grey.ravel()) / size
        order = np.argsort(mean)
        level = threshold_otsu(hist=(size[order], mean[order]))
        assert np.array_equal(bright_labels(labels, grey), (mean > level)[inverse.reshape(labels.shape)])


def test_one_label_has_nothing_bright():
    assert not bright_labels(np.ones((8, 8), int), np.random.default_rng(0).random((8, 8))).any()


def test_bright_objects_are_the_nuclei_with_touching_ones_split():
    image, truth = _field()
    result = run_to_end(segment(image, default_params(seed=0, bright_objects=True)))
    objects = result.extras["objects"]
    assert objects.shape == truth.shape and objects.dtype == np.uint32
    assert result.metadata["objects"]["count"] == len(NUCLEI) == objects.max()
    for k in range(1, len(NUCLEI) + 1):  # each nucleus is one object, found to IoU > 0.8
        inside = objects[truth == k]
        best = np.bincount(inside[inside > 0]).argmax()
        iou = ((objects == best) & (truth == k)).sum() / ((objects == best) | (truth == k)).sum()
        assert iou > 0.8, (k, iou)
    assert "objects" not in run_to_end(segment(image, default_params(seed=0))).extras


def test_each_plane_of_a_stack_has_its_own_bright_side_and_nodata_is_never_bright():
    image, truth = _field()
    dimmer = image * 0.5  # labels of each plane are their own: a split of their own
    stack = np.stack([image, dimmer])
    excluded = np.zeros((2, *truth.shape), bool)
    excluded[1, :, :30] = True
    result = run_to_end(segment(stack, default_params(seed=0, bright_objects=True),
                                excluded=excluded))
    objects = result.extras["objects"]
    assert objects.shape == (2, *truth.shape)
    assert not objects[1][:, :30].any()
    for plane in objects:
        assert ((plane > 0) == (truth > 0))[:, 30:].mean() > 0.97


def test_a_volume_gives_objects_that_keep_one_label_through_the_planes():
    """In volume mode the objects are split in 3-D with the voxel spacing."""
    from skimage.draw import ellipsoid

    stack = np.full((10, 40, 48, 1), 0.1, np.float32)
    ball = ellipsoid(4, 8, 8)[1:-1, 1:-1, 1:-1]  # (9, 17, 17)
    stack[0:9, 4:21, 4:21, 0][ball] = 0.9
    stack[1:10, 20:37, 26:43, 0][ball] = 0.8
    params = default_params(seed=0, bright_objects=True, stack_mode="volume", max_iter=16)
    result = run_to_end(segment(stack, params))
    objects = result.extras["objects"]
    assert objects.shape == (10, 40, 48) and result.metadata["objects"]["split_as"] == "volume"
    assert result.metadata["objects"]["count"] == 2
    found = objects[0:9, 4:21, 4:21][ball]
    assert len(np.unique(found[found > 0])) == 1  # one label in every plane it crosses
    assert (found > 0).mean() > 0.8
