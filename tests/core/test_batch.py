"""The batch command: many files on a dask cluster, failures by name, resuming."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unsupseg.cli import main
from napari_unsupseg.core.base.errors import InputError
from napari_unsupseg.core.batch import Job, plan_jobs, process_file
from napari_unsupseg.core.samples import mosaic

pytest.importorskip("distributed")


def _images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n):
        image, _ = mosaic(48, n_regions=3, seed=seed)
        path = folder / f"plate_{seed}.tif"
        tifffile.imwrite(path, (image * 255).astype(np.uint8))
        paths.append(path)
    return paths


def test_plan_mirrors_names_of_folders_files_and_globs(tmp_path):
    _images(tmp_path / "in" / "sub", 2)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    jobs = plan_jobs([tmp_path / "in"], tmp_path / "out", "preseg")
    assert [j.output.relative_to(tmp_path / "out").as_posix() for j in jobs] == [
        "sub/plate_0_preseg.tif", "sub/plate_1_preseg.tif"]
    globbed = plan_jobs([str(tmp_path / "in" / "sub" / "*_1.tif")], tmp_path / "out", "preseg")
    assert [j.output.name for j in globbed] == ["plate_1_preseg.tif"]
    with pytest.raises(InputError, match="neither a file"):
        plan_jobs([tmp_path / "missing"], tmp_path / "out", "preseg")


def test_batch_on_two_workers_names_the_bad_file_and_resumes(tmp_path, capsys):
    good = _images(tmp_path / "in")
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00 this is not a tiff")
    out = tmp_path / "out"
    argv = ["batch", "preseg", str(tmp_path / "in"), "-o", str(out), "--workers", "2",
            "--quiet", "--n-segments", "30"]
    assert main(argv) == 1
    report = capsys.readouterr().out
    assert "3 written, 0 skipped" in report and "1 failed" in report
    assert "broken.tif" in report and "plate_" not in report.split("failed", 2)[-1]
    for path in good:
        labels = tifffile.imread(out / f"{path.stem}_preseg.tif")
        assert labels.shape == (48, 48) and labels.max() >= 4
        assert json.loads((out / f"{path.stem}_preseg.json").read_text())["engine"] == "preseg"
    assert not list(out.glob(".*partial*"))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    assert main(argv) == 1  # the broken file fails again; the others are not redone
    again = capsys.readouterr().out
    assert "0 written, 3 skipped" in again and "broken.tif" in again
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.tif")} == stamps


def test_unreachable_scheduler_is_a_plain_message_and_writes_nothing(tmp_path, capsys):
    _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    start = time.perf_counter()
    code = main(["batch", "preseg", str(tmp_path / "in"), "-o", str(out), "--quiet",
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert time.perf_counter() - start < 20
    assert "Could not reach the dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not out.exists()


def test_process_file_runs_backprop_and_keeps_the_georeference(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    from napari_unsupseg.core.backprop import BackpropParams
    from napari_unsupseg.core.base.geo import read_georef

    image, _ = mosaic(40, n_regions=3)
    source = tmp_path / "scene.tif"
    with rasterio.open(source, "w", driver="GTiff", height=40, width=40, count=3,
                       dtype="uint16", crs="EPSG:32633",
                       transform=Affine(2.0, 0.0, 4e5, 0.0, -2.0, 5e6)) as target:
        target.write((np.moveaxis(image, -1, 0) * 4000).astype(np.uint16))
    job = Job(source, tmp_path / "out" / "scene_backprop.tif")
    job.output.parent.mkdir()
    done = process_file(job, "backprop", BackpropParams(max_iter=3), geojson=True)
    assert done["n_labels"] >= 2
    georef = read_georef(job.output)
    assert georef is not None and georef.transform == (2.0, 0.0, 4e5, 0.0, -2.0, 5e6)
    assert "32633" in georef.crs
    assert json.loads(job.output.with_suffix(".geojson").read_text())["features"]


def test_batch_is_a_generator_of_progress_that_returns_the_report(tmp_path):
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.batch import BatchProgress, run_batch
    from napari_unsupseg.core.preseg import PresegParams

    _images(tmp_path / "in", 3)
    jobs = plan_jobs([tmp_path / "in"], tmp_path / "out", "preseg")
    events: list[BatchProgress] = []
    report = drive(run_batch(jobs, "preseg", PresegParams(n_segments=20), workers=1),
                   events.append)
    assert [e.step for e in events] == [1, 2, 3] and {e.total for e in events} == {3}
    assert {e.job.source.name for e in events} == {j.source.name for j in jobs}
    assert len(report.done) == 3 and report.ok


def test_a_stopped_batch_returns_the_report_so_far(tmp_path):
    """Asked to stop after the first file, the batch cancels the rest and returns what it
    has: one event, one file in the report, and a rerun resumes with the others."""
    from napari_unsupseg.core.base.engine import RunControl, drive
    from napari_unsupseg.core.batch import run_batch
    from napari_unsupseg.core.preseg import PresegParams

    _images(tmp_path / "in", 3)
    jobs = plan_jobs([tmp_path / "in"], tmp_path / "out", "preseg")
    control = RunControl()
    events = []

    def stop_after_first(event):
        events.append(event)
        control.request_stop()

    report = drive(run_batch(jobs, "preseg", PresegParams(n_segments=20), workers=1,
                             control=control), stop_after_first)
    assert len(events) == 1 and events[0].total == 3
    assert len(report.done) == 1 and report.ok and report.seconds > 0
    assert Path(report.done[0]["output"]).is_file()
    rest = drive(run_batch(jobs, "preseg", PresegParams(n_segments=20), workers=1),
                 lambda event: None)
    assert len(rest.skipped) >= 1 and len(rest.skipped) + len(rest.done) == 3


def test_batch_finds_parts_across_the_whole_collection(tmp_path, capsys):
    """Part discovery learns from all the files together: one label file per input, each
    with the parts of that image, and a rerun skips them."""
    from PIL import Image

    from napari_unsupseg.core.samples.parts import part_collection

    stack, truth = part_collection(3, 48, 3, seed=0)
    folder = tmp_path / "in"
    folder.mkdir()
    for index, image in enumerate(stack):
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
            folder / f"object_{index}.png")
    out = tmp_path / "out"
    argv = ["batch", "parts", str(folder), "-o", str(out), "--workers", "1", "--quiet",
            "--n-parts", "3", "--iterations", "6", "--working-size", "32", "--batch-size", "3"]
    assert main(argv) == 0
    assert "3 written, 0 skipped (already written), 0 failed" in capsys.readouterr().out
    for index in range(3):
        labels = tifffile.imread(out / f"object_{index}_parts.tif")
        assert labels.shape == truth.shape[1:] and labels.max() <= 3
        meta = json.loads((out / f"object_{index}_parts.json").read_text())
        assert meta["engine"] == "parts" and len(meta["sources"]) == 3
    assert main(argv) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out


def test_images_of_several_sizes_are_one_sentence_for_parts(tmp_path, capsys):
    _images(tmp_path / "in", 2)
    image, _ = mosaic(40, n_regions=3, seed=9)
    tifffile.imwrite(tmp_path / "in" / "small.tif", (image * 255).astype(np.uint8))
    code = main(["batch", "parts", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--workers", "1", "--quiet", "--iterations", "2"])
    assert code == 1
    assert "needs images of one size" in capsys.readouterr().out


def test_batch_refuses_an_engine_it_cannot_run():
    from napari_unsupseg.core.registry import batch_engine

    with pytest.raises(InputError, match="Batch cannot run 'train'; it runs preseg"):
        batch_engine("train")
