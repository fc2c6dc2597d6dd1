"""``napari-unsupseg predict`` with a model that separates objects (and ``backprop`` with its
bright objects): the objects are written beside the labels as ``<output>_objects.tif`` with
their JSON sidecar.

predict's engine is a stand-in (the registry's entry replaced for the test): what is checked is
how the command writes what a model returns, not a model."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_unsupseg.cli import main
from napari_unsupseg.core import registry
from napari_unsupseg.core.base.engine import Progress, Result


def _separating(image, params, control=None):
    """Two classes by brightness, and each bright blob as one object."""
    yield Progress(step=1, total=1)
    classes = np.where(image[..., 0] > 0.5, 2, 1).astype(np.uint8)
    objects = ndi.label(classes == 2)[0].astype(np.uint32)
    return Result(classes, {"engine": "predict", "classes": {"1": "back", "2": "cell"}},
                  {"objects": objects})


def _plain(image, params, control=None):
    yield Progress(step=1, total=1)
    return Result(np.ones(image.shape[:2], np.uint8), {"engine": "predict"})


def _image(path):
    image = np.zeros((32, 40), np.float32)
    image[4:10, 4:10] = image[20:28, 25:35] = 1.0
    tifffile.imwrite(path, image)
    return path


def test_predict_writes_the_objects_beside_the_labels(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.ENGINES, "predict",
                        replace(registry.ENGINES["predict"], run=_separating))
    out = tmp_path / "out" / "cells_classes.tif"
    assert main(["predict", str(_image(tmp_path / "cells.tif")), "--checkpoint", "any.pt",
                 "-o", str(out), "--quiet"]) == 0
    objects = tifffile.imread(tmp_path / "out" / "cells_classes_objects.tif")
    assert objects.shape == (32, 40) and objects.max() == 2
    np.testing.assert_array_equal(objects > 0, tifffile.imread(out) == 2)
    sidecar = json.loads((tmp_path / "out" / "cells_classes_objects.json").read_text())
    assert sidecar["source"] == str(tmp_path / "cells.tif")
    assert sidecar["content"].startswith("objects")
    assert "cells_classes_objects.tif (2 labels" in capsys.readouterr().out


def test_predict_writes_no_objects_when_the_model_separates_none(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.ENGINES, "predict",
                        replace(registry.ENGINES["predict"], run=_plain))
    out = tmp_path / "cells_classes.tif"
    assert main(["predict", str(_image(tmp_path / "cells.tif")), "--checkpoint", "any.pt",
                 "-o", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cells.tif", "cells_classes.json", "cells_classes.tif"]


def test_backprop_writes_the_bright_objects_when_asked(tmp_path):
    """The segmenter's own objects (``--bright-objects``) are written the same way."""
    image = np.full((48, 64), 20, np.uint8)
    image[6:16, 6:16] = image[26:40, 30:44] = image[26:40, 44:56] = 200  # two touch
    path = tmp_path / "nuclei.png"
    from PIL import Image

    Image.fromarray(image).save(path)
    out = tmp_path / "nuclei_labels.tif"
    assert main(["backprop", str(path), "-o", str(out), "--bright-objects", "--seed", "0",
                 "--quiet"]) == 0
    objects = tifffile.imread(tmp_path / "nuclei_labels_objects.tif")
    bright = image > 100
    assert ((objects > 0) & bright).sum() / ((objects > 0) | bright).sum() > 0.95
    assert objects.max() == 2  # two blocks side by side make one straight-edged object
    sidecar = json.loads((tmp_path / "nuclei_labels_objects.json").read_text())
    assert sidecar["objects"]["count"] == 2
