"""What the README's install and napari sections promise matches the package: the Quick
start reaches a docked widget (a Qt binding is installed), the widget list matches the
manifest's menus, and the test-dependency script picks the PyTorch index it is told."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
QT_BINDINGS = {"pyqt5", "pyqt6", "pyside2", "pyside6"}


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    text = _readme()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _manifest() -> dict:
    return yaml.safe_load((ROOT / "src" / "napari_unsupseg" / "napari.yaml").read_text())


def _titles() -> dict[str, str]:
    """Command id -> the widget's display name."""
    return {w["command"]: w["display_name"] for w in _manifest()["contributions"]["widgets"]}


def _requirements(extras: str) -> set[str]:
    """Project names an ``[a,b]`` extras list installs, nested extras resolved."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    todo = extras.split(",")
    while todo:
        for requirement in table["optional-dependencies"][todo.pop()]:
            nested = re.fullmatch(r"napari-unsupseg\[([\w,]+)\]", requirement)
            if nested:
                todo += nested.group(1).split(",")
            else:
                names.add(re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0].lower())
    return names


def test_the_quick_start_reaches_a_docked_widget():
    block = re.search(r"```bash\n(.*?)```", _section("Quick start"), re.S).group(1)
    lines = block.strip().splitlines()
    assert lines[0] == 'python -m pip install "torch==2.13.0" -e . && napari-unsupseg demo'
    assert lines[1] == "bash scripts/install-test-deps.sh && python -m pytest"
    install, _, run = lines[2].partition(" && ")
    extras = re.search(r'-e "\.\[([\w,]+)\]"', install).group(1)
    installed = _requirements(extras)
    assert "napari" in installed and installed & QT_BINDINGS  # napari can open a window
    match = re.fullmatch(r'napari -w napari-unsupseg "([^"]+)"', run)
    assert match and match.group(1) in _titles().values()


def test_the_readme_lists_every_widget_under_its_menu():
    text = _section("napari")
    menus = _manifest()["contributions"]["menus"]
    titles = _titles()
    for menu, words in (("napari/layers/segment", "Layers > Segment"),
                        ("napari/layers/annotate", "Layers > Annotate")):
        line = re.search(rf"\*\*{re.escape(words)}\*\*: (.*?);?\n(?:- |\n)", text, re.S)
        listed = re.findall(r"\*\*([^*]+)\*\*", line.group(1))
        assert listed == [titles[entry["command"]] for entry in menus[menu]], words
    assert len(titles) == 7 and "lists all seven" in text
    samples = _manifest()["contributions"]["sample_data"]
    assert len(samples) == 4 and "for Part discovery" in text


def test_the_cpu_route_is_named_and_the_cuda_default_said():
    text = " ".join(_section("Quick start").split())  # lines wrap anywhere
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "**CUDA build**" in text and "PyTorch's own CPU wheel index" in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in ("onnx", "train", "testing"):  # writing ONNX needs the dynamo exporter's
        assert any(r.startswith("onnxscript") for r in extras[extra]), extra


def _install_script(tmp_path: Path, **env: str) -> list[str]:
    """Run scripts/install-test-deps.sh with stand-ins for python, pip and dpkg that only
    record what they are asked; torch is missing, every apt package present."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n[ "$1" = "-c" ] && exit 1\nexit 0\n')
    (bin_dir / "dpkg").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX_URL"}
    environ.update(PATH=f"{bin_dir}:{os.environ['PATH']}", **env)
    subprocess.run(["bash", str(ROOT / "scripts" / "install-test-deps.sh")], env=environ,
                   check=True, timeout=60)
    return [line for line in log.read_text().splitlines() if not line.startswith("-c")]


def test_the_install_script_takes_the_torch_index_it_is_given(tmp_path):
    plain = _install_script(tmp_path / "plain")
    assert plain == ["-m pip install -q torch==2.13.0", "-m pip install -q -e .[testing]"]
    cpu = _install_script(tmp_path / "cpu", TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu")
    assert cpu[0] == "-m pip install -q torch==2.13.0 --index-url " \
                     "https://download.pytorch.org/whl/cpu"
    assert cpu[1] == "-m pip install -q -e .[testing]"  # the package after, keeping that torch
