"""The command line end to end: files in, labels and metadata out, plain errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unsupseg.cli import build_parser, main
from napari_unsupseg.core.base import params as P
from napari_unsupseg.core.registry import ENGINES
from napari_unsupseg.core.samples import mosaic

FAST = ["--quiet", "--seed", "0"]


@pytest.fixture(scope="module")
def mosaic_png(tmp_path_factory):
    image, truth = mosaic(size=96, n_regions=4, seed=1)
    path = tmp_path_factory.mktemp("img") / "mosaic.png"
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return path, truth


def _subcommand(parser, *names):
    for name in names:
        parser = parser._subparsers._group_actions[0].choices[name]
    return parser


@pytest.mark.parametrize("engine", list(ENGINES.values()), ids=list(ENGINES))
def test_every_engine_parameter_is_an_option(engine):
    """Every parameter of every engine is an option of its command and of its batch."""
    commands = [(engine.name,)]
    if engine.batch != "none":
        commands.append(("batch", engine.name))
    for names in commands:
        sub = _subcommand(build_parser(), *names)
        options = {action.dest for action in sub._actions}
        missing = {s.name for s in P.specs(engine.params)} - options
        assert not missing, (names, missing)


def test_batch_runs_every_engine_that_makes_sense():
    batch = _subcommand(build_parser(), "batch")
    choices = set(batch._subparsers._group_actions[0].choices)
    assert choices == {e.name for e in ENGINES.values() if e.batch != "none"}
    assert {"preseg", "backprop", "predict", "parts"} <= choices


def test_preseg_writes_labels_and_sidecar(mosaic_png, tmp_path, capsys):
    path, _ = mosaic_png
    out = tmp_path / "sp.tif"
    assert (
        main(
            [
                "preseg",
                str(path),
                "-o",
                str(out),
                "--method",
                "slic",
                "--n-segments",
                "200",
                "--quiet",
            ]
        )
        == 0
    )
    labels = tifffile.imread(out)
    assert labels.shape == (96, 96) and labels.min() == 1
    assert 100 <= labels.max() <= 300
    # Superpixels follow the regions: almost every pixel shares its superpixel's region.
    truth = mosaic_png[1]
    inside = sum(np.bincount(truth[labels == k]).max() for k in range(1, labels.max() + 1))
    assert inside / labels.size > 0.95
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["engine"] == "preseg" and meta["parameters"]["n_segments"] == 200
    assert str(out) in capsys.readouterr().out


def test_backprop_recovers_the_mosaic(mosaic_png, tmp_path):
    path, truth = mosaic_png
    out = tmp_path / "labels.tif"
    assert main(["backprop", str(path), "-o", str(out), "--n-labels", "4", *FAST]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == truth.shape and labels.dtype in (np.uint16, np.uint32)
    # Asked for as many labels as there are regions: each region is mostly one label,
    # and distinct regions get distinct labels.
    majority = [np.bincount(labels[truth == k]).argmax() for k in range(1, truth.max() + 1)]
    purity = np.mean(
        [
            (labels[truth == k] == m).mean()
            for k, m in zip(range(1, truth.max() + 1), majority, strict=True)
        ]
    )
    assert purity > 0.8 and len(set(majority)) == truth.max()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["seed"] == 0 and meta["engine"] == "backprop"


def _write_tiff(path, data):
    tifffile.imwrite(path, data, photometric="minisblack")
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "words"),
    [
        (lambda d, p: ["backprop", str(d / "nope.tif")], "does not exist"),
        (lambda d, p: ["backprop", str(d / "junk.png")], "could not be read"),
        (
            lambda d, p: [
                "backprop",
                _write_tiff(d / "4d.tif", np.zeros((3, 4, 16, 16), np.uint8)),
            ],
            "Expected a 2-D plane",
        ),
        (
            lambda d, p: [
                "backprop",
                _write_tiff(d / "nan.tif", np.full((16, 16), np.nan, np.float32)),
            ],
            "NaN",
        ),
        (
            lambda d, p: [
                "backprop",
                str(p),
                "--scribbles",
                _write_tiff(d / "s.tif", np.ones((10, 10), np.uint8)),
            ],
            "scribble",
        ),
        (lambda d, p: ["backprop", str(p), "--channel-axis", "7"], "does not exist"),
        (lambda d, p: ["backprop", str(p), "--device", "cuda"], "CUDA"),
    ],
    ids=["missing", "unreadable", "dimensions", "nan", "scribble-shape", "axis", "device"],
)
def test_bad_input_exits_2_with_one_sentence(tmp_path, mosaic_png, capsys, make_args, words):
    (tmp_path / "junk.png").write_bytes(b"this is not a picture")
    args = make_args(tmp_path, mosaic_png[0])
    if "--device" in args and _cuda_available():
        pytest.skip("this machine has CUDA")
    assert main([*args, "-o", str(tmp_path / "out.tif"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words.lower() in err.lower()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.tif").exists()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_console_script_demo_runs_without_arguments(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "napari_unsupseg.cli", "demo", "--sample", "mosaic", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "unsupseg-demo"
    labels = tifffile.imread(folder / "mosaic_labels.tif")
    assert labels.shape == (128, 128) and labels.max() >= 2
    for name in ("mosaic_labels.json", "mosaic_overlay.png", "mosaic_mean_colour.png"):
        assert (folder / name).is_file() and str(folder / name).split("/")[-1] in done.stdout


def test_help_shows_a_percent_sign_as_written(capsys):
    # argparse formats help texts with %: a "30%" in a parameter's help must not break it.
    with pytest.raises(SystemExit):
        main(["backprop", "--help"])
    out = capsys.readouterr().out
    assert "about 30% slower" in out and "option_strings" not in out
