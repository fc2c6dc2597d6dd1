"""The library, the command line and a batch worker install and run without napari or Qt
(those are the ``napari`` and ``qt`` extras), and the package metadata says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import tifffile

from napari_unsupseg.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
VIEWER_ONLY = ("napari", "npe2", "magicgui", "qtpy", "superqt", "psygnal", "vispy", "PyQt5",
               "PyQt6", "PySide2", "PySide6")

#: Run before the code under test: importing any viewer-only package fails, as it would in
#: an environment where only ``pip install napari-unsupseg`` was run.
BLOCKER = textwrap.dedent(
    f"""
    import sys

    class _NoViewer:
        blocked = {VIEWER_ONLY!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NoViewer())
    """
)


def _run_without_viewer(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_core_and_every_engine_import_without_napari(tmp_path):
    proc = _run_without_viewer(
        """
        import importlib
        for name in ("napari_unsupseg.core", "napari_unsupseg.core.registry",
                     "napari_unsupseg.core.batch", "napari_unsupseg.cli"):
            importlib.import_module(name)
        from napari_unsupseg.core.registry import ENGINES
        for engine in ENGINES.values():
            importlib.import_module(engine.run.__module__)
        print("imported", len(ENGINES), "engines")
        try:
            import napari  # noqa: F401
        except ModuleNotFoundError:
            print("napari blocked")
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "imported 5 engines" in proc.stdout and "napari blocked" in proc.stdout


def test_the_command_line_runs_without_napari(tmp_path):
    """``python -m napari_unsupseg.cli``, with the blocker loaded as a sitecustomize."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(tmp_path / "tiny.png")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "napari_unsupseg.cli", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)

    blocked = subprocess.run([sys.executable, "-c", "import napari"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "No module named 'napari'" in blocked.stderr
    for command in sorted(SUBCOMMANDS):
        proc = cli(command, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, (command, proc.stderr)
    proc = cli("preseg", "tiny.png", "-o", "out.tif", "--quiet", "--n-segments", "20")
    assert proc.returncode == 0, proc.stderr
    assert tifffile.imread(tmp_path / "out.tif").shape == (40, 50)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_napari_and_qt_are_extras_not_requirements():
    project = _pyproject()["project"]
    required = {re.split(r"[<>=!\[; ]", d, maxsplit=1)[0].lower()
                for d in project["dependencies"]}
    assert not required & {name.lower() for name in VIEWER_ONLY}
    extras = project["optional-dependencies"]
    assert any(d.startswith("napari>=") for d in extras["napari"])
    assert extras["qt"] and "napari-unsupseg[napari,qt]" in extras["testing"]
    assert project["license"] == "MIT" and "Framework :: napari" in project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert {"Source", "Bug Tracker"} <= set(project["urls"])


def test_every_extra_the_readme_names_exists():
    extras = set(_pyproject()["project"]["optional-dependencies"])
    readme = (ROOT / "README.md").read_text()
    named = {name for group in re.findall(r"napari-unsupseg\[([\w,]+)\]|\.\[([\w,]+)\]", readme)
             for part in group if part for name in part.split(",")}
    assert named and named <= extras, named - extras
