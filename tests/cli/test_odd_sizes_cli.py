"""``napari-unsupseg train`` on images whose sides are no multiple of 32 (it crashed at the
image's edge), then ``predict`` with the model it wrote: labels of the image's shape."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unsupseg.cli import main

SMALL = ["--quiet", "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "2",
         "--unet-depth", "2", "--unet-channels", "4", "--threads", "1", "--seed", "0"]


def _write(folder, shape: tuple[int, int]) -> None:
    """Random 8-bit pixels, painted densely enough for a validation part."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "t.tif", rng.integers(0, 255, shape).astype(np.uint8))
    labels = np.ones(shape, np.uint8)
    labels[shape[0] * 3 // 10: shape[0] * 6 // 10, shape[1] // 3: shape[1] * 2 // 3] = 2
    tifffile.imwrite(folder / "tl.tif", labels)


@pytest.mark.parametrize("shape", [(100, 90), (33, 257)])
def test_images_of_any_size_train_and_predict(tmp_path, capsys, shape):
    _write(tmp_path, shape)
    code = main(["train", str(tmp_path / "t.tif"), "--labels", str(tmp_path / "tl.tif"),
                 "-o", str(tmp_path / "t.pt"), "--time-limit", "2", "--channel-axis", "none",
                 *SMALL])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "t.pt").is_file()
    assert "wrote" in capsys.readouterr().out
    code = main(["predict", str(tmp_path / "t.tif"), "--checkpoint", str(tmp_path / "t.pt"),
                 "-o", str(tmp_path / "p.tif"), "--channel-axis", "none", "--quiet"])
    assert code == 0, capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "p.tif")
    assert labels.shape == shape
    assert set(np.unique(labels)) <= {1, 2}
