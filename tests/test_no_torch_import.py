"""Opening napari and docking the plugin's widgets must not import torch.

Checked in a fresh interpreter (this test session may have imported torch
already), with the display that pytest-xvfb provides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

DOCK_AND_REPORT = textwrap.dedent(
    """
    import json, sys
    import napari
    import napari_unsupseg

    viewer = napari.Viewer(show=False)
    viewer.open_sample("napari-unsupseg", "coffee")
    viewer.open_sample("napari-unsupseg", "cells")
    viewer.open_sample("napari-unsupseg", "critters")
    for name in ("Presegment", "Unsupervised segmentation"):
        _, widget = viewer.window.add_plugin_dock_widget("napari-unsupseg", name)
        widget.image_picker.value = viewer.layers["coffee"]
        widget.form.params()  # the form builds the engine's parameters
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    viewer.close()
    print("TORCH_MODULES=" + json.dumps(loaded))
    """
)


def _torch_modules(code: str) -> list[str]:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # vispy needs the real (virtual) display
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TORCH_MODULES="))
    return json.loads(line.split("=", 1)[1])


def test_importing_the_widget_modules_does_not_import_torch():
    code = (
        "import json, sys\n"
        "import napari_unsupseg.widgets.preseg, napari_unsupseg.widgets.backprop\n"
        "import napari_unsupseg._samples\n"
        "print('TORCH_MODULES=' + json.dumps(sorted(m for m in sys.modules "
        "if m == 'torch' or m.startswith('torch.'))))\n"
    )
    assert _torch_modules(code) == []


@pytest.mark.gui
def test_docking_the_widgets_does_not_import_torch():
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (pytest-xvfb provides one)")
    assert _torch_modules(DOCK_AND_REPORT) == []
