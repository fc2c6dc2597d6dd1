"""Training on a shrunk copy of the image and labelling at full size (``train_pixels``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core import samples
from napari_unsupseg.core.backprop import default_params, segment
from napari_unsupseg.core.base.engine import RunControl, run_to_end
from napari_unsupseg.core.review.scores import majority_iou

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, np.ndarray]:
    return samples.mosaic(192, n_regions=5, noise=0.05, seed=4)


def test_shrunk_training_labels_every_pixel_at_full_size(mosaic):
    image, truth = mosaic
    result = run_to_end(segment(image, default_params(train_pixels=4096)))
    assert result.labels.shape == truth.shape
    assert result.metadata["trained_at"] == [64, 64]  # 192^2 / 4096 = 9: a third a side
    assert result.extras["superpixels"].shape == truth.shape  # the full-size voters
    assert majority_iou(result.labels, truth) >= 0.9


def test_an_image_under_the_size_trains_as_it_is(mosaic):
    image, _ = mosaic
    small = image[:60, :70]
    result = run_to_end(segment(small, default_params(train_pixels=4200, max_iter=3)))
    assert result.metadata["trained_at"] == [60, 70]
    unshrunk = run_to_end(segment(small, default_params(train_pixels=None, max_iter=3)))
    assert np.array_equal(result.labels, unshrunk.labels)


def test_previews_of_a_shrunk_run_have_the_image_size(mosaic):
    image, truth = mosaic
    control = RunControl(preview_interval=0.0)
    engine = segment(image, default_params(train_pixels=4096, max_iter=3, patience=0),
                     control=control)
    shapes = set()
    try:
        while True:
            progress = next(engine)
            if progress.preview is not None:
                shapes.add(progress.preview.shape)
    except StopIteration:
        pass
    assert shapes == {truth.shape}


def test_scribbles_train_at_full_size(mosaic):
    image, truth = mosaic
    scribbles = np.zeros(truth.shape, np.int32)
    scribbles[10, 5:60] = 1  # a 1-pixel stroke would not survive shrinking
    scribbles[150, 100:180] = 2
    result = run_to_end(segment(image, default_params(train_pixels=4096, max_iter=3),
                                scribbles=scribbles))
    assert result.metadata["trained_at"] == list(truth.shape)


def test_response_labels_of_a_shrunk_run_are_unvoted_and_full_size(mosaic):
    image, truth = mosaic
    params = default_params(train_pixels=4096, max_iter=3, labels_from="response")
    labels = run_to_end(segment(image, params)).labels
    assert labels.shape == truth.shape


def test_a_large_plane_is_shrunk_at_most_sixteen_times_a_side():
    from napari_unsupseg.core.backprop.superpixels import MAX_SHRINK, training_planes

    plane = np.zeros((1, 2400, 2400, 1), np.float32)
    plane[:, :, 1200:] = 1.0
    small, _ = training_planes(plane, default_params())  # 20,000 pixels would be 17x
    assert small.shape == (1, 2400 // MAX_SHRINK, 2400 // MAX_SHRINK, 1)
    assert small[0, :, :70].max() == 0.0 and small[0, :, 80:].min() == 1.0
    small, _ = training_planes(plane[:, :1000, :1000], default_params())
    assert small.shape[1:3] == (141, 141)  # under the cap: about train_pixels


def test_the_voting_superpixels_of_a_large_plane_are_drawn_at_a_whole_fraction(monkeypatch,
                                                                                mosaic):
    """Over the size limit the superpixels that vote are drawn on a copy shrunk by a whole
    factor and repeated back: blocks of that factor share one superpixel, the plane's odd
    last row takes its neighbour's, and they still follow the regions."""
    from napari_unsupseg.core.backprop import superpixels
    from napari_unsupseg.core.base.images import normalize

    image, truth = mosaic
    image, truth = np.concatenate([image, image[-1:]]), np.concatenate([truth, truth[-1:]])
    plane = normalize(image)
    params = default_params()
    full = superpixels.vote_superpixels(plane, params)
    monkeypatch.setattr(superpixels, "VOTE_SUPERPIXEL_PIXELS", 10_000)  # 193 x 192: factor 2
    found = superpixels.vote_superpixels(plane, params)
    assert found.shape == truth.shape and found.dtype == np.int32
    assert np.array_equal(np.unique(found), np.arange(1, found.max() + 1))
    assert np.array_equal(found[0:192:2], found[1:192:2])
    assert np.array_equal(found[:, 0:192:2], found[:, 1:192:2])
    assert np.array_equal(found[192], found[191])
    assert found.max() < full.max()
    assert majority_iou(found, truth) >= 0.98 * majority_iou(full, truth)
    result = run_to_end(segment(image, params))
    voters = result.extras["superpixels"]  # the engine's: the same, numbered its way
    assert len(np.unique(voters)) == found.max()
    assert np.array_equal(voters[0:192:2], voters[1:192:2])
    assert majority_iou(result.labels, truth) >= 0.9
