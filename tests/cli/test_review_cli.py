"""``napari-unsupseg measure`` and ``compare``: files in, CSV / JSON out, exit 2 on bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from _labels import damaged, grid_mask
from skimage.measure import regionprops_table

from napari_unsupseg.cli import main


@pytest.fixture
def files(tmp_path):
    truth = grid_mask()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (2, *truth.shape), dtype=np.uint16)  # channels first
    paths = {name: tmp_path / f"{name}.tif" for name in ("truth", "cand", "image")}
    tifffile.imwrite(paths["truth"], truth)
    tifffile.imwrite(paths["cand"], damaged(truth))
    tifffile.imwrite(paths["image"], image)
    return paths, truth, image


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_measure_writes_one_row_per_label(files, tmp_path, capsys):
    paths, truth, image = files
    out = tmp_path / "table.csv"
    code = main(["measure", str(paths["truth"]), "--image", str(paths["image"]),
                 "--channel-axis", "0", "-o", str(out)])
    assert code == 0 and "20 objects" in capsys.readouterr().out
    rows = _read_csv(out)
    expected = regionprops_table(truth, np.moveaxis(image, 0, -1),
                                 properties=("label", "area", "centroid", "intensity_mean"))
    assert [int(r["label"]) for r in rows] == expected["label"].tolist()
    assert [int(r["area"]) for r in rows] == expected["area"].astype(int).tolist()
    for channel in (0, 1):
        np.testing.assert_allclose([float(r[f"mean_intensity-{channel}"]) for r in rows],
                                   expected[f"intensity_mean-{channel}"])
    np.testing.assert_allclose([float(r["centroid-1"]) for r in rows], expected["centroid-1"])


def test_measure_without_image_defaults_its_output_name(files):
    paths, _, _ = files
    assert main(["measure", str(paths["truth"])]) == 0
    rows = _read_csv(paths["truth"].with_name("truth_table.csv"))
    assert len(rows) == 20 and "mean_intensity-0" not in rows[0]


def test_compare_prints_and_writes_the_figures(files, tmp_path, capsys):
    paths, _, _ = files
    report, table = tmp_path / "r.json", tmp_path / "objects.csv"
    code = main(["compare", str(paths["truth"]), str(paths["cand"]), "--json", str(report),
                 "--table", str(table)])
    printed = capsys.readouterr().out
    assert code == 0 and "precision: 0.8333" in printed and "recall: 0.7500" in printed
    data = json.loads(report.read_text())
    assert (data["n_reference"], data["n_candidate"], data["n_matched"]) == (20, 18, 15)
    assert data["f1"] == pytest.approx(30 / 38)
    assert data["mean_iou"] == pytest.approx(14.7 / 15)
    assert (data["n_missed"], data["n_extra"], data["n_split"], data["n_merged"]) == (3, 1, 1, 1)
    by_reference = {row["reference"]: row for row in data["objects"] if row["reference"]}
    assert by_reference[7]["category"] == "split" and by_reference[10]["category"] == "missed"
    assert len(_read_csv(table)) == len(data["objects"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t.astype(np.float32), "whole numbers"),
        (lambda t: t[:-2], "must match"),
        (lambda t: np.zeros_like(t), "no objects"),
    ],
)
def test_bad_input_exits_2_with_a_plain_message(files, tmp_path, capsys, make, message):
    paths, truth, _ = files
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, make(truth))
    assert main(["compare", str(paths["truth"]), str(bad)]) == 2
    assert message in capsys.readouterr().err
    if message != "must match":
        assert main(["measure", str(bad), "-o", str(tmp_path / "x.csv")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x.csv").exists()


def test_measure_refuses_an_image_of_another_shape(files, tmp_path, capsys):
    paths, _, _ = files
    assert main(["measure", str(paths["truth"]), "--image", str(paths["image"]),
                 "--channel-axis", "none", "-o", str(tmp_path / "x.csv")]) == 2
    assert "check --channel-axis" in capsys.readouterr().err
