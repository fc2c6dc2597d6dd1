"""Presegmentation of a z-stack as one volume (slic, watershed) with its voxel spacing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _volumes import SPACING, ellipsoids, fluorescence
from scipy import ndimage as ndi
from skimage.measure import label

from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.preseg import PRESEG_METHODS, VOLUME_METHODS, PresegParams, run_preseg
from napari_unsupseg.core.preseg.estimate import estimate_memory

NUCLEI = [((24, 32, 20), (12, 12, 12)), ((24, 32, 42), (12, 12, 12))]


@pytest.fixture(scope="module")
def stack() -> tuple[np.ndarray, np.ndarray]:
    truth = ellipsoids(NUCLEI)
    return fluorescence(truth, seed=4), truth


def _volume(method: str, spacing=SPACING, **changes) -> PresegParams:
    z, y, x = spacing
    return PresegParams(method=method, stack_mode="volume", n_segments=150, spacing_z=z,
                        spacing_y=y, spacing_x=x, **changes)


def _planes_per_label(labels: np.ndarray) -> float:
    """Mean number of planes a label spans."""
    return float(np.mean([box[0].stop - box[0].start for box in ndi.find_objects(labels)
                          if box is not None]))


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of voxels in their supervoxel's majority true region (nucleus or background)."""
    table = np.zeros((int(labels.max()) + 1, int(truth.max()) + 1))
    np.add.at(table, (labels.ravel(), truth.ravel()), 1)
    return float(table.max(axis=1).sum() / table.sum())


@pytest.mark.parametrize("method", sorted(VOLUME_METHODS))
def test_volume_mode_gives_supervoxels_connected_in_3d_across_planes(stack, method):
    image, _ = stack
    result = run_to_end(run_preseg(image, _volume(method)))
    labels = result.labels
    assert labels.shape == image.shape[:3] and labels.dtype == np.uint16
    n = int(labels.max())
    np.testing.assert_array_equal(np.unique(labels), np.arange(1, n + 1))
    assert 50 <= n <= 400
    # One 6-connected piece per supervoxel.
    assert label(labels, background=0, connectivity=1).max() == n
    assert _planes_per_label(labels) > 2.0  # plane by plane would be exactly 1
    assert result.metadata["segmented_as"] == "volume"


@pytest.mark.parametrize("method", sorted(VOLUME_METHODS))
def test_supervoxels_follow_the_nuclei_better_than_a_grid_of_cubes(stack, method):
    image, truth = stack
    labels = run_to_end(run_preseg(image, _volume(method))).labels
    n = int(labels.max())
    side = int(round((np.prod(labels.shape) / n) ** (1 / 3)))
    z, y, x = np.indices(labels.shape) // side
    cubes = (z * 1000 + y * 100 + x).astype(np.int64)
    assert _purity(labels, truth) >= 0.93
    assert _purity(labels, truth) >= _purity(cubes, truth) + 0.03


@pytest.mark.parametrize("method", sorted(VOLUME_METHODS))
def test_coarser_z_spacing_gives_supervoxels_spanning_fewer_planes(stack, method):
    image, _ = stack
    isotropic = run_to_end(run_preseg(image, _volume(method, (1.0, 1.0, 1.0)))).labels
    coarse = run_to_end(run_preseg(image, _volume(method, (4.0, 1.0, 1.0)))).labels
    assert _planes_per_label(coarse) < 0.8 * _planes_per_label(isotropic)


@pytest.mark.parametrize("method", sorted(VOLUME_METHODS))
def test_only_the_ratios_of_the_spacing_matter(stack, method):
    image, _ = stack
    pixels = run_to_end(run_preseg(image, _volume(method, (3.0, 1.0, 1.0)))).labels
    micrometres = run_to_end(run_preseg(image, _volume(method, (0.6, 0.2, 0.2)))).labels
    np.testing.assert_array_equal(pixels, micrometres)


def test_planes_mode_is_unchanged_and_the_default(stack):
    image, _ = stack
    assert PresegParams().stack_mode == "planes"
    labels = run_to_end(run_preseg(image, PresegParams(method="slic", n_segments=20))).labels
    assert _planes_per_label(labels) == 1.0


def test_a_single_plane_in_volume_mode_is_segmented_as_a_plane(stack):
    image, _ = stack
    labels = run_to_end(run_preseg(image[8], _volume("slic"))).labels
    assert labels.shape == image.shape[1:3] and labels.max() > 1


@pytest.mark.parametrize("method", sorted(set(PRESEG_METHODS) - set(VOLUME_METHODS)))
def test_plane_only_methods_refuse_volume_mode_in_one_sentence(stack, method):
    image, _ = stack
    with pytest.raises(InputError) as caught:
        run_to_end(run_preseg(image, _volume(method)))
    message = str(caught.value)
    assert "one plane at a time" in message and "slic or watershed" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_felzenszwalb_volume_mode_names_the_method(stack):
    image, _ = stack
    with pytest.raises(InputError, match="^Felzenszwalb segments one plane at a time"):
        run_to_end(run_preseg(image, _volume("felzenszwalb")))


def test_a_spacing_of_zero_is_refused_in_plain_words(stack):
    image, _ = stack
    with pytest.raises(InputError, match="spacing_z"):
        run_to_end(run_preseg(image, _volume("slic", (0.0, 1.0, 1.0))))


def test_volume_mode_memory_estimate_counts_the_whole_volume():
    params = PresegParams(method="slic")
    shape = (16, 64, 64, 1)
    planes = estimate_memory(shape, np.dtype(np.float32), params)
    volume = estimate_memory(shape, np.dtype(np.float32),
                             dataclasses.replace(params, stack_mode="volume"))
    assert volume > planes + 15 * 64 * 64 * 40
