"""The backprop segmenter on a z-stack as one volume (``stack_mode="volume"``)."""

from __future__ import annotations

import numpy as np
import pytest
from _volumes import ellipsoids

from napari_unsupseg.core.backprop import segment
from napari_unsupseg.core.backprop.estimate import estimate_memory
from napari_unsupseg.core.backprop.params import default_params
from napari_unsupseg.core.backprop.volume import shrink_factors
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.review.scores import hungarian_iou

SHAPE = (12, 48, 48)
SPACING = (2.0, 1.0, 1.0)
#: Two ellipsoids crossing most planes, of distinct brightness, on a darker background.
BLOBS = [((11, 16, 14), (9, 10, 10)), ((11, 31, 33), (9, 11, 10))]
LEVELS = np.array([0.2, 0.5, 0.8])


def _stack(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    truth = ellipsoids(BLOBS, SHAPE, SPACING)
    rng = np.random.default_rng(seed)
    image = LEVELS[truth] + rng.normal(0.0, noise, SHAPE)
    return image.astype(np.float32)[..., np.newaxis], truth


def _params(stack_mode: str = "volume", **changes):
    settings = dict(stack_mode=stack_mode, spacing_z=SPACING[0], superpixels="slic",
                    superpixel_n_segments=300, max_iter=30, device="cpu")
    return default_params(**{**settings, **changes})


@pytest.fixture(scope="module")
def noisy() -> tuple[np.ndarray, np.ndarray]:
    return _stack(noise=0.15)


@pytest.fixture(scope="module")
def volume_run(noisy):
    return run_to_end(segment(noisy[0], _params()))


@pytest.fixture(scope="module")
def planes_run(noisy):
    # A few iterations: each plane's network numbers its own labels whatever their number.
    return run_to_end(segment(noisy[0], _params("planes", max_iter=8)))


def test_volume_mode_gives_full_size_labels_and_the_plane_engines_metadata(volume_run):
    labels = volume_run.labels
    assert labels.shape == SHAPE and labels.dtype == np.uint16
    n = int(labels.max())
    np.testing.assert_array_equal(np.unique(labels), np.arange(1, n + 1))
    meta = volume_run.metadata
    assert meta["stack_mode"] == "volume" and meta["parameters"]["stack_mode"] == "volume"
    assert meta["n_labels"] == n and meta["stop_reason"] in {"converged", "min_labels",
                                                             "max_iter", "n_labels"}
    assert len(meta["iterations"]) == 1 and {"training", "total"} <= set(meta["timings"])
    assert meta["superpixel_method"] == "slic" and meta["spacing"] == list(SPACING)
    supervoxels = volume_run.extras["superpixels"]
    assert supervoxels.shape == SHAPE and supervoxels.min() >= 1


def test_a_blob_crossing_planes_keeps_one_label_where_planes_mode_numbers_each_plane(
        noisy, volume_run, planes_run):
    _, truth = noisy
    blob = truth == 1
    planes_crossed = int(blob.any(axis=(1, 2)).sum())
    assert planes_crossed >= 8
    _, counts = np.unique(volume_run.labels[blob], return_counts=True)
    assert counts.max() / blob.sum() > 0.9
    # Plane by plane, every plane numbers its own labels: the blob has one id per plane.
    assert len(np.unique(planes_run.labels[blob])) >= planes_crossed


def test_volume_mode_beats_planes_mode_and_kmeans_on_voxel_values(noisy, volume_run,
                                                                  planes_run):
    from scipy.cluster.vq import kmeans2

    image, truth = noisy
    _, kmeans = kmeans2(image.reshape(-1, 1).astype(np.float64), 3, seed=0, minit="++")
    baseline = hungarian_iou(kmeans.reshape(SHAPE) + 1, truth)
    volume = hungarian_iou(volume_run.labels, truth)
    assert volume > 0.85
    assert volume > baseline + 0.15  # measured: 0.93 against 0.63
    assert volume > hungarian_iou(planes_run.labels, truth) + 0.3


def test_anisotropic_spacing_is_accepted_and_z_is_not_shrunk_for_training():
    image, truth = _stack(noise=0.08)
    params = _params(spacing_z=3.0, train_pixels=1024, max_iter=15, n_labels=3)
    result = run_to_end(segment(image, params))
    assert result.labels.shape == SHAPE and result.labels.max() <= 3
    trained = result.metadata["trained_at"]
    assert trained[0] == SHAPE[0] and trained[1] < SHAPE[1] and trained[2] < SHAPE[2]
    assert hungarian_iou(result.labels, truth) > 0.7


def test_restarts_continuity_and_the_unvoted_response_run_on_a_volume():
    image, _ = _stack(noise=0.08)
    small = image[:6, :24, :24]
    params = _params(restarts=2, w_con=1.0, labels_from="response", max_iter=3,
                     train_pixels=None)
    result = run_to_end(segment(small, params))
    assert result.labels.shape == small.shape[:3] and result.labels.min() == 1
    assert result.metadata["restarts"] == 2 and len(result.metadata["iterations"]) == 2


def test_training_copy_shrinks_towards_cubic_voxels():
    # Planes four pixels apart: only y and x shrink, to about train_pixels per plane.
    factors = shrink_factors((10, 400, 400), (4.0, 1.0, 1.0), 20_000)
    assert factors[0] == 1.0 and factors[1] == pytest.approx(factors[2])
    assert 400 / factors[1] == pytest.approx(np.sqrt(20_000), rel=0.02)
    # Cubic voxels: every axis shrinks alike.
    factors = shrink_factors((64, 256, 256), (1.0, 1.0, 1.0), 4096)
    assert factors[0] == pytest.approx(factors[1]) and factors[0] > 1.0
    assert shrink_factors((8, 32, 32), (1.0, 1.0, 1.0), 4096) is None


def test_three_d_kernels_skip_z_in_the_first_layers_of_an_anisotropic_stack():
    from napari_unsupseg.core.backprop.nets3d import spatial_kernels

    assert spatial_kernels(2, (3.0, 1.0, 1.0)) == [(1, 3, 3), (3, 3, 3)]
    assert spatial_kernels(3, (1.0, 1.0, 1.0)) == [(3, 3, 3)] * 3
    assert spatial_kernels(1, (5.0, 1.0, 1.0)) == [(3, 3, 3)]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"superpixels": "felzenszwalb"}, "Felzenszwalb segments one plane at a time"),
        ({"memory_budget_mb": 64}, "crop it, or use stack mode 'planes'"),
    ],
)
def test_what_volume_mode_cannot_do_is_refused_in_one_sentence(changes, words):
    image, _ = _stack(noise=0.08)
    with pytest.raises(InputError, match=words):
        run_to_end(segment(image, _params(**changes)))


def test_scribbles_are_refused_in_volume_mode():
    image, truth = _stack(noise=0.08)
    with pytest.raises(InputError, match="Scribbles are not taken in volume mode"):
        run_to_end(segment(image, _params(), scribbles=truth.astype(np.int64)))


def test_the_memory_estimate_counts_the_whole_volume_without_a_crop_path():
    shape = (48, 512, 512, 1)
    volume = estimate_memory(shape, np.dtype(np.uint16), default_params(stack_mode="volume"))
    planes = estimate_memory(shape, np.dtype(np.uint16), default_params(stack_mode="planes"))
    assert volume > 4 * planes  # every plane's labelling pass at once
