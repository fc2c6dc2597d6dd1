"""OME-Zarr on the command line: a store in, OME-Zarr labels out (inside the store or
a new one), and one sentence with exit code 2 on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("ome_zarr")

from _models import sharp_unet  # noqa: E402
from _zarr import smooth_volume, write_store  # noqa: E402

from napari_unsupseg.cli import main  # noqa: E402
from napari_unsupseg.core.base.omezarr import open_omezarr  # noqa: E402

FAST = ["--quiet", "--n-segments", "40", "--block", "48"]


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "img.zarr", smooth_volume((2, 2, 96, 96)))


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-unsupseg: error: ")
    return err[0]


def test_preseg_writes_labels_inside_the_store(store, capsys):
    assert main(["preseg", str(store), *FAST]) == 0
    assert "labels/preseg" in capsys.readouterr().out
    labels = open_omezarr(store / "labels" / "preseg")
    assert labels.axes == ("z", "y", "x") and labels.level0.shape == (2, 96, 96)
    assert np.asarray(labels.level0[:]).min() >= 1
    scale = open_omezarr(store).voxel_scale()
    assert labels.voxel_scale() == {a: scale[a] for a in ("z", "y", "x")}


def test_existing_labels_give_one_sentence_unless_overwrite(store, capsys):
    assert main(["preseg", str(store), *FAST]) == 0
    capsys.readouterr()
    assert main(["preseg", str(store), *FAST]) == 2
    assert "already has labels named 'preseg'" in _one_sentence(capsys)
    assert main(["preseg", str(store), *FAST, "--overwrite"]) == 0


def test_tiff_in_zarr_out(tmp_path, capsys):
    image = np.moveaxis(smooth_volume((3, 1, 64, 64))[:, 0], 0, -1)
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "a.ome.zarr"
    assert main(["preseg", str(tmp_path / "a.tif"), "--channel-axis", "-1", *FAST,
                 "-o", str(out)]) == 0
    assert open_omezarr(out).level0.shape == (64, 64)


def test_predict_into_new_store(store, tmp_path):
    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    model = sharp_unet(channels=2)
    checkpoint = tmp_path / "unet.pth"
    save_checkpoint(checkpoint, model.model, model.config)
    out = tmp_path / "classes.ome.zarr"
    assert main(["predict", str(store), "--checkpoint", str(checkpoint), "--quiet",
                 "--tile", "96", "--overlap", "16", "-o", str(out)]) == 0
    labels = np.asarray(open_omezarr(out).level0[:])
    assert labels.shape == (2, 96, 96) and len(np.unique(labels)) > 1


@pytest.mark.parametrize("argv, sentence", [
    (["-o", "x.tif"], "name an output ending in .zarr"),
    (["--nodata", "0"], "do not apply to OME-Zarr"),
    (["--stack-mode", "volume", "--method", "felzenszwalb"],
     "Felzenszwalb segments one plane at a time"),
])
def test_bad_outputs_give_one_sentence(store, capsys, argv, sentence):
    assert main(["preseg", str(store), *FAST, *argv]) == 2
    assert sentence in _one_sentence(capsys)


def test_preseg_volume_mode_runs_in_3d_blocks_with_the_store_spacing(store, capsys):
    assert main(["preseg", str(store), "--quiet", "--n-segments", "60", "--block", "48",
                 "--stack-mode", "volume", "--method", "slic"]) == 0
    labels = open_omezarr(store / "labels" / "preseg")
    data = np.asarray(labels.level0[:])
    assert data.shape == (2, 96, 96) and data.min() >= 1
    import zarr

    group = zarr.open_group(str(store / "labels" / "preseg"), mode="r")
    about = dict(group.attrs)["napari_unsupseg"]
    assert about["segmented_as"] == "volume" and about["blocks"] > 1
    scale = open_omezarr(store).voxel_scale()
    assert about["spacing"] == [scale["z"], scale["y"], scale["x"]]
    # supervoxels cross the planes
    assert (data[0] == data[1]).mean() > 0.2
    # A spacing given is the one used, even cubic voxels on a store that says otherwise.
    assert scale["z"] != 1.0
    assert main(["preseg", str(store), "--quiet", "--n-segments", "60", "--block", "48",
                 "--stack-mode", "volume", "--method", "slic", "--labels-name", "cubic",
                 "--spacing-z", "1"]) == 0
    group = zarr.open_group(str(store / "labels" / "cubic"), mode="r")
    assert dict(group.attrs)["napari_unsupseg"]["spacing"][0] == 1.0


def test_volume_mode_without_z_gives_one_sentence(tmp_path, capsys):
    path = write_store(tmp_path / "plane.zarr", smooth_volume((2, 1, 64, 64))[:, 0], axes="cyx")
    assert main(["preseg", str(path), *FAST, "--stack-mode", "volume",
                 "--method", "slic"]) == 2
    assert "Volume mode needs a z axis" in _one_sentence(capsys)


def test_predict_writes_stitched_objects_beside_the_classes(store, tmp_path):
    from dataclasses import replace

    from napari_unsupseg.core.models.checkpoints import save_checkpoint

    model = sharp_unet(channels=2)
    checkpoint = tmp_path / "unet.pth"
    save_checkpoint(checkpoint, model.model, replace(model.config, object_class=1))
    out = tmp_path / "classes.ome.zarr"
    assert main(["predict", str(store), "--checkpoint", str(checkpoint), "--quiet",
                 "--tile", "64", "--overlap", "16", "-o", str(out)]) == 0
    classes = np.asarray(open_omezarr(out).level0[:])
    objects = np.asarray(open_omezarr(tmp_path / "classes_objects.ome.zarr").level0[:])
    assert objects.shape == classes.shape
    assert ((objects > 0) == (classes == 1)).all()
    assert objects.max() == len(np.unique(objects[objects > 0]))  # ids 1..n, unique
    # Into the image's own store: both labels images are listed there.
    import zarr

    assert main(["predict", str(store), "--checkpoint", str(checkpoint), "--quiet",
                 "--tile", "64", "--overlap", "16"]) == 0
    attrs = dict(zarr.open_group(str(store / "labels"), mode="r").attrs)
    listed = dict(attrs.get("ome", attrs)).get("labels")
    assert sorted(listed) == ["predict", "predict_objects"]


def test_plain_zarr_and_other_engines_give_one_sentence(tmp_path, store, capsys):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array(
        "0", shape=(4, 4), dtype="u1")
    assert main(["preseg", str(tmp_path / "plain.zarr"), "--quiet"]) == 2
    assert "not an OME-Zarr image" in _one_sentence(capsys)
    assert main(["backprop", str(store), "--quiet"]) == 2
    assert "backprop needs a TIFF" in _one_sentence(capsys)


def test_batch_takes_zarr_stores(tmp_path, capsys):
    pytest.importorskip("distributed")
    from napari_unsupseg.core.batch import plan_jobs

    write_store(tmp_path / "in" / "a.ome.zarr", smooth_volume((2, 1, 64, 64)))
    tifffile.imwrite(tmp_path / "in" / "b.tif", smooth_volume((1, 1, 64, 64))[0, 0])
    jobs = plan_jobs([tmp_path / "in"], tmp_path / "out", "preseg")
    assert sorted(j.output.name for j in jobs) == ["a_preseg.tif", "b_preseg.tif"]
    assert main(["batch", "preseg", str(tmp_path / "in" / "a.ome.zarr"), "-o",
                 str(tmp_path / "out"), "--workers", "1", "--quiet",
                 "--n-segments", "20"]) == 0
    labels = tifffile.imread(tmp_path / "out" / "a_preseg.tif")
    assert labels.shape == (1, 64, 64) and labels.min() >= 1  # z kept, one plane
