"""Labels stitched across block borders: superpixels and objects that cross a border are
one label, in 2-D blocks and in 3-D blocks of a volume, measured against a one-block
run on the pixel pairs that straddle the borders."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from _volumes import ellipsoids, fluorescence  # noqa: E402
from _zarr import write_store  # noqa: E402

from napari_unsupseg.core.base import omezarr  # noqa: E402
from napari_unsupseg.core.base.engine import drive  # noqa: E402
from napari_unsupseg.core.base.stitch import match_labels, stitch_block  # noqa: E402
from napari_unsupseg.core.predict import PredictParams, blocks  # noqa: E402
from napari_unsupseg.core.preseg import PRESEG_METHODS, PresegParams, method_kwargs  # noqa: E402

VOLUME_SCALE = {"c": 1.0, "z": 3.0, "y": 1.0, "x": 1.0}


def threshold_model():
    """A 'model' that calls every pixel brighter than half the range an object (label 1)
    and the rest background (label 0)."""
    import torch

    from napari_unsupseg.core.models import ModelConfig
    from napari_unsupseg.core.models.checkpoints import LoadedModel

    class Threshold(torch.nn.Module):
        in_channels = 1

        def forward(self, x):
            return torch.cat([0.5 - x, x - 0.5], dim=1) * 50.0

    config = ModelConfig("threshold", 2, in_channels=1, mean=[0.0], std=[1.0],
                         background=True, object_class=1, intensity="dtype",
                         class_names=["background", "object"])
    return LoadedModel(Threshold().eval(), config)


def blob_plane(size: int = 192, seed: int = 0) -> np.ndarray:
    """A (c, z, y, x) uint16 plane of smooth blobs (as the benchmark's), regions to
    segment that cross block borders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    plane = np.sin(xx / 9) * np.cos(yy / 11) + 0.05 * rng.standard_normal((size, size))
    return ((plane + 1.5) * 20000).clip(0, 65535).astype(np.uint16)[None, None]


def test_match_labels_is_one_to_one_by_iou_and_never_matches_background():
    written = np.array([1, 1, 1, 1, 2, 2, 0, 0, 3, 3])
    new = np.array([7, 7, 7, 8, 8, 8, 0, 0, 9, 5])
    # 7 ~ 1 (IoU 3/4); 8 overlaps 1 and 2 (IoU 1/4, 2/3 with 2); 9 and 5 halve 3 (1/2 each).
    matches = match_labels(new, written)
    assert matches[7] == 1 and matches[8] == 2
    assert sorted(v for k, v in matches.items() if k in (5, 9)) == [3]  # one of them only
    assert 0 not in matches and 0 not in matches.values()
    assert match_labels(new, written, min_iou=0.7) == {7: 1}


def test_stitch_block_keeps_written_ids_and_numbers_the_rest():
    labels = np.array([[4, 4, 6], [4, 0, 6]])
    written = np.array([[9, 9, 0], [9, 0, 0]])
    overlap = np.array([[True, True, False], [True, True, False]])
    core, next_id = stitch_block(labels, written, overlap, (slice(None), slice(1, 3)), 20)
    np.testing.assert_array_equal(core, [[9, 20], [0, 20]])
    assert next_id == 21


def _superpixels(tmp_path, stitch: bool, margin: int):
    image = omezarr.open_omezarr(write_store(tmp_path / f"b{stitch}{margin}.zarr",
                                             blob_plane()))
    params = PresegParams(n_segments=576)  # seeds every 8 px
    target = omezarr.create_labels(image, "superpixels", np.uint32)
    result = drive(blocks.run_blocks(image, "preseg", params, target, block=64,
                                     margin=margin, stitch=stitch))
    low, high = blocks.preseg_range(image, params)
    plane = blocks.scale_block(omezarr.read_block(image, (0,), slice(None), slice(None)),
                               low, high)
    whole = PRESEG_METHODS["slic"](plane, **method_kwargs(params))
    plan = blocks.plan_blocks(image.plane_size, 64, margin)
    return np.asarray(target.levels[0][0]), whole, plan, result


def test_stitched_superpixels_agree_with_a_whole_plane_run_across_borders(tmp_path):
    loose, whole, plan, _ = _superpixels(tmp_path, False, 64)
    stitched, _, _, result = _superpixels(tmp_path, True, 64)
    whole_split = blocks.border_pairs_split(whole, plan)
    assert blocks.border_pairs_split(loose, plan) == 1.0
    assert abs(blocks.border_pairs_split(stitched, plan) - whole_split) < 0.05
    cut = blocks.border_pair_agreement(loose, whole, plan)
    joined = blocks.border_pair_agreement(stitched, whole, plan)
    assert cut == pytest.approx(whole_split)  # only the whole run's own cuts agree
    assert joined >= 0.97 and joined > cut + 0.5
    # undoing the joins gives the run without stitching
    undone = blocks.cut_at_cores(stitched, plan)
    assert blocks.border_pair_agreement(undone, whole, plan) == cut
    pairs = np.unique(np.stack([undone.ravel(), loose.ravel().astype(np.uint64)]), axis=1)
    assert pairs.shape[1] == len(np.unique(undone)) == len(np.unique(loose))  # one to one
    # ids stay unique and 1..n; labels continued across borders counted
    assert result.metadata["n_labels"] == stitched.max() == len(np.unique(stitched))
    assert result.metadata["stitched"]["labels_continued"] > 0


def _discs(size: int, discs: list[tuple[int, int, int]]) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    truth = np.zeros((size, size), np.uint16)
    for number, (cy, cx, r) in enumerate(discs, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = number
    return truth


def _iou_with(found: np.ndarray, truth: np.ndarray, value: int) -> float:
    ids, counts = np.unique(found[truth == value], return_counts=True)
    best = ids[np.argmax(counts)]
    return float(((found == best) & (truth == value)).sum()
                 / ((found == best) | (truth == value)).sum())


@pytest.mark.parametrize("stitch", [True, False])
def test_objects_crossing_block_borders_are_one_label(tmp_path, stitch):
    # two discs on corners of four blocks (cores of 48 px), one inside a block
    truth = _discs(144, [(48, 48, 14), (96, 48, 10), (118, 118, 8)])
    data = (truth > 0).astype(np.uint16)[None, None] * 50000 + 1000
    image = omezarr.open_omezarr(write_store(tmp_path / "discs.zarr", data))
    classes = omezarr.create_labels(image, "classes", np.uint8)
    objects = omezarr.create_labels(image, "objects", np.uint32)
    params = PredictParams(tile_size=96, overlap=16, intensity="percentile")
    result = drive(blocks.run_blocks(image, "predict", params, classes,
                                     model=threshold_model(), block=48,
                                     objects_target=objects, stitch=stitch))
    found = np.asarray(objects.levels[0][0])
    assert (np.asarray(classes.levels[0][0]) == (truth > 0)).all()
    if stitch:
        assert len(np.unique(found[found > 0])) == 3
        assert result.metadata["objects"]["count"] == 3
        assert min(_iou_with(found, truth, v) for v in (1, 2, 3)) >= 0.99
    else:  # cut at the borders: each corner disc in four pieces
        assert len(np.unique(found[found > 0])) == 4 + 4 + 1


def _ellipsoid_store(tmp_path):
    nuclei = [((12, 30, 30), (9, 12, 12)), ((24, 30, 56), (9, 10, 10)),
              ((30, 62, 34), (8, 11, 11)), ((14, 70, 70), (7, 9, 9))]
    truth = ellipsoids(nuclei, (16, 90, 90), (3.0, 1.0, 1.0))
    image = fluorescence(truth, spacing=(3.0, 1.0, 1.0))[..., 0]
    data = np.clip(image * 500, 0, 65535).astype(np.uint16)[None]
    path = write_store(tmp_path / "nuclei.zarr", data, scale=VOLUME_SCALE)
    return omezarr.open_omezarr(path), truth


def _volume_objects(image, block: int, name: str, stitch: bool = True):
    classes = omezarr.create_labels(image, f"{name}_classes", np.uint8)
    objects = omezarr.create_labels(image, name, np.uint32)
    params = PredictParams(tile_size=128, overlap=16, intensity="percentile",
                           objects_mode="volume", spacing_z=3.0)
    result = drive(blocks.run_blocks(image, "predict", params, classes,
                                     model=threshold_model(), block=block,
                                     objects_target=objects, stitch=stitch))
    return np.asarray(objects.levels[0][:]), result


def test_volume_objects_in_3d_blocks_agree_with_one_block(tmp_path):
    image, truth = _ellipsoid_store(tmp_path)
    one, single = _volume_objects(image, 96, "one")
    assert single.metadata["blocks"] == 1
    split, result = _volume_objects(image, 32, "split")
    loose, _ = _volume_objects(image, 32, "loose", stitch=False)
    assert result.metadata["segmented_as"] == "volume" and result.metadata["blocks"] > 4
    core, margin = result.metadata["block_core"], result.metadata["margin"]
    assert core[0] < 16  # blocks in z too
    plan = blocks.plan_blocks(one.shape, core, margin)
    agreement = blocks.border_pair_agreement(split, one, plan)
    assert agreement >= 0.99
    assert blocks.border_pair_agreement(loose, one, plan) < agreement - 0.01
    # the four nuclei (and the specks of noise bright enough) as in the one-block run
    assert len(np.unique(split[split > 0])) == len(np.unique(one[one > 0])) >= 4
    assert min(_iou_with(split, truth, v) for v in (1, 2, 3, 4)) >= 0.7


def test_volume_preseg_in_3d_blocks_is_stitched(tmp_path):
    image, _ = _ellipsoid_store(tmp_path)
    params = PresegParams(method="slic", n_segments=200, stack_mode="volume", spacing_z=3.0)
    runs = {}
    for name, block, stitch in (("one", 96, True), ("split", 32, True),
                                ("loose", 32, False)):
        target = omezarr.create_labels(image, name, np.uint32)
        runs[name] = drive(blocks.run_blocks(image, "preseg", params, target, block=block,
                                             margin=32, stitch=stitch))
        runs[name + "_labels"] = np.asarray(target.levels[0][:])
    assert runs["one"].metadata["blocks"] == 1
    meta = runs["split"].metadata
    assert meta["segmented_as"] == "volume" and meta["blocks"] > 4
    plan = blocks.plan_blocks(image.label_shape, meta["block_core"], meta["margin"])
    split = blocks.border_pairs_split(runs["split_labels"], plan)
    loose = blocks.border_pairs_split(runs["loose_labels"], plan)
    assert loose == 1.0 and split < 0.35
    stitched = blocks.border_pair_agreement(runs["split_labels"], runs["one_labels"], plan)
    unstitched = blocks.border_pair_agreement(runs["loose_labels"], runs["one_labels"], plan)
    assert stitched >= 0.95 and stitched > unstitched + 0.5
    assert max(meta["block_align"]) > 1  # slic's seed grid: blocks start on its steps


def test_preseg_margin_is_a_few_superpixels_unless_given():
    params = PresegParams(n_segments=1024)
    assert blocks.seed_step((2048, 2048), 1024) == 64
    assert blocks.block_geometry("preseg", params, 512, None, (2048, 2048)) == (512, 6 * 64)
    assert blocks.block_geometry("preseg", params, 512, 10, (2048, 2048)) == (512, 10)
    plan = blocks.plan_blocks((200, 200), 64, 20, align=16)
    assert all(p.extended[0].start % 16 == 0 and p.extended[1].start % 16 == 0 for p in plan)
    assert all(p.core[0].start - p.extended[0].start >= min(20, p.core[0].start) for p in plan)


def test_margin_follows_the_superpixels_real_size(tmp_path):
    """Felzenszwalb ignores n_segments: a margin of seed steps (here 24 px) is narrower
    than its superpixels and neighbouring blocks cut them differently; the margin measured
    on the image keeps the stitched run equal to a whole-plane one across the borders."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    plane = np.sin(xx / 19) * np.cos(yy / 23) + 0.1 * rng.standard_normal((256, 256))
    data = ((plane + 1.5) * 20000).clip(0, 65535).astype(np.uint16)[None, None]
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", data, "0.4"))
    params = PresegParams(method="felzenszwalb", n_segments=4000)
    low, high = blocks.preseg_range(image, params)
    whole_plane = omezarr.read_block(image, (0,), slice(None), slice(None))
    whole = PRESEG_METHODS["felzenszwalb"](blocks.scale_block(whole_plane, low, high),
                                           **method_kwargs(params))
    _, seed_margin = blocks.block_geometry("preseg", params, 64, None, (256, 256))
    agreement = {}
    for name, margin in (("measured", None), ("seed steps", seed_margin)):
        target = omezarr.create_labels(image, name.replace(" ", "-"), np.uint32)
        result = drive(blocks.run_blocks(image, "preseg", params, target, block=64,
                                         margin=margin))
        plan = blocks.plan_blocks((256, 256), 64, result.metadata["margin"],
                                  result.metadata["block_align"])
        stitched = np.asarray(target.levels[0][:]).reshape(256, 256)
        agreement[name] = blocks.border_pair_agreement(stitched, whole, plan)
    assert agreement["measured"] >= 0.99
    assert agreement["measured"] > agreement["seed steps"] + 0.05
