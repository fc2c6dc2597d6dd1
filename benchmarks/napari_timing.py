"""Measuring a napari session while a run goes: the process's memory, the main thread's
frame gaps (and, for diagnosis, where it was while late), camera moves that make napari
load tiles. Used by ``bench_napari_zarr.py``."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = (1280, 800)
TICK_MS = 20
SLOW_MS = 200.0
TRACE_S = 15.0


class Memory:
    """The process's RSS, sampled from a thread; ``peak`` since the last ``reset``."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.trace: list[float] = []  #: RSS (GiB) every TRACE_S seconds since ``reset``
        self._next = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            rss = self.process.memory_info().rss
            self.peak = max(self.peak, rss)
            if time.perf_counter() >= self._next:
                self.trace.append(rss / 2**30)
                self._next = time.perf_counter() + TRACE_S

    def reset(self) -> None:
        self.peak = self.process.memory_info().rss
        self.trace = []
        self._next = 0.0

    def stop(self) -> None:
        self._stop.set()


class Frames:
    """Gaps between the ticks of a 20 ms timer on the main thread; with ``stalls``, a
    thread also notes where the main thread is while a tick is late (the innermost
    frames of its stack, counted), to tell what holds it."""

    def __init__(self, stalls: bool = False) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.gaps: list[float] = []
        self.ends: list[float] = []  #: when each gap ended
        self.adding: list[tuple[float, float]] = []  #: layers being added: (start, end)
        self.where: dict[str, int] = {}
        self._last = time.perf_counter()
        self._main = threading.get_ident()
        self._watch = stalls
        self._running = threading.Event()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        if stalls:
            threading.Thread(target=self._watchdog, daemon=True).start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000)
        self.ends.append(now)
        self._last = now

    def follow(self, viewer: Any) -> None:
        """Note when napari adds a layer (it builds the layer's visual and controls on the
        main thread, once per layer: a cost of napari's, apart from the run's)."""
        viewer.layers.events.inserting.connect(
            lambda _e: self.adding.append((time.perf_counter(), float("inf"))))
        viewer.layers.events.inserted.connect(
            lambda _e: self.adding.append((self.adding.pop()[0], time.perf_counter())))

    def _watchdog(self) -> None:
        import traceback

        while True:
            time.sleep(0.05)
            late = time.perf_counter() - self._last
            if not self._running.is_set() or late < SLOW_MS / 1000 * 0.75:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            # The innermost frames, and the package's own frame that led there.
            own = [f for f in stack if "napari_unsupseg" in f.filename][-1:]
            key = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                              for f in [*reversed(stack[-3:]), *own])
            self.where[key] = self.where.get(key, 0) + 1

    def start(self) -> None:
        self.gaps.clear()
        self.ends.clear()
        self.adding.clear()
        self.where.clear()
        self._last = time.perf_counter()
        self._running.set()
        self.timer.start(TICK_MS)

    def stop(self) -> str:
        self.timer.stop()
        self._running.clear()
        gaps = np.asarray(self.gaps or [0.0])
        ends = np.asarray(self.ends or [0.0])
        adding = np.zeros(len(gaps), bool)
        for start, end in self.adding:  # the gaps that overlap a layer being added
            adding |= (ends - gaps / 1000 < end) & (ends > start)
        text = "main thread: " + describe(gaps, "the whole run")
        if adding.any():
            text += (f"\n  main thread without the {len(self.adding)} layer addition(s) "
                     f"({gaps[adding].max():.0f} ms at most): {describe(gaps[~adding], 'rest')}")
        for key, n in sorted(self.where.items(), key=lambda item: -item[1])[:8]:
            text += f"\n    late x{n} (50 ms samples) in: {key}"
        return text


def describe(gaps: np.ndarray, what: str) -> str:
    gaps = gaps if gaps.size else np.zeros(1)
    slow = int((gaps > SLOW_MS).sum())
    verdict = "met" if slow == 0 else "NOT met"
    return (f"{gaps.size} ticks ({what}), max gap {gaps.max():.0f} ms, 99th percentile "
            f"{np.percentile(gaps, 99):.0f} ms, {slow} over {SLOW_MS:.0f} ms (goal none: "
            f"{verdict})")


class Camera:
    """Pans and zooms over the image, so napari loads tiles at several levels."""

    def __init__(self, viewer: Any, size: float, every: float) -> None:
        from qtpy.QtCore import QTimer

        self.viewer, self.size, self.step = viewer, size, 0
        self.timer = QTimer()
        self.timer.timeout.connect(self._move)
        self.every = every

    def _move(self) -> None:
        self.step += 1
        rng = np.random.default_rng(self.step)
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") \
            else self.viewer.camera
        centre = rng.uniform(0.1, 0.9, 2) * self.size
        camera.center = (*camera.center[:-2], *centre)
        camera.zoom = float(rng.choice([0.05, 0.2, 1.0])) * WINDOW[1] / self.size * 8

    def start(self) -> None:
        if self.every > 0:
            self.timer.start(int(self.every * 1000))

    def stop(self) -> None:
        self.timer.stop()


def idle(seconds: float, frames: Frames, camera: Camera) -> None:
    """The main thread's gaps with no run: what napari costs here by itself."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    frames.start()
    camera.start()
    loop.exec()
    camera.stop()
    print(f"  {frames.stop()}", flush=True)
