"""The machine's limits before a run: the device line, the memory estimates against the
measured peak of each engine, and refusing (or moving backprop to crops) when a run will
not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_unsupseg.cli import main
from napari_unsupseg.core.backprop import BackpropParams
from napari_unsupseg.core.base import limits
from napari_unsupseg.core.base.io import write_labels
from napari_unsupseg.core.registry import ENGINES, estimate_bytes, plan_run

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("engine", ["preseg", "backprop", "predict", "train"])
def test_estimate_within_30_percent_of_the_measured_peak(engine):
    # Measured in a fresh process (its own peak), as the benchmark does, on 512 x 512 RGB.
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(BENCH.parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(BENCH), "--child", engine, "512"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["measured"] > 0
    assert 0.7 <= row["estimate"] / row["measured"] <= 1.3, row


def test_device_line_on_the_cpu(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # the count torch would read
    assert limits.device_summary("cpu") == "CPU, 2 threads"
    assert limits.device_summary("cpu", threads=1) == "CPU, 1 thread"
    monkeypatch.setattr(limits, "host_available_bytes", lambda: 23 * limits.GIB)
    found = limits.limits("backprop", "cpu", int(1.2 * limits.GIB), threads=2)
    assert found.line == "backprop on CPU, 2 threads; about 1.2 GiB of 23 GiB available"
    assert found.fits


def test_available_memory_is_read():
    free = limits.host_available_bytes()
    assert free is not None and 0 < free
    assert limits.size_text(850 * 2**20) == "850 MiB" and limits.size_text(23 * 2**30) == "23 GiB"


def test_every_image_engine_has_an_estimate_that_grows_with_the_image():
    for name in ("preseg", "backprop", "predict", "train"):
        params = ENGINES[name].params()
        small = estimate_bytes(name, (256, 256, 3), np.uint8, params)
        large = estimate_bytes(name, (2048, 2048, 3), np.uint8, params)
        assert small is not None and 0 < small < large, name
    assert estimate_bytes("parts", (256, 256, 3), np.uint8, ENGINES["parts"].params()) is None


def test_time_left_from_the_rate():
    assert limits.time_left(10, 40, 5.0) == "about 15 s left"
    assert limits.time_left(1, 100, 60.0) == "about 99 min left"
    assert limits.time_left(0, 40, 5.0) == "" and limits.time_left(40, 40, 5.0) == ""


def _little_memory(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(limits, "host_available_bytes", lambda: nbytes)


def test_backprop_moves_to_crops_when_whole_image_training_would_not_fit(monkeypatch):
    shape = (2048, 2048, 3)
    params = BackpropParams(device="cpu", train_pixels=None)
    _little_memory(monkeypatch, 2 * limits.GIB)
    planned = plan_run("backprop", shape, np.uint8, params)
    assert planned.params.memory_budget_mb < params.memory_budget_mb
    assert "crops" in planned.note and planned.limits.fits


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "field.tif"
    write_labels(path, (rng.random((64, 64)) * 200).astype(np.uint8), {})
    return path


def test_cli_says_the_device_and_estimate_before_the_run(image_file, tmp_path, capsys):
    out = tmp_path / "sp.tif"
    assert main(["preseg", str(image_file), "-o", str(out)]) == 0
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert line.startswith("napari-unsupseg: preseg on CPU, ") and "available" in line
    assert out.exists()
    assert main(["preseg", str(image_file), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_refuses_a_run_that_will_not_fit(image_file, tmp_path, capsys, monkeypatch):
    _little_memory(monkeypatch, 4 * 2**20)
    out = tmp_path / "sp.tif"
    assert main(["preseg", str(image_file), "-o", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("napari-unsupseg: error: This preseg run would need about ")
    assert error.endswith("or run with --force.") and error.count(". ") == 0
    assert not out.exists() and not out.with_suffix(".json").exists()
    # --force runs it all the same
    assert main(["preseg", str(image_file), "-o", str(out), "--quiet", "--force"]) == 0
    assert out.exists()


def test_train_cli_refuses_a_run_that_will_not_fit(image_file, tmp_path, capsys, monkeypatch):
    labels = tmp_path / "painted.tif"
    painted = np.zeros((64, 64), np.uint8)
    painted[:8], painted[-8:] = 1, 2
    write_labels(labels, painted, {})
    _little_memory(monkeypatch, 16 * 2**20)
    model = tmp_path / "model.pt"
    assert main(["train", str(image_file), "--labels", str(labels), "-o", str(model),
                 "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("napari-unsupseg: error: This train run would need about ")
    assert len(error.splitlines()) == 1 and not model.exists()
