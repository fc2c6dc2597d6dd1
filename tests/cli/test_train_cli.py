"""``napari-unsupseg train`` end to end: files in, a model out that ``predict`` runs with
the painted class values; bad input exits 2 with one sentence and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_unsupseg.cli import build_parser, main
from napari_unsupseg.core.base import params as P
from napari_unsupseg.core.train import TrainParams

FAST = ["--quiet", "--epochs", "3", "--steps-per-epoch", "6", "--batch-size", "4",
        "--unet-depth", "2", "--unet-channels", "8", "--threads", "1", "--seed", "1"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 40, (2, 48, 64)).astype(np.uint16)  # channel-first
    image[0, :, 32:] += 900
    labels = np.zeros((48, 64), np.uint8)
    labels[5:9, 2:28] = 4
    labels[30:34, 36:62] = 9
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    return tmp_path


def test_every_parameter_is_an_option():
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {action.dest for action in sub._actions}
    assert not {s.name for s in P.specs(TrainParams)} - options


def test_train_then_predict_gives_the_painted_values(files, capsys):
    model = files / "m.pt"
    code = main(["train", str(files / "img.tif"), "--labels", str(files / "lab.tif"), "-o",
                 str(model), "--channel-axis", "0", "--export", "pt2", "onnx", *FAST])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "classes 4=class 4, 9=class 9" in printed
    assert model.is_file() and (files / "m.pt2").is_file()
    assert (files / "m.onnx").is_file()
    stored = torch.load(model, weights_only=True)
    assert str(files / "lab.tif") in stored["training"]
    out = files / "pred.tif"
    assert main(["predict", str(files / "img.tif"), "--checkpoint", str(model), "-o", str(out),
                 "--channel-axis", "0", "--quiet"]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (48, 64)
    assert set(np.unique(labels)) <= {4, 9}
    assert (labels[:, :28] == 4).mean() > 0.9 and (labels[:, 36:] == 9).mean() > 0.9


@pytest.mark.parametrize(
    "case, expected",
    [
        ("float", "must be integers"),
        ("shape", "must match"),
        ("suffix", ".pt or .pth"),
        ("init", "does not exist"),
        ("missing", "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(files, capsys, case, expected):
    labels = files / "lab.tif"
    extra: list[str] = []
    output = files / "out.pt"
    if case == "float":
        labels = files / "float.tif"
        tifffile.imwrite(labels, tifffile.imread(files / "lab.tif").astype(np.float32))
    elif case == "shape":
        labels = files / "small.tif"
        tifffile.imwrite(labels, tifffile.imread(files / "lab.tif")[:40])
    elif case == "suffix":
        output = files / "out.tif"
    elif case == "init":
        extra = ["--init", str(files / "nothing.pt")]
    elif case == "missing":
        labels = files / "nothing.tif"
    before = sorted(p.name for p in files.iterdir())
    code = main(["train", str(files / "img.tif"), "--labels", str(labels), "-o", str(output),
                 "--channel-axis", "0", *FAST, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and err.count("\n") == 0 and err.startswith("napari-unsupseg: error:")
    assert sorted(p.name for p in files.iterdir()) == before
