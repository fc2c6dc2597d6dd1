"""What a run costs in its dock widget against the same engine run headless, in one process.

    xvfb-run -a python benchmarks/bench_widget.py [--repeats 3] [--only backprop parts train]

Three runs, each headless (the engine driven to its end, no previews) and through its
dock in a shown viewer of 1280 x 800 (live previews on, as a user has them),
alternately; the first run of each pays the torch warm-up and is not counted:

- **backprop**: the Unsupervised segmentation dock on the coffee sample, default
  parameters;
- **parts**: the Part discovery dock on the synthetic parts collection (32 images of
  128 x 128, default parameters but ``--parts-steps`` training steps: a step costs the
  same at any count);
- **train**: Train from labels on the cells sample, its top half painted, for
  ``--train-epochs`` epochs with no time limit.

Prints each time, the medians and their ratio, and the previews shown. Under
``xvfb-run`` the window is drawn by software OpenGL on the same CPU as the engine,
which is what a widget's drawing costs on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

WINDOW = (1280, 800)


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def _wait_widget(app: Any, runner: Any, start: Callable[[], None]) -> tuple[float, int]:
    """Seconds from pressing the widget's button until its runner has ended, and the
    previews it showed."""
    shown: list[int] = []
    ended: list[str] = []
    runner.previewed.connect(lambda event: shown.append(event.step))
    runner.ended.connect(lambda outcome, _value: ended.append(outcome))
    started = time.perf_counter()
    start()
    while not ended:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - started
    runner.previewed.disconnect()
    runner.ended.disconnect()
    if ended != ["done"]:
        raise RuntimeError(f"the widget's run ended {ended[0]}")
    return seconds, len(shown)


def _viewer() -> Any:
    import napari

    viewer = napari.Viewer(title="bench_widget")
    viewer.window.resize(*WINDOW)
    return viewer


def backprop_case(app: Any) -> tuple[Callable[[], str], Callable[[], tuple[float, int]], Any]:
    from napari_unsupseg.core import samples
    from napari_unsupseg.core.backprop import BackpropParams, segment
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.widgets.backprop import BackpropWidget

    image = samples.coffee()
    viewer = _viewer()
    viewer.add_image(image, name="coffee", rgb=True)
    widget = BackpropWidget(viewer)
    viewer.window.add_dock_widget(widget, name="backprop")

    def headless() -> str:
        result = run_to_end(segment(image, BackpropParams()))
        return f"{int(sum(result.metadata['iterations']))} iterations"

    return headless, lambda: _wait_widget(app, widget.runner, widget.run), viewer


def parts_case(app: Any, steps: int) -> tuple[Callable[[], str], Callable[[], tuple[float, int]],
                                              Any]:
    from napari_unsupseg.core.base.engine import run_to_end
    from napari_unsupseg.core.parts import PartsParams, discover_parts
    from napari_unsupseg.core.samples.parts import part_collection
    from napari_unsupseg.widgets.parts import PartsWidget

    images, _ = part_collection(32, 128, 4, seed=1)
    viewer = _viewer()
    viewer.add_image(images, name="objects", rgb=True)
    widget = PartsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="parts")
    widget.form.set_values({"iterations": steps, "device": "cpu"})

    def headless() -> str:
        params = PartsParams(iterations=steps, device="cpu")
        result = run_to_end(discover_parts(images, params))
        return f"{result.metadata['steps']} steps"

    return headless, lambda: _wait_widget(app, widget.runner, widget.run), viewer


def train_case(app: Any, epochs: int) -> tuple[Callable[[], str], Callable[[], tuple[float, int]],
                                               Any]:
    from napari_unsupseg.core import samples
    from napari_unsupseg.core.base.engine import drive
    from napari_unsupseg.core.train import train
    from napari_unsupseg.widgets.train import TrainWidget

    image, nuclei = samples.cells()
    nuclear = image[0]  # the nuclei channel, a grey image
    painted = np.where(nuclei > 0, 2, 1).astype(np.uint8)
    painted[painted.shape[0] // 2:] = 0
    settings = {"epochs": epochs, "time_limit": 0.0, "patience": 0, "device": "cpu"}
    viewer = _viewer()
    layer = viewer.add_image(nuclear, name="cells nuclei")
    labels = viewer.add_labels(painted, name="painted", opacity=0.5)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="train")
    widget.input.image_picker.value = layer
    widget.labels_picker.value = labels
    widget.continue_box.value = False  # every run from scratch, as the headless one
    widget.form.set_values(settings)

    def headless() -> str:
        params = widget.form.params()
        drive(train([nuclear[..., None]], [painted], params))
        return f"{epochs} epochs"

    return headless, lambda: _wait_widget(app, widget.runner, widget.train), viewer


def measure(name: str, case: tuple, repeats: int) -> float:
    headless, in_widget, viewer = case
    headless()  # warm-up: torch start, allocator, first layer
    in_widget()
    rows = []
    for _ in range(repeats):
        h_seconds, what = _timed(headless)
        w_seconds, shown = in_widget()
        rows.append((h_seconds, w_seconds))
        print(f"{name}: headless {h_seconds:6.2f} s ({what}) | widget {w_seconds:6.2f} s "
              f"({shown} previews shown) | ratio {w_seconds / h_seconds:.2f}", flush=True)
    h_median = statistics.median(r[0] for r in rows)
    w_median = statistics.median(r[1] for r in rows)
    ratio = w_median / h_median
    print(f"{name} median: headless {h_median:.2f} s, widget {w_median:.2f} s, "
          f"widget / headless = {ratio:.2f}x (goal <= 1.3x)", flush=True)
    viewer.close()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=("backprop", "parts", "train"),
                        default=("backprop", "parts", "train"))
    parser.add_argument("--parts-steps", type=int, default=60)
    parser.add_argument("--train-epochs", type=int, default=4)
    args = parser.parse_args()

    from qtpy.QtWidgets import QApplication

    _viewer().close()  # the QApplication
    app = QApplication.instance()
    ratios = {}
    if "backprop" in args.only:
        ratios["backprop"] = measure("backprop", backprop_case(app), args.repeats)
    if "parts" in args.only:
        ratios["parts"] = measure("parts", parts_case(app, args.parts_steps), args.repeats)
    if "train" in args.only:
        ratios["train"] = measure("train", train_case(app, args.train_epochs), args.repeats)
    print("widget / headless: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
