"""What every engine yields and returns, and how a driver runs one.

An engine is a generator function. It yields :class:`Progress` events (often, so
that a GUI worker can stop it at the next ``yield``) and returns a
:class:`Result`. The napari widgets and the command line are two drivers of the
same generators.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any

import numpy as np

from ... import __version__

EngineRun = Generator["Progress", None, "Result"]


@dataclass
class Progress:
    """One step of an engine.

    ``preview`` is an optional label map (the spatial shape of the result) that a
    driver may show; engines only attach one when the caller asked for previews.
    ``metrics``: further named figures of the step that an engine documents (training's
    ``epoch``, ``elapsed`` and, after an epoch, ``val_loss`` and ``val_iou``); a driver
    reads the ones it knows and shows or ignores the others.
    """

    step: int
    total: int
    loss: float | None = None
    n_labels: int | None = None
    preview: np.ndarray | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    """What an engine returns.

    ``labels``: the main output (integer labels, 0 = background or unlabelled).
    ``metadata``: JSON-serialisable provenance (engine, parameters, seed, version,
    device, timings, ...). ``extras``: further arrays (superpixels, confidence,
    part centres, ...), keyed by name.
    """

    labels: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class RunControl:
    """What a driver tells a running engine, from any thread.

    - **Finish early**: :meth:`request_stop` asks the engine to end at its next
      check and return a *finished* result from what it has so far (the same
      post-processing as a full run), with ``stopped_early: True`` in its metadata.
      Closing the generator instead abandons the run and returns nothing.
    - **Previews on demand**: an engine computes a preview only when
      :meth:`preview_due` says so, so a driver that shows four previews a second
      does not pay for one at every step. ``preview_interval``: seconds between two
      previews (``None``: never; ``0``: at every chance).
    """

    def __init__(self, preview_interval: float | None = None) -> None:
        self.preview_interval = preview_interval
        self._stop = threading.Event()
        self._last_preview = -math.inf

    def request_stop(self) -> None:
        """Ask the engine to finish with what it has (thread-safe)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def preview_due(self) -> bool:
        """Whether the engine should attach a preview now (and counts it as sent)."""
        if self.preview_interval is None:
            return False
        now = time.monotonic()
        if now - self._last_preview < self.preview_interval:
            return False
        self._last_preview = now
        return True


#: A control that never stops and never wants previews: what engines use when given none.
def no_control() -> RunControl:
    return RunControl(preview_interval=None)


def drive(run: Generator[Progress, None, Any],
          on_progress: Callable[[Progress], None] | None = None) -> Any:
    """Drive a generator of :class:`Progress` to its end and return what it returns
    (an engine's :class:`Result`, or a lower-level object such as a trained model)."""
    while True:
        try:
            event = next(run)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


def map_previews(run: Generator[Progress, None, Any],
                 change: Callable[[np.ndarray], np.ndarray]) -> Generator[Progress, None, Any]:
    """``run``'s events with every preview passed through ``change`` (another grid, the
    caller's layout); returns what ``run`` returns (use with ``yield from``)."""
    while True:
        try:
            event = next(run)
        except StopIteration as stop:
            return stop.value
        if event.preview is not None:
            event = replace(event, preview=change(event.preview))
        yield event


def run_to_end(run: EngineRun, on_progress: Callable[[Progress], None] | None = None) -> Result:
    """Drive an engine generator to completion and return its result."""
    result = drive(run, on_progress)
    if not isinstance(result, Result):
        raise TypeError("an engine must return a Result")
    return result


def to_jsonable(value: Any) -> Any:
    """Turn parameters and numpy scalars into plain JSON types."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def provenance(engine: str, params: Any, **extra: Any) -> dict[str, Any]:
    """Metadata shared by every result: engine, parameters, versions, and ``extra``."""
    return to_jsonable(
        {
            "engine": engine,
            "parameters": params,
            "napari_unsupseg_version": __version__,
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
    )


class Stopwatch:
    """Named wall-clock timings, in seconds, for a result's metadata."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._last = self._start
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + (now - self._last)
        self._last = now
        return self.timings[name]

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": time.perf_counter() - self._start}
