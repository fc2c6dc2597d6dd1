"""Pixels without data (nodata, outside an area of interest) take no part in the backprop
segmenter's training: not in its loss, not in the label count its stopping rules read."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core.backprop import default_params, segment
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.review.scores import hungarian_iou

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ignored_pixels_leave_the_loss_and_the_label_count():
    from napari_unsupseg.core.backprop.nets import Trainer, build_network, count_labels

    torch.manual_seed(0)
    images = torch.rand(1, 3, 24, 24)
    ignore = torch.zeros(1, 24, 24, dtype=torch.bool)
    ignore[:, :, :10] = True
    model = build_network("fast", 3, 8, 2)
    trainer = Trainer(model, images, None, 0, lr=0.0, momentum=0.0, w_sim=1.0, w_con=0.0,
                      ignore=ignore)
    response = model(images)
    target = response.argmax(1)
    expected = torch.nn.functional.cross_entropy(
        response.permute(0, 2, 3, 1)[~ignore], target[~ignore])
    assert torch.allclose(trainer._loss(response, target), expected, atol=1e-6)
    labels = torch.zeros(1, 24, 24, dtype=torch.int64)
    labels[:, :, :10] = 5  # a label found only where there is no data
    assert int(count_labels(labels, 8)) == 2 and int(count_labels(labels, 8, ignore)) == 1


def _scene_with_a_noise_border() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = np.ones((96, 96), int)
    truth[:, 48:] = 2
    image = np.where((truth == 1)[..., None], (0.2, 0.3, 0.6), (0.7, 0.6, 0.2))
    image = (image + rng.normal(0, 0.03, image.shape)).astype(np.float32)
    excluded = np.zeros(truth.shape, bool)
    excluded[:24] = excluded[:, :24] = True
    image[excluded] = rng.uniform(0, 1, (int(excluded.sum()), 3))  # what a bad fill looks like
    return image, truth, excluded


def test_a_noisy_excluded_border_does_not_keep_labels_alive():
    image, truth, excluded = _scene_with_a_noise_border()
    params = default_params(max_iter=32)
    alone = run_to_end(segment(image[24:, 24:], params)).metadata  # the valid part by itself
    left_out = run_to_end(segment(image, params, excluded=excluded))
    counted = run_to_end(segment(image, params)).metadata
    # Two flat regions are few labels: the run stops on them no later than the valid part
    # alone does; with the border counted, its noise holds labels for many more iterations.
    assert left_out.metadata["stop_reason"] == "min_labels"
    (ran,), (alone_ran,), (counted_ran,) = (
        left_out.metadata["iterations"], alone["iterations"], counted["iterations"])
    assert ran <= alone_ran and counted_ran >= 2 * ran + 5
    valid = ~excluded
    found = np.where(valid, left_out.labels, 0)
    assert hungarian_iou(found, np.where(valid, truth, 0)) >= 0.95


def test_a_mask_of_the_wrong_shape_is_refused():
    image, _, excluded = _scene_with_a_noise_border()
    with pytest.raises(InputError, match="nodata mask"):
        run_to_end(segment(image, default_params(max_iter=2), excluded=excluded[:50]))
