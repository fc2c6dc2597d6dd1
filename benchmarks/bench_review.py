"""Review speed on 10,000 objects in a 4096 x 4096 label image.

Prints, for the object table, next-object navigation, merge, split and comparison,
the time taken, the peak memory allocated (tracemalloc, numpy included), and the
ratio to a naive per-label loop run in the same process (``labels == k`` for every
object, the way a quick script would do it). The naive table is timed on a sample
of labels and scaled to all of them; scikit-image's ``regionprops_table`` is timed
in full as a second reference.

    python benchmarks/bench_review.py [--size 4096] [--grid 100]
    xvfb-run -a python benchmarks/bench_review.py --viewer   # also the widget in a viewer

With ``--viewer`` the "Review labels" widget is timed in a real viewer too: next
object (camera, plane, selection, table row, redraw) and a merge from the button to
the updated table, against measuring the whole table again.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_unsupseg.core import review as R


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
    """Best wall time (s) over ``repeat`` runs, peak traced memory (MiB) of the last, result."""
    best, out = np.inf, None
    for _ in range(repeat):
        tracemalloc.start()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return best, peak / 2**20, out


def wall(fn: Callable[[], Any]) -> float:
    """Wall time (s) of one call, without tracing memory (that slows a viewer's redraw)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_labels(size: int, grid: int, seed: int = 0) -> np.ndarray:
    """``grid * grid`` rectangles of random size, one per tile, labelled 1..grid²."""
    rng = np.random.default_rng(seed)
    tile = size // grid
    heights = rng.integers(tile // 3, tile - 1, grid * grid)
    widths = rng.integers(tile // 3, tile - 1, grid * grid)
    tile_index = np.minimum(np.arange(size) // tile, grid - 1)
    local = np.arange(size) - tile_index * tile
    tile_id = tile_index[:, None] * grid + tile_index[None, :]
    inside = (local[:, None] < heights[tile_id]) & (local[None, :] < widths[tile_id])
    return np.where(inside, tile_id + 1, 0).astype(np.uint32)


def naive_table(labels: np.ndarray, image: np.ndarray, ids: np.ndarray) -> list[tuple]:
    rows = []
    for k in ids:
        mask = labels == k
        coords = np.nonzero(mask)
        rows.append((k, mask.sum(), *(c.mean() for c in coords),
                     *(c.min() for c in coords), *(c.max() + 1 for c in coords),
                     image[mask].mean()))
    return rows


def report(
    name: str, seconds: float, peak: float | None, baseline: float | None, note: str = ""
) -> None:
    ratio = f"{baseline / seconds:9.1f}x faster" if baseline else " " * 16
    memory = f"peak {peak:8.1f} MiB" if peak is not None else " " * 18
    print(f"{name:<34} {seconds * 1e3:10.2f} ms  {memory}  {ratio}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--grid", type=int, default=100, help="grid x grid objects")
    parser.add_argument("--sample", type=int, default=20, help="labels timed in the naive loop")
    parser.add_argument("--viewer", action="store_true", help="time the widget in a viewer")
    args = parser.parse_args()

    labels = make_labels(args.size, args.grid)
    image = np.random.default_rng(1).random(labels.shape, dtype=np.float32)
    n = len(np.unique(labels)) - 1
    print(f"{n} objects on {labels.shape[0]} x {labels.shape[1]} ({labels.dtype}); "
          f"labels {labels.nbytes / 2**20:.0f} MiB, image {image.nbytes / 2**20:.0f} MiB")

    # --- table
    t, peak, table = timed(lambda: R.measure(labels, {"0": image}), repeat=2)
    sample = np.linspace(1, n, args.sample).astype(int)
    t_naive, _, _ = timed(lambda: naive_table(labels, image, sample))
    naive_full = t_naive / args.sample * n
    report("table (measure)", t, peak, naive_full,
           f"naive loop: {naive_full:.0f} s for all ({args.sample} timed)")
    from skimage.measure import regionprops_table

    t_rp, peak_rp, _ = timed(lambda: regionprops_table(
        labels, image, properties=("label", "area", "centroid", "bbox", "intensity_mean")))
    report("  reference: regionprops_table", t_rp, peak_rp, None,
           f"measure is {t_rp / t:.1f}x faster")

    # --- navigation
    order = R.review_order(table, "area", descending=True)

    def hundred_steps() -> None:
        current = None
        for _ in range(100):
            current = R.step(order, current, 1)
            frame = R.framing(table, current)
            R.zoom_to_fill(np.subtract(frame.upper, frame.lower), (800, 1000))

    t_nav, peak_nav, _ = timed(hundred_steps, repeat=3)

    def naive_steps() -> None:
        for k in order[:5]:
            coords = np.nonzero(labels == k)
            _ = [c.mean() for c in coords], [(c.min(), c.max()) for c in coords]

    t_nav_naive, _, _ = timed(naive_steps)
    report("next object (per step)", t_nav / 100, peak_nav, t_nav_naive / 5,
           "naive: find the object's pixels each step")

    # --- merge / split: with the boxes of a fresh table (as the widget does), and without
    a, b = int(labels[5, 5]), int(labels[5, args.size // args.grid + 5])
    rows = {int(v): k for k, v in enumerate(table["label"].tolist())}
    boxes = {k: R.table.bbox_of(table, rows[k]) for k in (a, b)}

    def naive_merge() -> np.ndarray:
        out = labels.copy()  # the whole layer is rewritten
        out[np.isin(out, [a, b])] = a
        return out

    t_merge_naive, _, _ = timed(naive_merge)
    t_merge, peak_merge, change = timed(lambda: R.merge(labels, [a, b], boxes=boxes), repeat=3)
    report("merge two objects (table boxes)", t_merge, peak_merge, t_merge_naive,
           f"writes {change.size} px of {labels.size}")
    t_scan, peak_scan, _ = timed(lambda: R.merge(labels, [a, b]), repeat=3)
    report("merge two objects (no table)", t_scan, peak_scan, t_merge_naive,
           "finds the boxes by scanning the image")
    box = boxes[a]
    seeds = [(box[0].start, box[1].start), (box[0].stop - 1, box[1].stop - 1)]
    t_split, peak_split, change = timed(
        lambda: R.split_by_seeds(labels, a, seeds, boxes=boxes), repeat=3)
    report("split one object (two seeds)", t_split, peak_split, t_merge_naive,
           f"writes {change.size} px; baseline: whole-layer merge rewrite")

    # --- whole-image clean-ups, against the per-label loop a script would write
    from scipy import ndimage

    holed = labels.copy()
    rng = np.random.default_rng(2)
    holed[rng.integers(0, labels.shape[0], 3000), rng.integers(0, labels.shape[1], 3000)] = 0
    t_fill, peak_fill, change = timed(lambda: R.fill_holes(holed))
    t_fill_naive, _, _ = timed(lambda: [ndimage.binary_fill_holes(holed == k) for k in sample[:3]])
    report("fill holes (all objects)", t_fill, peak_fill, t_fill_naive / 3 * n,
           f"{change.size} px filled; naive: binary_fill_holes per label")
    t_small, peak_small, change = timed(lambda: R.remove_small(labels, 300))
    t_small_naive, _, _ = timed(lambda: [(labels == k).sum() for k in sample])
    report("remove objects < 300 px", t_small, peak_small, t_small_naive / args.sample * n,
           f"{change.size} px cleared; naive: one mask per label")

    # --- comparison
    candidate = labels.copy()
    R.delete(labels, list(range(1, n, 10))).apply(candidate)
    t_cmp, peak_cmp, result = timed(lambda: R.compare(labels, candidate))
    report("compare two label images", t_cmp, peak_cmp, None,
           f"recall {result.recall:.3f}, precision {result.precision:.3f}")
    if args.viewer:
        bench_widget(labels, t)


def bench_widget(labels: np.ndarray, t_table: float) -> None:
    """The widget's next object and merge in a real viewer (needs a display)."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unsupseg.widgets.review import ReviewWidget

    viewer = napari.Viewer(show=True)
    layer = viewer.add_labels(labels.copy(), name="objects")
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    QApplication.processEvents()

    def step() -> None:
        widget.navigator.go(1)
        QApplication.processEvents()

    for highlight in (False, True):
        widget.navigator.highlight.value = highlight
        step()
        times = [wall(step) for _ in range(10)]
        report(f"viewer: next (highlight {highlight})", float(np.median(times)), None,
               None, f"median of 10, worst {max(times) * 1e3:.0f} ms, redraw included")
    size = labels.shape[1] // 100
    widget.model.set_selection([int(layer.data[5, 5]), int(layer.data[5, size + 5])])

    def merge() -> None:
        widget.actions.buttons["merge"].click()
        QApplication.processEvents()

    t_merge = wall(merge)
    report("viewer: merge, table updated", t_merge, None, t_table,
           "baseline: measuring the whole table again")
    viewer.close()


if __name__ == "__main__":
    main()
