"""The engine widgets' "Apply to a folder" and georeferenced results."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unsupseg.core import samples
from napari_unsupseg.widgets.backprop import BackpropWidget

pytestmark = pytest.mark.gui


def test_apply_to_a_folder_writes_every_good_file_and_names_the_bad_one(
    make_napari_viewer, qtbot, tmp_path
):
    pytest.importorskip("dask.distributed")
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for seed in (1, 2):
        image, _ = samples.mosaic(48, n_regions=3, noise=0.05, seed=seed)
        Image.fromarray((image * 255).astype(np.uint8)).save(source / f"tile{seed}.png")
    (source / "broken.tif").write_bytes(b"not a tiff at all")
    viewer = make_napari_viewer()
    widget = BackpropWidget(viewer)
    widget.form["max_iter"].value = 4
    folder = widget.folder
    folder.source.value = str(source)
    folder.target.value = str(target)
    folder.workers.value = 1
    folder.start()
    qtbot.waitUntil(lambda: folder.worker is None, timeout=120_000)
    written = sorted(p.name for p in target.glob("*.tif"))
    assert written == ["tile1_backprop.tif", "tile2_backprop.tif"]
    assert tifffile.imread(target / "tile1_backprop.tif").shape == (48, 48)
    assert "1 failed" in folder.status.value and "broken.tif" in folder.status.value


def test_apply_to_a_folder_refuses_a_missing_folder_in_words(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = BackpropWidget(viewer)
    widget.folder.source.value = str(tmp_path / "nowhere")
    widget.folder.target.value = str(tmp_path / "out")
    widget.folder.start()
    assert widget.folder.worker is None
    assert "input folder" in widget.folder.status.value
    assert not (tmp_path / "out").exists()


def test_result_layer_carries_the_source_georeference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    georef = {"crs": "EPSG:32633", "transform": [10.0, 0.0, 500000.0, 0.0, -10.0, 4e6],
              "nodata": None}
    image, _ = samples.mosaic(32, n_regions=3, noise=0.05, seed=1)
    viewer.add_image(image, name="scene", rgb=True, metadata=georef)
    widget = BackpropWidget(viewer)
    widget.form["max_iter"].value = 3
    with qtbot.waitSignal(widget.run_finished, timeout=60_000):
        widget.run()
    meta = widget.result_layer.metadata
    assert meta["crs"] == "EPSG:32633" and meta["transform"] == georef["transform"]
