"""What a run costs in the widget against the same engine run headless, in one process.

    xvfb-run -a python benchmarks/bench_widget.py [--repeats 3]

Runs the backprop segmenter on the coffee sample with default parameters, headless
(``run_to_end``) and through the Unsupervised segmentation dock widget in a viewer
(live previews on, as a user has them), alternately; the first run of each pays the
torch warm-up and is not counted. Prints each time, the medians, their ratio and the
number of previews the engine computed and the widget showed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def headless(image: np.ndarray) -> tuple[float, int]:
    from napari_unsupseg.core.backprop import BackpropParams, segment
    from napari_unsupseg.core.base.engine import run_to_end

    started = time.perf_counter()
    result = run_to_end(segment(image, BackpropParams()))
    return time.perf_counter() - started, int(sum(result.metadata["iterations"]))


def in_widget(app, widget) -> tuple[float, int, int]:
    shown: list[int] = []
    done: list[str] = []
    widget.runner.previewed.connect(lambda event: shown.append(event.step))
    widget.run_finished.connect(done.append)
    started = time.perf_counter()
    widget.run()
    while not done:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - started
    widget.runner.previewed.disconnect()
    widget.run_finished.disconnect()
    iterations = int(sum(widget.result_layer.metadata["iterations"]))
    return seconds, iterations, len(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unsupseg.core import samples
    from napari_unsupseg.widgets.backprop import BackpropWidget

    image = samples.coffee()
    viewer = napari.Viewer(show=False)
    viewer.add_image(image, name="coffee", rgb=True)
    widget = BackpropWidget(viewer)
    viewer.window.add_dock_widget(widget, name="backprop")
    app = QApplication.instance()

    headless(image)  # warm-up: torch start, allocator
    in_widget(app, widget)
    rows = []
    for _ in range(args.repeats):
        h_seconds, h_iters = headless(image)
        w_seconds, w_iters, shown = in_widget(app, widget)
        rows.append((h_seconds, w_seconds))
        print(f"headless {h_seconds:6.2f} s ({h_iters} iterations, all restarts) | "
              f"widget {w_seconds:6.2f} s ({w_iters} iterations, {shown} previews shown) | "
              f"ratio {w_seconds / h_seconds:.2f}")
    h_median = statistics.median(r[0] for r in rows)
    w_median = statistics.median(r[1] for r in rows)
    print(f"median: headless {h_median:.2f} s, widget {w_median:.2f} s, "
          f"widget / headless = {w_median / h_median:.2f}x (goal <= 1.3x)")
    viewer.close()


if __name__ == "__main__":
    main()
