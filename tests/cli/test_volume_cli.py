"""``napari-unsupseg preseg`` on a z-stack: volume mode and the voxel spacing as options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from _volumes import ellipsoids, fluorescence
from scipy import ndimage as ndi

from napari_unsupseg.cli import main

NUCLEI = [((24, 32, 20), (12, 12, 12)), ((24, 32, 42), (12, 12, 12))]


def test_preseg_segments_a_stack_as_a_volume_with_its_spacing(tmp_path, capsys):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, fluorescence(ellipsoids(NUCLEI))[..., 0].astype(np.uint16))
    out = tmp_path / "supervoxels.tif"
    code = main(["preseg", str(path), "-o", str(out), "--method", "watershed",
                 "--n-segments", "150", "--stack-mode", "volume", "--spacing-z", "3",
                 "--quiet"])
    assert code == 0
    labels = tifffile.imread(out)
    assert labels.shape == (16, 64, 64) and labels.min() == 1
    spans = [box[0].stop - box[0].start for box in ndi.find_objects(labels) if box]
    assert np.mean(spans) > 2.0  # supervoxels cross planes
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["segmented_as"] == "volume" and meta["parameters"]["spacing_z"] == 3.0


def test_preseg_refuses_felzenszwalb_in_volume_mode_in_one_sentence(tmp_path, capsys):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((6, 16, 16), np.uint16), photometric="minisblack")
    code = main(["preseg", str(path), "--method", "felzenszwalb", "--stack-mode", "volume",
                 "--spacing-z", "1", "--quiet"])
    assert code == 2
    assert "Felzenszwalb segments one plane at a time" in capsys.readouterr().err


def test_backprop_volume_mode_and_the_z_spacing_reach_the_engine(tmp_path):
    path = tmp_path / "stack.tif"
    truth = ellipsoids([((6, 12, 10), (5, 7, 6)), ((6, 12, 26), (5, 7, 6))], (6, 24, 36),
                       (2.0, 1.0, 1.0))
    tifffile.imwrite(path, (truth * 1000 + 100).astype(np.uint16), photometric="minisblack")
    out = tmp_path / "labels.tif"
    code = main(["backprop", str(path), "-o", str(out), "--stack-mode", "volume",
                 "--spacing-z", "2", "--max-iter", "3", "--device", "cpu", "--quiet"])
    assert code == 0
    labels = tifffile.imread(out)
    assert labels.shape == (6, 24, 36) and labels.min() >= 1
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["stack_mode"] == "volume" and meta["spacing"] == [2.0, 1.0, 1.0]
    assert meta["parameters"]["spacing_z"] == 2.0


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_volume_mode_takes_the_voxel_size_the_tiff_states(tmp_path, kind):
    path = tmp_path / ("stack.ome.tif" if kind == "ome" else "stack.tif")
    data = fluorescence(ellipsoids(NUCLEI))[..., 0].astype(np.uint16)
    if kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                         metadata={"spacing": 0.75, "unit": "um", "axes": "ZYX"})
    else:
        tifffile.imwrite(path, data, ome=True, metadata={
            "axes": "ZYX", "PhysicalSizeZ": 0.75, "PhysicalSizeY": 0.25,
            "PhysicalSizeX": 0.25})
    out = tmp_path / "supervoxels.tif"
    code = main(["preseg", str(path), "-o", str(out), "--method", "watershed",
                 "--n-segments", "60", "--stack-mode", "volume", "--quiet"])
    assert code == 0
    meta = json.loads(out.with_suffix(".json").read_text())["parameters"]
    assert (meta["spacing_z"], meta["spacing_y"], meta["spacing_x"]) == (0.75, 0.25, 0.25)


def test_volume_mode_without_a_voxel_size_is_refused_in_one_sentence(tmp_path, capsys):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((6, 16, 16), np.uint16), photometric="minisblack")
    out = tmp_path / "supervoxels.tif"
    code = main(["preseg", str(path), "-o", str(out), "--method", "slic", "--stack-mode",
                 "volume", "--quiet"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert "does not state its voxel size" in err and "--spacing-z" in err
    assert len(err.splitlines()) == 1
    # Planes mode needs no spacing.
    assert main(["preseg", str(path), "-o", str(out), "--method", "slic", "--quiet"]) == 0
