"""The backprop segmenter's last steps: regions joined across weak edges, and on
single-channel images labels cut at the two-class level and outlines placed by colour."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core.backprop import BackpropParams, default_params
from napari_unsupseg.core.backprop.boundaries import smoothed_colour
from napari_unsupseg.core.backprop.params import level_split, outlines_placed
from napari_unsupseg.core.backprop.weak_edges import colour_edges, join_weak_edges


def _shaded_square() -> tuple[np.ndarray, np.ndarray]:
    """(grey plane (64, 96, 1) in [0, 1], labels): a left-to-right shading with no edge,
    split by the labels into two classes at x = 40, and a bright square (a real edge)
    with a class of its own."""
    plane = np.tile(np.linspace(0.2, 0.5, 96, dtype=np.float32), (64, 1))[..., None]
    plane[20:44, 60:84] = 0.95
    labels = np.zeros((64, 96), np.int64)
    labels[:, 40:] = 1
    labels[20:44, 60:84] = 2
    return smoothed_colour(plane[None])[0], labels


def test_a_shading_split_in_two_becomes_one_region_and_a_real_edge_stays():
    colour, labels = _shaded_square()
    joined = join_weak_edges(labels, colour, threshold=0.03)
    assert set(np.unique(joined)) == {1, 2}  # the larger shaded half's label wins
    assert (joined[labels != 2] == 1).all()
    assert (joined[labels == 2] == 2).all()


def test_joining_keeps_label_ids_and_classes_across_regions():
    """Two separate square regions of one class stay that class: ids are kept, not renumbered."""
    colour, labels = _shaded_square()
    labels[2:10, 2:10] = 2  # a second region of class 2, on the shading (weak edge)
    joined = join_weak_edges(labels, colour, threshold=0.03)
    assert joined.dtype == labels.dtype
    assert (joined[2:10, 2:10] == 1).all()  # no edge in the image: it joins its surround
    assert (joined[20:44, 60:84] == 2).all()
    assert join_weak_edges(labels, colour, threshold=0.0).tolist() == labels.tolist()


def test_edges_are_on_one_scale_for_grey_and_colour():
    colour, _ = _shaded_square()
    grey = colour_edges(colour)
    rgb = colour_edges(np.repeat(colour, 3, axis=-1))
    assert np.allclose(grey, rgb, atol=1e-6)


@pytest.mark.parametrize("name, applies", [("place_outlines", outlines_placed),
                                           ("level_split", level_split)])
def test_a_grey_only_step_is_on_for_single_channel_images_only_by_default(name, applies):
    """Outline placement and the cut at the two-class level: 'auto' is on for one channel."""
    params = BackpropParams()
    assert applies(params, 1) and not applies(params, 3)
    assert applies(default_params(**{name: "on"}), 3)
    assert not applies(default_params(**{name: "off"}), 1)


def test_single_channel_intensities_are_square_rooted_by_default():
    from napari_unsupseg.core.backprop.params import stabilise_intensities, stabilised

    params = BackpropParams()
    assert stabilised(params, 1) and not stabilised(params, 3)
    assert stabilised(default_params(stabilise="on"), 3)
    assert not stabilised(default_params(stabilise="off"), 1)
    grey = np.linspace(0.0, 1.0, 11, dtype=np.float32).reshape(1, 11, 1)
    np.testing.assert_allclose(stabilise_intensities(grey.copy(), params), np.sqrt(grey))
    rgb = np.repeat(grey, 3, axis=-1)
    assert np.array_equal(stabilise_intensities(rgb.copy(), params), rgb)


def _blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(grey plane (120, 90, 1) in [0, 1]: a shading, three brighter blobs and noise;
    labels (120, 90): five classes of random blobs, regions winding across many rows)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(5, 120, 90)), (0, 6, 6))
    labels = field.argmax(axis=0)
    yy, xx = np.mgrid[:120, :90]
    plane = 0.2 + 0.3 * xx / 90 + 0.01 * rng.normal(size=(120, 90))
    for cy, cx in rng.integers(15, 75, (3, 2)):
        plane[np.hypot(yy - cy, xx - cx) < 10] += 0.4
    return plane.astype(np.float32)[..., None], labels


def _rows_of(plane: np.ndarray):
    return lambda start, stop: plane[start:stop]


def test_joining_band_by_band_is_joining_the_whole_plane():
    """The large-image path's form: bands of 7, 16 and 50 rows (regions cut by several band
    borders, joined through rows below) give the whole plane's result, pixel for pixel."""
    from napari_unsupseg.core.backprop.weak_edges import join_weak_edges_by_bands

    for seed in range(3):
        plane, labels = _blobs(seed)
        whole = join_weak_edges(labels, smoothed_colour(plane[None])[0], threshold=0.03)
        read = _rows_of(plane)
        assert (whole != labels).any()  # some regions were joined
        for rows in (7, 16, 50):
            banded = labels.copy()
            join_weak_edges_by_bands(banded, read, 0.03, rows)
            assert np.array_equal(banded, whole), (seed, rows)
        untouched = labels.copy()
        join_weak_edges_by_bands(untouched, read, 0.0, 16)
        assert np.array_equal(untouched, labels)


def _dim_and_glow() -> tuple[np.ndarray, np.ndarray]:
    """(grey plane (80, 80, 1): a dark field, one bright disc in a wide glow, two dim discs;
    labels: the field 0, the bright disc 2, and one label 1 for the glow and the dim discs
    together, as a network trained on a shrunk copy often gives them)."""
    yy, xx = np.mgrid[:80, :80]
    plane = np.full((80, 80), 0.05, np.float32)
    ring = np.hypot(yy - 40, xx - 20)
    plane[ring < 16] = 0.25  # the glow
    plane[ring < 8] = 0.95
    dim = (np.hypot(yy - 20, xx - 60) < 7) | (np.hypot(yy - 60, xx - 60) < 7)
    plane[dim] = 0.6
    labels = np.zeros((80, 80), np.int64)
    labels[(ring < 16) | dim] = 1
    labels[ring < 8] = 2
    return plane[..., None], labels


def test_the_two_class_level_cuts_dim_objects_out_of_the_glow_that_shares_their_label():
    from scipy import ndimage as ndi

    from napari_unsupseg.core.backprop.boundaries import split_at_levels, two_class_level

    plane, labels = _dim_and_glow()
    level = two_class_level(plane)
    assert 0.25 < level < 0.6
    cut = split_at_levels(labels[None], smoothed_colour(plane[None]), np.array([level]))[0]
    # Beyond the smoothing's reach of an edge, the dim discs and the glow part company.
    dim = ndi.binary_erosion(plane[..., 0] == 0.6, iterations=3)
    glow = ndi.binary_erosion(plane[..., 0] == 0.25, iterations=3)
    assert len(np.unique(cut[dim])) == 1 and len(np.unique(cut[glow])) == 1
    assert np.unique(cut[dim]) != np.unique(cut[glow])
    # Each label's pixels stay within that label's two halves: 2k and 2k + 1.
    assert set(np.unique(cut // 2)) == {0, 1, 2}
    assert np.array_equal(cut // 2, labels)


def test_a_flat_plane_has_nothing_above_its_level():
    from napari_unsupseg.core.backprop.boundaries import two_class_level

    flat = np.full((10, 12, 1), 0.3, np.float32)
    assert not (flat > two_class_level(flat)).any()



def test_the_two_class_level_leaves_pixels_without_data_out():
    """A wide nodata area and the data would be the two classes; without it, the level
    parts the bright objects from their background."""
    from napari_unsupseg.core.backprop.boundaries import two_class_level

    plane = np.full((60, 100, 1), 0.3, np.float32)
    plane[:, :60] = 0.0  # no data
    plane[20:40, 70:90] = 0.8
    nodata = np.zeros((60, 100), bool)
    nodata[:, :60] = True
    assert two_class_level(plane) < 0.3
    assert 0.3 < two_class_level(plane, nodata) < 0.8
    assert not (plane > two_class_level(plane, np.ones((60, 100), bool))).any()
