"""Make the README screenshots of the napari widgets.

Run with a display, or a virtual one::

    xvfb-run -a python docs/make_screenshots.py

(without a display it starts one with pyvirtualdisplay if that is installed).
Writes to ``docs/images/``:

- ``backprop_widget.png``: napari with the coffee sample and the backprop widget;
- ``backprop_widget_panel.png``: the widget alone;
- ``backprop_live_preview.png``: the live preview while the network trains;
- ``backprop_result_editable.png``: the result, being corrected with the brush;
- ``preseg_widget.png``: the presegmentation widget with superpixels;
- ``review_widget.png``: the review widget stepping through the cells sample's nuclei;
- ``train_widget.png``: training from labels on the cells sample, with its loss plot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images"
#: The window size of the screenshots: a 1280 x 800 screen, where the docks must fit.
WINDOW = (1280, 800)


def _virtual_display():
    if os.environ.get("DISPLAY") or sys.platform != "linux":
        return None
    try:
        from pyvirtualdisplay import Display
    except ImportError:
        sys.exit("No display: run under `xvfb-run -a` or install pyvirtualdisplay.")
    display = Display(visible=False, size=(1600, 1000))
    display.start()
    return display


def _wait(app, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the run took too long")
        app.processEvents()
        time.sleep(0.02)


def _scroll_to(app, dock, child) -> None:
    """Scroll a dock's content (it scrolls when taller than the window) to ``child``."""
    from qtpy.QtWidgets import QScrollArea

    app.processEvents()
    dock.findChild(QScrollArea).ensureWidgetVisible(child)
    app.processEvents()


def _save(array, name: str) -> Path:
    from skimage.io import imsave

    path = OUT / name
    imsave(path, array, check_contrast=False)
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40, help="backprop iterations")
    parser.add_argument("--train-seconds", type=float, default=40.0, help="training time")
    args = parser.parse_args(argv)
    display = _virtual_display()
    try:
        import napari
        import numpy as np
        from qtpy.QtWidgets import QApplication

        OUT.mkdir(parents=True, exist_ok=True)
        viewer = napari.Viewer(title="napari-unsupseg")
        viewer.window.resize(*WINDOW)
        viewer.open_sample("napari-unsupseg", "coffee")
        dock, widget = viewer.window.add_plugin_dock_widget(
            "napari-unsupseg", "Unsupervised segmentation"
        )
        app = QApplication.instance()
        app.processEvents()
        viewer.reset_view()
        widget.form.set_values(
            {"max_iter": args.iterations, "patience": 0, "min_labels": 4, "seed": 0}
        )
        app.processEvents()
        _save(viewer.screenshot(canvas_only=False, flash=False), "backprop_widget.png")
        widget.grab().save(str(OUT / "backprop_widget_panel.png"))
        print(f"wrote {OUT / 'backprop_widget_panel.png'}")

        finished: list[str] = []
        widget.run_finished.connect(finished.append)
        widget.run()
        # Mid-run: wait for a preview a third of the way in.
        _wait(
            app,
            lambda: finished
            or (
                widget.result_layer is not None
                and widget.progress_bar.value() >= args.iterations // 3
            ),
            timeout=600,
        )
        _scroll_to(app, widget, widget.status)  # the status line says how far it is
        _save(viewer.screenshot(canvas_only=False, flash=False), "backprop_live_preview.png")
        _wait(app, lambda: bool(finished), timeout=900)

        # The editable result: paint a correction with the brush.
        layer = widget.result_layer
        layer.opacity = 0.6
        layer.mode = "paint"
        layer.brush_size = 12
        layer.selected_label = int(np.asarray(layer.data).max()) + 1
        for x in range(120, 260, 4):
            layer.paint((200, x), layer.selected_label)
        _scroll_to(app, widget, widget.status)
        _save(viewer.screenshot(canvas_only=False, flash=False), "backprop_result_editable.png")

        # The presegmentation widget (in place of the backprop one).
        viewer.layers.remove(layer)
        viewer.window.remove_dock_widget(dock)
        _, preseg = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Presegment")
        preseg.image_picker.value = viewer.layers["coffee"]
        preseg.form.set_values({"method": "felzenszwalb", "scale": 100.0, "min_size": 50})
        preseg.mean_colour.value = True
        done: list[str] = []
        preseg.run_finished.connect(done.append)
        preseg.run()
        _wait(app, lambda: bool(done), timeout=300)
        viewer.reset_view()
        app.processEvents()
        _save(viewer.screenshot(canvas_only=False, flash=False), "preseg_widget.png")
        viewer.close()
        _review_and_train(app, args.train_seconds)
    finally:
        if display is not None:
            display.stop()
    return 0


def _review_and_train(app, train_seconds: float) -> None:
    """The review widget on the cells sample's nuclei, then training from painted labels."""
    import napari
    import numpy as np

    viewer = napari.Viewer(title="napari-unsupseg")
    viewer.window.resize(*WINDOW)
    viewer.open_sample("napari-unsupseg", "cells")
    truth = viewer.layers["cells nuclei truth"]
    truth.visible = True
    dock, review = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Review labels")
    review.choose_layer(truth)
    review.measure()
    review.navigator.go(1)
    review.navigator.go(1)
    app.processEvents()
    _save(viewer.screenshot(canvas_only=False, flash=False), "review_widget.png")
    viewer.window.remove_dock_widget(dock)
    viewer.reset_view()

    # What a user paints: background (1) and nuclei (2) on the top half only.
    data = np.asarray(truth.data)
    painted = np.where(data > 0, 2, 1).astype(np.uint8)
    painted[data.shape[0] // 2 :] = 0
    truth.visible = False
    labels = viewer.add_labels(painted, name="painted", opacity=0.5)
    _, train = viewer.window.add_plugin_dock_widget("napari-unsupseg", "Train from labels")
    train.input.image_picker.value = viewer.layers["cells nuclei"]
    train.labels_picker.value = labels
    train.form.set_values({"time_limit": train_seconds})
    done: list[str] = []
    train.runner.ended.connect(lambda outcome, _value: done.append(outcome))
    train.train()
    _wait(app, lambda: bool(done), timeout=train_seconds + 300)
    train.apply()
    _wait(app, lambda: not train.runner.running, timeout=300)
    labels.visible = False
    _scroll_to(app, train, train.plot)  # the dock scrolls: show its loss plot
    _save(viewer.screenshot(canvas_only=False, flash=False), "train_widget.png")
    viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
