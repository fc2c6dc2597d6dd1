"""Backprop on images over the memory budget: training on the shrunk image, calibrated
statistics, tiled labelling without seams."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unsupseg.core.backprop import default_params
from napari_unsupseg.core.backprop.large import _tiles, needs_crops, plan, segment_large
from napari_unsupseg.core.base.engine import RunControl, run_to_end
from napari_unsupseg.core.review.scores import hungarian_iou
from napari_unsupseg.core.samples import mosaic

pytest.importorskip("torch")

#: A budget far below what whole-image training of a 160^2 image needs (~90 MB).
TINY = {"memory_budget_mb": 64, "crop_size": 48, "tile_size": 64}


@pytest.fixture(scope="module")
def scene():
    return mosaic(160, n_regions=5, noise=0.1, seed=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kmeans_baseline(image: np.ndarray, k: int) -> np.ndarray:
    """Pixel colours clustered into k groups: what the vote starts from without a network."""
    from scipy.cluster.vq import kmeans2

    pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
    _, labels = kmeans2(pixels, k, seed=0, minit="++")
    return labels.reshape(image.shape[:2]) + 1


def test_crop_training_recovers_the_mosaic_beyond_the_budget(scene):
    image, truth = scene
    params = default_params(n_labels=5, max_iter=24, **TINY)
    assert needs_crops(image.shape, params)
    layout = plan(image.shape, params)
    assert layout.crop == 48 and layout.tile == 64 and layout.train_pixels >= 4096
    result = run_to_end(segment_large(image, params))
    labels = result.labels
    assert labels.shape == truth.shape and labels.dtype == np.uint16
    assert result.metadata["mode"] == "crops" and result.metadata["tiles"] == 9
    assert set(np.unique(labels)) == set(range(1, int(labels.max()) + 1))
    found = hungarian_iou(labels, truth)
    baseline = hungarian_iou(_kmeans_baseline(image, 5), truth)
    assert found >= baseline + 0.1, (found, baseline)
    assert found >= 0.8


def test_tiles_agree_with_one_whole_pass_and_show_no_seam(scene):
    image, _ = scene
    # The same training size under both budgets: only the tiling differs.
    common = {**TINY, "max_iter": 12, "patience": 0, "train_pixels": 4096}
    for superpixels in ("none", "auto"):
        tiled = run_to_end(segment_large(image, default_params(superpixels=superpixels,
                                                               **common)))
        roomy = {**common, "tile_size": 512, "memory_budget_mb": 1024}
        whole = run_to_end(segment_large(image, default_params(superpixels=superpixels, **roomy)))
        assert tiled.metadata["tiles"] == 9 and whole.metadata["tiles"] == 1
        a, b = tiled.labels, whole.labels
        borders = sorted({s.start for core in _tiles(a.shape, 64) for s in core} - {0})
        if superpixels == "none":
            # The same trained network, a per-pixel function once calibrated: identical.
            np.testing.assert_array_equal(a, b)
            continue
        # Superpixels differ a little between tilings; no line of changes along a border.
        assert (a == b).mean() > 0.97
        changes = np.abs(np.diff(a.astype(int), axis=1)) > 0
        rate_at_borders = changes[:, [x - 1 for x in borders]].mean()
        assert rate_at_borders <= 2 * changes.mean() + 0.02


def test_superpixel_ids_are_unique_across_tiles(scene):
    image, _ = scene
    result = run_to_end(segment_large(image, default_params(max_iter=4, **TINY)))
    superpixels = result.extras["superpixels"]
    assert superpixels.min() >= 1
    owners: dict[int, int] = {}
    for number, core in enumerate(_tiles(superpixels.shape, 64)):
        for value in np.unique(superpixels[core]):
            assert owners.setdefault(int(value), number) == number


def test_finishing_early_still_labels_the_whole_image(scene):
    image, _ = scene
    control = RunControl()
    run = segment_large(image, default_params(max_iter=200, **TINY), control=control)
    next(run)  # the crops are ready
    control.request_stop()
    result = run_to_end(run)
    assert result.metadata["stopped_early"] is True
    assert result.metadata["iterations"][0] <= 2
    assert result.labels.shape == image.shape[:2] and result.labels.min() >= 1


def test_small_images_stay_on_the_whole_image_path():
    params = default_params()
    assert not needs_crops((1000, 1000, 4), params)  # 1 MP: one full-size pass fits
    assert not needs_crops((1500, 1500, 4), params)
    # A 4 MP image's full-size pass (3.7-4.2 GB measured) and the runtime do not fit 4 GB.
    assert needs_crops((2048, 2048, 4), params)
    assert needs_crops((10_000, 10_000, 4), params)
    assert needs_crops((1500, 1500, 4), default_params(train_pixels=None))


def test_segment_hands_an_image_over_the_budget_to_the_crop_engine(scene):
    from napari_unsupseg.core.backprop import segment

    image, truth = scene
    result = run_to_end(segment(image, default_params(max_iter=6, **TINY)))
    assert result.metadata["mode"] == "crops" and result.labels.shape == truth.shape
    roomy = {**TINY, "memory_budget_mb": 512}  # the runtime and a 40^2 image fit in it
    small = run_to_end(segment(image[:40, :40], default_params(max_iter=2, **roomy)))
    assert "mode" not in small.metadata  # under the budget: the whole-image engine


def test_cli_budget_options_reach_the_crop_engine(scene, tmp_path):
    import json

    import tifffile

    from napari_unsupseg.cli import main

    image, truth = scene
    source = tmp_path / "scene.tif"
    tifffile.imwrite(source, (image * 65535).astype(np.uint16))
    out = tmp_path / "labels.tif"
    assert main(["backprop", str(source), "-o", str(out), "--quiet", "--max-iter", "4",
                 "--memory-budget-mb", "64", "--crop-size", "48", "--tile-size", "64"]) == 0
    assert tifffile.imread(out).shape == truth.shape
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["mode"] == "crops" and meta["tiles"] == 9


def test_the_large_path_finds_the_whole_image_engines_regions():
    """Both paths train on the same shrunk copy; the large one labels with calibrated
    statistics tile by tile. Crops of 48 px each show a few of the regions, so statistics
    averaged crop by crop (not pooled) would label differently from the full-size pass."""
    from napari_unsupseg.core.backprop import segment
    from napari_unsupseg.core.samples.synthetic import textured_mosaic

    image, truth = textured_mosaic(240, n_regions=6, seed=3)
    common = {"max_iter": 24, "train_pixels": 8000}
    whole = run_to_end(segment(image, default_params(**common)))
    tiles = {"memory_budget_mb": 1024, "crop_size": 48, "tile_size": 64}  # 16 tiles
    large = run_to_end(segment_large(image, default_params(**common, **tiles)))
    assert large.metadata["iterations"] == whole.metadata["iterations"]  # the same training
    assert large.metadata["tiles"] == 16
    assert hungarian_iou(large.labels, whole.labels) >= 0.85
    assert abs(hungarian_iou(large.labels, truth) - hungarian_iou(whole.labels, truth)) <= 0.03


def test_the_large_path_joins_regions_across_weak_edges_as_the_whole_engine_does(scene):
    """Its last step, made band by band, is the whole-plane join on its labels (the same
    partition); with a threshold that joins some regions of the noisy mosaic."""
    from napari_unsupseg.core.backprop.boundaries import smoothed_colour
    from napari_unsupseg.core.backprop.large import _Normaliser
    from napari_unsupseg.core.backprop.weak_edges import join_weak_edges

    image, _ = scene
    params = default_params(max_iter=6, **TINY)
    joined = run_to_end(segment_large(image, default_params(max_iter=6, weak_edges=0.2,
                                                            **TINY))).labels
    unjoined = run_to_end(segment_large(image, default_params(max_iter=6, weak_edges=0,
                                                              **TINY))).labels
    colour = smoothed_colour(_Normaliser(image[np.newaxis], params)(image)[np.newaxis])[0]
    expected = join_weak_edges(unjoined, colour, 0.2)
    assert len(np.unique(expected)) < len(np.unique(unjoined))
    pairs = np.unique(np.stack([joined.ravel(), expected.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(joined)) == len(np.unique(expected))


def test_what_the_large_path_cannot_do_is_said_not_dropped(scene):
    image, _ = scene
    messages: list[str] = []
    params = default_params(max_iter=2, restarts=2, merge_threshold=2.5, **TINY)
    result = run_to_end(segment_large(image, params),
                        lambda event: messages.append(event.message or ""))
    assert result.metadata["not_applied"] == ["restarts", "merge_threshold"]
    assert any("without restarts or merge_threshold" in text for text in messages)
    plain = run_to_end(segment_large(image, default_params(max_iter=2, **TINY)))
    assert plain.metadata["not_applied"] == []


def test_the_large_path_cuts_grey_labels_at_one_level_in_every_tile(scene):
    """On a single-channel image each network label is cut at the two-class level read off
    the shrunk training copy, the same level in every tile: the cut labels refine the uncut
    ones, and each lies wholly on one side of that level."""
    from napari_unsupseg.core.backprop.boundaries import smoothed_colour, two_class_level
    from napari_unsupseg.core.backprop.large import _Normaliser, plan
    from napari_unsupseg.core.backprop.superpixels import training_planes

    grey = scene[0].mean(axis=-1, keepdims=True)
    settings = dict(max_iter=6, place_outlines="off", weak_edges=0, **TINY)
    cut = run_to_end(segment_large(grey, default_params(level_split="auto", **settings))).labels
    uncut = run_to_end(segment_large(grey, default_params(level_split="off", **settings))).labels
    pairs = np.unique(np.stack([cut.ravel(), uncut.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(cut)) > len(np.unique(uncut))  # a refinement

    params = default_params(**settings)
    normalise = _Normaliser(grey[np.newaxis], params)
    small, _ = training_planes(grey[np.newaxis], params, normalise,
                               pixels=plan(grey[np.newaxis].shape, params, 8).train_pixels)
    level = two_class_level(small[0])
    brightness = smoothed_colour(normalise(grey)[np.newaxis])[0, ..., 0]
    for label in np.unique(cut):
        above = brightness[cut == label] > level
        assert above.all() or not above.any(), label
