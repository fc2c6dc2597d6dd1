"""Objects of a z-stack split as a volume with its voxel spacing, against the plane-by-plane
split joined by overlap and the foreground's connected components."""

from __future__ import annotations

import numpy as np
import pytest
from _volumes import SPACING, ellipsoids, fluorescence, otsu_mask
from skimage.measure import label

from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.predict.objects import join_planes, separate_objects
from napari_unsupseg.core.review import compare

#: Two nuclei side by side along x, pressed into each other.
SIDE_BY_SIDE = [((24, 32, 20), (12, 12, 12)), ((24, 32, 42), (12, 12, 12))]
#: Two flattened nuclei stacked along z, touching.
STACKED = [((14, 32, 32), (9, 14, 14)), ((32, 32, 32), (9, 14, 14))]
#: Two stacked pairs side by side plus a lone one: four kinds of contact.
CLUSTER = [((14, 20, 18), (9, 11, 11)), ((32, 20, 18), (9, 11, 11)),
           ((22, 22, 39), (10, 11, 11)), ((22, 46, 40), (10, 11, 11)),
           ((24, 48, 14), (8, 9, 9))]


def test_touching_ellipsoids_are_two_objects_where_connected_parts_are_one():
    truth = ellipsoids(SIDE_BY_SIDE)
    mask = otsu_mask(fluorescence(truth, seed=1))
    found = separate_objects(mask, SPACING)
    assert found.dtype == np.uint32 and found.shape == truth.shape
    assert int(found.max()) == 2
    assert label(mask, connectivity=1).max() == 1
    assert compare(truth, found).f1 == 1.0


def test_a_nucleus_crossing_many_planes_is_one_object_not_one_per_plane():
    truth = ellipsoids([((22, 32, 32), (20, 10, 10))])
    planes_crossed = int(truth.any(axis=(1, 2)).sum())
    assert planes_crossed >= 12
    assert int(separate_objects(truth > 0, SPACING).max()) == 1
    assert int(separate_objects(truth > 0).max()) == planes_crossed  # the stack mode today
    assert int(join_planes(separate_objects(truth > 0)).max()) == 1


def test_the_voxel_spacing_splits_nuclei_stacked_along_z():
    """Planes three pixels apart: measured in voxels, flattened nuclei stacked along z have
    no neck, so isotropic distances (and joined planes) see one; the true spacing two."""
    truth = ellipsoids(STACKED)
    mask = otsu_mask(fluorescence(truth, seed=2))
    assert compare(truth, separate_objects(mask, SPACING)).f1 == 1.0
    assert int(separate_objects(mask, (1.0, 1.0, 1.0)).max()) == 1
    assert int(join_planes(separate_objects(mask)).max()) == 1


def test_only_the_ratios_of_the_spacing_matter():
    mask = ellipsoids(CLUSTER) > 0
    in_pixels = separate_objects(mask, SPACING)
    in_micrometres = separate_objects(mask, (0.6, 0.2, 0.2))
    np.testing.assert_array_equal(in_pixels, in_micrometres)


def test_volume_split_beats_joined_planes_and_connected_parts_on_a_cluster():
    truth = ellipsoids(CLUSTER)
    mask = otsu_mask(fluorescence(truth, seed=3))
    volume = compare(truth, separate_objects(mask, SPACING)).f1
    joined = compare(truth, join_planes(separate_objects(mask))).f1
    parts = compare(truth, label(mask, connectivity=1)).f1
    # Five nuclei: every one found in 3-D; joining planes merges a stacked pair (F1 8/9),
    # connected parts merge all but the lone one.
    assert volume == 1.0
    assert joined <= 0.9 and parts <= 0.6, (joined, parts)


def test_join_planes_follows_objects_one_to_one_and_numbers_them_from_one():
    stack = np.zeros((3, 8, 8), np.int64)
    stack[0, 1:4, 1:4] = 5  # continues into plane 1 ...
    stack[1, 1:4, 1:7] = 7
    stack[2, 1:4, 1:4] = 9  # ... and into the larger of the two pieces in plane 2;
    stack[2, 1:3, 5:7] = 10  # the smaller piece is an object of its own
    stack[1, 6:8, 6:8] = 8  # alone
    joined = join_planes(stack)
    assert joined.dtype == np.uint32 and joined.shape == stack.shape
    assert len(np.unique(joined[np.isin(stack, [5, 7, 9])])) == 1
    assert len(np.unique(joined[stack > 0])) == 3
    np.testing.assert_array_equal(np.unique(joined), np.arange(4))


def test_join_planes_needs_the_overlap_it_is_given():
    stack = np.zeros((2, 10, 10), np.int64)
    stack[0, 0:4, 0:10] = 1
    stack[1, 2:6, 0:10] = 2  # shares half of each
    assert int(join_planes(stack, 0.5).max()) == 1
    assert int(join_planes(stack, 0.6).max()) == 2


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (1.0, 1.0)])
def test_a_bad_spacing_is_refused_in_plain_words(spacing):
    with pytest.raises(InputError, match="voxel spacing"):
        separate_objects(np.ones((4, 8, 8), bool), spacing)


def test_masks_of_other_ranks_are_refused_in_plain_words():
    with pytest.raises(InputError, match="plane"):
        separate_objects(np.ones((2, 4, 8, 8), bool))
    with pytest.raises(InputError, match="stack"):
        join_planes(np.ones((8, 8), np.int64))


def test_objects_of_class_says_how_it_split_and_skips_what_is_too_large(monkeypatch):
    import napari_unsupseg.core.predict.objects as objects_module
    from napari_unsupseg.core.predict.objects import objects_of_class

    classes = np.where(ellipsoids(STACKED) > 0, 2, 1).astype(np.uint8)
    found, about = objects_of_class(classes, 2, SPACING)
    assert int(found.max()) == 2 and about == {"class": 2, "count": 2, "split_as": "volume"}
    found, about = objects_of_class(classes, 2)
    assert about["count"] == int(found.max()) > 2  # numbers run on from plane to plane
    monkeypatch.setattr(objects_module, "MAX_OBJECT_PIXELS", 64 * 64 * 4)  # a huge stack
    found, about = objects_of_class(classes, 2, SPACING)
    assert found is None and about["skipped"].startswith("volumes over")
    assert objects_of_class(classes, 2)[0] is not None  # its planes are small enough


def test_predict_splits_the_objects_of_a_stack_as_a_volume():
    """A model trained here on one plane of nuclei; asked for volume objects, a prediction
    on the stack gives the two stacked nuclei back, where plane by plane gives pieces."""
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.predict import PredictParams, predict
    from napari_unsupseg.core.predict.estimate import estimate_memory
    from napari_unsupseg.core.train import TrainParams, train

    truth = ellipsoids(STACKED)
    image = fluorescence(truth, seed=5)
    plane = 7  # through the lower nucleus
    painted = np.where(truth[plane] > 0, 2, 1).astype(np.uint8)
    fast = TrainParams(epochs=10, steps_per_epoch=6, batch_size=4, unet_depth=2,
                       unet_channels=8, threads=1, validation_fraction=0.0)
    model = run_to_end(train([image[plane]], [painted], fast)).model
    params = PredictParams(objects_mode="volume", spacing_z=3.0)
    out = run_to_end(predict(image, params, model=model))
    assert out.extras["objects"].shape == truth.shape
    assert out.metadata["objects"]["split_as"] == "volume"
    assert compare(truth, out.extras["objects"]).f1 == 1.0
    by_plane = run_to_end(predict(image, PredictParams(), model=model))
    assert int(by_plane.extras["objects"].max()) > 10
    assert estimate_memory(image.shape, image.dtype, params) > estimate_memory(
        image.shape, image.dtype, PredictParams())
