"""OME-Zarr in and out: axes and scales read back, labels written block by block as
OME-Zarr labels, the block-by-block result against the whole-image one, plain refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from _models import sharp_unet  # noqa: E402
from _zarr import SCALE, smooth_volume, write_store  # noqa: E402

from napari_unsupseg.core.base import omezarr  # noqa: E402
from napari_unsupseg.core.base.engine import drive  # noqa: E402
from napari_unsupseg.core.base.errors import InputError  # noqa: E402
from napari_unsupseg.core.predict import (  # noqa: E402
    PredictParams,
    blocks,  # noqa: E402
    predict,
)
from napari_unsupseg.core.preseg import PresegParams  # noqa: E402


@pytest.fixture
def volume():
    return smooth_volume()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_axes_scale_and_levels_read_back(tmp_path, volume, version):
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume, version))
    assert image.axes == ("c", "z", "y", "x")
    assert image.channel_axis == 0 and image.n_channels == 2
    assert image.voxel_scale() == SCALE
    assert image.voxel_scale(1)["x"] == SCALE["x"] * 2
    assert [lvl.shape for lvl in image.levels] == [(2, 8, 96, 96), (2, 8, 48, 48)]
    block = omezarr.read_block(image, (3,), slice(10, 20), slice(5, 40))
    np.testing.assert_array_equal(block, np.moveaxis(volume[:, 3, 10:20, 5:40], 0, -1))


def test_lower_levels_fill_with_each_block(tmp_path, volume):
    """Blocks of odd sizes and offsets: every level is level 0 taken every 2**k pixels,
    already before ``finish`` (a viewer reading the store sees the run progress)."""
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume, "0.4"))
    target = omezarr.create_labels(image, "cells", np.uint32)
    truth = np.arange(8 * 96 * 96, dtype=np.uint32).reshape(8, 96, 96) + 1
    for y0, y1 in ((0, 37), (37, 61), (61, 96)):
        for x0, x1 in ((0, 5), (5, 90), (90, 96)):
            target.write_block((slice(0, 8),), slice(y0, y1), slice(x0, x1),
                               truth[:, y0:y1, x0:x1])
    for level, array in enumerate(target.levels):
        step = 2 ** level
        np.testing.assert_array_equal(np.asarray(array[:]), truth[:, ::step, ::step])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_are_ome_zarr_labels(tmp_path, volume, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    path = write_store(tmp_path / "img.zarr", volume, version)
    image = omezarr.open_omezarr(path)
    target = omezarr.create_labels(image, "cells", np.uint16)
    for plane in image.planes():
        target.write_block(plane, slice(0, 96), slice(0, 96),
                           np.full((96, 96), plane[0] + 1, np.uint16))
    target.finish()
    nodes = list(Reader(parse_url(str(path)))())
    labels = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(labels) == 1
    assert [d.shape for d in labels[0].data] == [(8, 96, 96), (8, 48, 48)]
    assert np.asarray(labels[0].data[1][5]).max() == 6
    assert labels[0].metadata["name"] == "cells" or "cells" in str(labels[0].zarr)
    # The specification's own models accept the labels group and the labels image.
    models = pytest.importorskip("ome_zarr_models")
    import zarr

    for group in (path, path / "labels", path / "labels" / "cells"):
        models.open_ome_zarr(zarr.open_group(str(group), mode="r"))


def test_block_prediction_equals_whole_image(tmp_path, volume):
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume))
    model = sharp_unet(channels=2)
    params = PredictParams(tile_size=96, overlap=16, intensity="percentile")
    target = omezarr.create_labels(image, "classes", blocks.labels_dtype("predict", model))
    result = drive(blocks.run_blocks(image, "predict", params, target, model=model, block=48))
    target.finish()
    assert result.metadata["blocks"] > 1
    blocked = np.asarray(target.levels[0][:])
    whole = drive(predict(np.moveaxis(volume, 0, -1),
                          PredictParams(tile_size=1024, intensity="percentile"), model)).labels
    assert len(np.unique(whole)) > 1
    assert (blocked == whole).mean() >= 0.99
    plan = blocks.plan_blocks(image.plane_size, result.metadata["block_core"],
                              result.metadata["margin"])
    assert blocks.seam_agreement(blocked, whole, plan) >= 0.99


def test_block_preseg_labels_unique_across_blocks(tmp_path, volume):
    """Not stitched: each block's superpixels numbered on their own, after the others."""
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume[:, :2]))
    target = omezarr.create_labels(image, "superpixels", np.uint32)
    result = drive(blocks.run_blocks(image, "preseg", PresegParams(n_segments=100), target,
                                     block=48, stitch=False))
    labels = np.asarray(target.levels[0][:])
    assert labels.min() >= 1
    assert len(np.unique(labels)) == result.metadata["n_labels"] == labels.max()
    # No label lives in two blocks (cores of 48 px).
    for value in np.unique(labels)[:50]:
        ys, xs = np.nonzero((labels == value).any(0))
        assert len(set(ys // 48)) == 1 and len(set(xs // 48)) == 1


def test_zarr_store_without_ome_metadata_is_refused(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array(
        "0", shape=(4, 4), dtype="u1")
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        omezarr.open_omezarr(tmp_path / "plain.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not a zarr store"):
        omezarr.open_omezarr(tmp_path / "folder")


def test_existing_labels_are_kept_unless_overwrite(tmp_path, volume):
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume[:, :1]))
    target = omezarr.create_labels(image, "cells", np.uint8)
    target.write_block((0,), slice(0, 96), slice(0, 96), np.ones((96, 96), np.uint8))
    target.finish()
    with pytest.raises(InputError, match="already has labels named 'cells'"):
        omezarr.create_labels(image, "cells", np.uint8)
    assert np.asarray(target.levels[0][:]).min() == 1  # untouched
    again = omezarr.create_labels(image, "cells", np.uint8, overwrite=True)
    again.finish()
    assert omezarr.open_omezarr(image.path / "labels" / "cells").axes == ("z", "y", "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only folders")
def test_read_only_store_is_refused(tmp_path, volume):
    path = write_store(tmp_path / "img.zarr", volume[:, :1])
    image = omezarr.open_omezarr(path)
    os.chmod(path, 0o555)
    try:
        with pytest.raises(InputError, match="read-only"):
            omezarr.create_labels(image, "cells", np.uint8)
    finally:
        os.chmod(path, 0o755)


def test_read_only_location_is_refused(tmp_path, volume, monkeypatch):
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume[:, :1]))
    monkeypatch.setattr(omezarr.os, "access", lambda *args: False)
    with pytest.raises(InputError, match="read-only"):
        omezarr.create_labels(image, "cells", np.uint8)


def test_channel_axis_that_cannot_be_told_is_refused(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "odd.zarr"), mode="w")
    group.create_array("0", shape=(3, 16, 16), dtype="u1")
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "q"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1, 1, 1]}]}]}]}
    with pytest.raises(InputError, match="channel axis cannot be determined"):
        omezarr.open_omezarr(tmp_path / "odd.zarr")


def test_new_store_is_not_written_over(tmp_path, volume):
    image = omezarr.open_omezarr(write_store(tmp_path / "img.zarr", volume[:, :1]))
    target = omezarr.create_labels(image, "cells", np.uint8, store=tmp_path / "out.ome.zarr")
    target.write_block((0,), slice(0, 96), slice(0, 96), np.ones((96, 96), np.uint8))
    target.finish()
    reopened = omezarr.open_omezarr(tmp_path / "out.ome.zarr")
    assert reopened.axes == ("z", "y", "x") and reopened.voxel_scale()["x"] == SCALE["x"]
    with pytest.raises(InputError, match="already exists"):
        omezarr.create_labels(image, "cells", np.uint8, store=tmp_path / "out.ome.zarr")


def test_block_cores_cover_the_plane_once_and_seams_are_measured():
    plan = blocks.plan_blocks((100, 70), core=32, margin=8)
    cover = np.zeros((100, 70), int)
    for piece in plan:
        cover[piece.core] += 1
        (ey, _), (iy, _) = piece.extended, piece.inner
        assert ey.start == max(0, piece.core[0].start - 8)
        assert iy.stop - iy.start == piece.core[0].stop - piece.core[0].start
    assert (cover == 1).all()
    stripes = np.repeat(np.arange(100) // 32, 70).reshape(100, 70)  # one label per row of cores
    assert blocks.border_pairs_split(stripes, plan) == pytest.approx(
        3 * 70 / (3 * 70 + 2 * 100))
    assert blocks.seam_agreement(stripes, stripes, plan) == 1.0
    assert blocks.seam_agreement(stripes, stripes + 1, plan) == 0.0
