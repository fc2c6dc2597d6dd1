"""Quality of the backprop segmenter's consensus and statistics merge (``restarts=4``,
``merge_threshold=2.5``): the worst of three seeds, and their spread.

Those were the defaults until they were measured on real images: there one run without
a merge scores higher (BSDS500 photographs, DSB2018 nuclei; ``benchmarks/bench_real.py``)
and the defaults changed (``tests/core/test_real_images.py`` holds them to it). These
synthetic scenes, which the settings were chosen on, keep them working as options.
Images come from :mod:`napari_unsupseg.core.samples.synthetic` with generator seeds that were
not used while choosing the defaults (``HELD_OUT_SEEDS``). The consensus and the final
merge are also tested on their own, on tiny hand-made cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core.backprop import BackpropParams, segment
from napari_unsupseg.core.backprop.boundaries import FINAL_ROUNDS, smoothed_colour
from napari_unsupseg.core.backprop.consensus import absorb_rare, intersect, restart_seed
from napari_unsupseg.core.backprop.merge import (
    _Looks,
    _merge_closest,
    absorb_thin,
    merge_by_statistics,
    place_boundaries,
)
from napari_unsupseg.core.base.engine import run_to_end
from napari_unsupseg.core.review.scores import foreground_iou, hungarian_iou
from napari_unsupseg.core.samples import synthetic

SEEDS = (0, 1, 2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: The settings under test (the former defaults, from before the square root of
#: single-channel intensities: the merge's 2.5 standard deviations were chosen on the
#: linear scale, and on it they stay).
CONSENSUS = {"restarts": 4, "merge_threshold": 2.5, "stabilise": "off"}


def _labels(image: np.ndarray, seed: int) -> np.ndarray:
    return run_to_end(segment(image, BackpropParams(seed=seed, **CONSENSUS))).labels


def test_textured_mosaic_worst_of_three_seeds():
    """7 regions (flat, stripes, checker, dots, blotches, noise), no n_labels given.

    The former defaults (one run, no merge, coarse superpixels) gave the light and
    dark parts of textured regions two labels: 0.78-0.85 mIoU here, 9-11 labels."""
    image, truth = synthetic.textured_mosaic(128, seed=synthetic.HELD_OUT_SEEDS[0])
    n_true = int(truth.max())
    scores, counts = [], []
    for seed in SEEDS:
        labels = _labels(image, seed)
        scores.append(hungarian_iou(labels, truth))
        counts.append(len(np.unique(labels)))
    assert min(scores) >= 0.9, scores
    assert max(scores) - min(scores) <= 0.03, scores
    # The number of regions is decided by the merge: the true count, give or take one.
    assert all(abs(count - n_true) <= 1 for count in counts), counts


@pytest.mark.parametrize(("held_out", "bits"), [(4, 8), (4, 16), (0, 16)])
def test_nuclei_foreground_worst_of_three_seeds(held_out, bits):
    """Blobs of varied size and brightness on a dark, noisy, unevenly lit background.

    The former defaults' coarse superpixels (64 pixels at least) swallowed the small,
    dim nuclei and leaked around the others: foreground IoU 0.50-0.52 on the first
    image. With the outlines left where the runs drew them (no placement by colour,
    one merge pass) its seeds differed by 0.065 (16-bit) and 0.069 (8-bit) in which
    rims and bridges between nuclei counted as foreground. On the second (16-bit),
    small nuclei that the runs had set apart went to the background in one seed's
    result (absorbed as slivers, or with the rims of larger ones): spread 0.077."""
    image, truth = synthetic.nuclei(
        128, seed=synthetic.HELD_OUT_SEEDS[held_out], bits=bits
    )
    assert image.dtype == (np.uint8 if bits == 8 else np.uint16)
    scores = [foreground_iou(_labels(image, seed), truth) for seed in SEEDS]
    assert min(scores) >= 0.75, scores
    assert max(scores) - min(scores) <= 0.03, scores


def test_intersection_keeps_every_split():
    a = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    b = np.array([[5, 7, 7, 7], [5, 7, 7, 7]])
    both = intersect([a, b])
    # Three groups: (0,5), (0,7), (1,7); pixels share an id only if both maps agree.
    assert len(np.unique(both)) == 3
    assert both[0, 0] == both[1, 0] != both[0, 1] == both[1, 1] != both[0, 2]
    assert restart_seed(3, 0) == 3 and restart_seed(3, 1) != restart_seed(4, 0)


def test_rare_labels_go_to_their_neighbours():
    labels = np.zeros((1, 20, 20), np.int64)
    labels[0, :, 10:] = 1
    labels[0, 5, 3] = 2  # one stray pixel
    out = absorb_rare(labels, 0.01)
    assert len(np.unique(out)) == 2 and out[0, 5, 3] == out[0, 0, 0]


def test_statistics_merge_joins_texture_halves_and_keeps_colours_apart():
    rng = np.random.default_rng(0)
    plane = np.zeros((64, 64, 1), np.float32)
    stripes = (np.arange(64) // 2) % 2  # 2-pixel stripes in the left half
    plane[:, :32, 0] = 0.3 + 0.3 * stripes[None, :32]
    plane[:, 32:, 0] = 0.9
    plane += rng.normal(0, 0.02, plane.shape).astype(np.float32)
    labels = np.where(np.arange(64)[None, :] < 32, stripes[None, :], 2).repeat(64, 0)
    merged = merge_by_statistics(labels[None], plane[None])[0]
    # The light and dark stripes become one region; the bright flat half stays apart.
    # (The light stripe column touching the bright half, blurred towards it, may join
    # it: the boundaries are placed by colour.)
    assert len(np.unique(merged[:, :31])) == 1
    assert merged[0, 0] != merged[0, 40]
    assert len(np.unique(merge_by_statistics(labels[None], plane[None], n_labels=1))) == 1


def test_thin_rims_go_to_the_regions_on_either_side():
    labels = np.zeros((1, 40, 40), np.int64)
    yy, xx = np.mgrid[:40, :40]
    radius = np.hypot(yy - 20, xx - 20)
    labels[0][radius < 12] = 1
    labels[0][(radius >= 10) & (radius < 12)] = 2  # a 2-pixel rim around the disc
    out = absorb_thin(labels)[0]
    assert len(np.unique(out)) == 2
    assert out[20, 20] != out[0, 0]


@pytest.mark.parametrize(("reach", "rounds"), [(13, 2), (16, FINAL_ROUNDS)])
def test_boundaries_are_placed_half_way_in_colour(reach, rounds):
    """A blurred disc of radius 10 whose label reaches out to ``reach`` (a rim kept with
    it): the outline moves back to the blurred edge's mid-point, the true radius. Six
    pixels off is more than one round's band reaches: the segmenter's last step, with its
    more rounds, walks it back band by band."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:64, :64]
    radius = np.hypot(yy - 32, xx - 32)
    disc = radius < 10
    plane = ndi.gaussian_filter(np.where(disc, 0.9, 0.1), 1.2)[None, ..., None]
    too_wide = (radius < reach).astype(np.int64)[None]
    placed = place_boundaries(too_wide, smoothed_colour(plane), rounds)[0]
    inside = placed == placed[32, 32]
    assert (inside ^ disc).sum() <= 0.05 * disc.sum(), (inside ^ disc).sum()
    assert (too_wide[0].astype(bool) ^ disc).sum() > 0.5 * disc.sum()  # it was far off


def test_placed_boundaries_can_keep_the_ids_they_were_given():
    """Classes numbered across tiles keep their numbers; a class that a round absorbs goes."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:48, :48]
    disc = np.hypot(yy - 24, xx - 24) < 9
    plane = ndi.gaussian_filter(np.where(disc, 0.9, 0.1), 1.0)[None, ..., None]
    labels = np.where(np.hypot(yy - 24, xx - 24) < 12, 7, 3)[None]
    labels[0, 0, 0] = 11  # one pixel: it has no interior of its own
    placed = place_boundaries(labels, smoothed_colour(plane), FINAL_ROUNDS, keep_ids=True)[0]
    assert set(np.unique(placed)) == {3, 7}
    assert ((placed == 7) ^ disc).sum() <= 0.05 * disc.sum()


def test_a_small_region_that_every_run_set_apart_is_no_sliver():
    """A disc of ~50 pixels, rarer than the threshold, stays; a 1-pixel line goes."""
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int64)
    labels[np.hypot(yy - 40, xx - 40) < 4] = 1
    labels[10, 5:35] = 2
    out = absorb_rare(labels, min_fraction=0.05)
    assert len(np.unique(out)) == 2
    assert out[40, 40] != out[0, 0]
    assert out[10, 20] == out[0, 0]


def test_a_thin_label_keeps_its_islands():
    """One label holds the rim of a large disc and a small disc on its own in the
    background: the rim is shared out, the small disc (enclosed by one label) stays."""
    yy, xx = np.mgrid[:64, :64]
    big, small = np.hypot(yy - 20, xx - 20), np.hypot(yy - 48, xx - 48)
    labels = np.zeros((1, 64, 64), np.int64)
    labels[0][big < 12] = 1
    labels[0][((big >= 10) & (big < 12)) | (small < 4.5)] = 2
    out = absorb_thin(labels)[0]
    assert len(np.unique(out)) == 3
    assert out[48, 48] not in (out[0, 63], out[20, 20])
    assert out[20, 31] in (out[0, 63], out[20, 20])  # the rim


def test_labels_alike_in_texture_join_only_if_mixed():
    """Same local statistics, different colours: interleaved stripes (the light and dark
    parts of one texture) are joined; two halves side by side are not."""
    rng = np.random.default_rng(0)
    features = 0.5 + 0.01 * rng.standard_normal((1, 32, 64, 2)).astype(np.float32)
    halves = (np.arange(64)[None, None, :] >= 32).repeat(32, 1).astype(np.int64)
    stripes = (np.arange(64)[None, None, :] % 2).repeat(32, 1).astype(np.int64)
    for labels, joined in ((stripes, True), (halves, False)):
        colour = np.where(labels == 1, 0.8, 0.2)[..., None].astype(np.float32)
        colour += 0.01 * rng.standard_normal(colour.shape).astype(np.float32)
        looks = _Looks(texture=features, coarse=features, colour=colour, scale=2.0)
        out = _merge_closest(labels, looks, 2.5, 1)
        assert (len(np.unique(out)) == 1) == joined
