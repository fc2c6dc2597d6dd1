"""The one list of engines: name, title, parameters, entry point, and how batch runs them.

The command line, batch, the widgets and the manifest's tests read this table; an engine
has one name everywhere (its package under ``core``, its command, its metadata
``engine`` field, its batch name). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .backprop import BackpropParams, segment
from .backprop.estimate import estimate_memory as backprop_memory
from .base.errors import InputError
from .base.limits import USABLE, Limits, limits
from .parts import PartsParams, discover_parts
from .predict import PredictParams, predict_scene
from .predict.estimate import estimate_memory as predict_memory
from .preseg import PresegParams, run_preseg
from .preseg.estimate import estimate_memory as preseg_memory
from .train import TrainParams, train
from .train.estimate import estimate_memory as train_memory

#: Peak memory a run adds, in bytes, for an image's shape, dtype and the parameters.
Estimate = Callable[[tuple[int, ...], Any, Any], int]

#: How batch runs an engine: one file at a time, all files together, or not at all.
BatchMode = Literal["file", "collection", "none"]


@dataclass(frozen=True)
class Engine:
    """One engine of the package, as every driver sees it."""

    name: str  #: package, command, metadata ``engine`` field and batch name
    title: str  #: what a person reads: the widget's menu entry
    params: type  #: the parameter dataclass (CLI options and form fields are built from it)
    run: Callable[..., Any]  #: the generator function (yields Progress, returns a Result)
    batch: BatchMode  #: how batch runs it
    layer: str  #: result layers are called "<image> <layer>"
    widget: str  #: the dock widget, as the manifest names it ("module:Class")
    estimate: Estimate | None = None  #: peak memory of a run (None: not estimated)
    #: ``run`` takes the image's georeference (``georef=``): predict reads its pixel size.
    georef: bool = False
    #: ``run`` takes the mask of pixels without data (``excluded=``) and leaves them out
    #: of its work (the others see them filled, and every engine's result is cleared there).
    excluded: bool = False

    def run_scene(self, scene: Any, params: Any, control: Any = None) -> Any:
        """The run on a :class:`~.base.scene.Scene`: its image, and its georeference and
        nodata mask where the engine takes them (the same for the command line and batch)."""
        where: dict[str, Any] = {}
        if self.georef and scene.georef is not None:
            where["georef"] = scene.georef
        if self.excluded and scene.excluded is not None:
            where["excluded"] = scene.excluded
        return self.run(scene.image, params, control=control, **where)


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine("preseg", "Presegment", PresegParams, run_preseg, "file", "superpixels",
               "napari_unsupseg.widgets.preseg:PresegWidget", preseg_memory),
        Engine("backprop", "Unsupervised segmentation", BackpropParams, segment, "file",
               "backprop", "napari_unsupseg.widgets.backprop:BackpropWidget", backprop_memory,
               excluded=True),
        Engine("predict", "Model inference", PredictParams, predict_scene, "file", "classes",
               "napari_unsupseg.widgets.predict:PredictWidget", predict_memory, georef=True),
        Engine("parts", "Part discovery", PartsParams, discover_parts, "collection", "parts",
               "napari_unsupseg.widgets.parts:PartsWidget"),
        Engine("train", "Train from labels", TrainParams, train, "none", "trained model",
               "napari_unsupseg.widgets.train:TrainWidget", train_memory),
    )
}


def engine_named(name: str) -> Engine:
    """The engine called ``name``; an unknown name lists the choices."""
    if name not in ENGINES:
        raise InputError(f"Unknown engine '{name}'; choose from {', '.join(ENGINES)}.")
    return ENGINES[name]


def estimate_bytes(name: str, shape: tuple[int, ...], dtype: Any, params: Any) -> int | None:
    """The peak memory a run of engine ``name`` adds (bytes), or None if not estimated."""
    estimate = engine_named(name).estimate
    return None if estimate is None else int(estimate(tuple(shape), dtype, params))


@dataclass(frozen=True)
class Planned:
    """A run checked against the machine before it starts."""

    params: Any  #: the parameters to run with (backprop: maybe a lower memory budget)
    limits: Limits  #: the device line and the memory check
    note: str = ""  #: what was changed to make it fit ("" when nothing was)


def plan_run(name: str, shape: tuple[int, ...], dtype: Any, params: Any) -> Planned:
    """The device and estimated peak of a run; a backprop run that would not fit is moved
    to crop training with a budget of half the usable memory, as its own budget would."""
    threads = getattr(params, "threads", None) or None
    device = getattr(params, "device", "auto")
    found = limits(name, device, estimate_bytes(name, shape, dtype, params), threads)
    if found.fits or name != "backprop" or found.available is None:
        return Planned(params, found)
    budget = max(64, int(USABLE * found.available / 2 / 2**20))
    if budget >= params.memory_budget_mb:
        return Planned(params, found)
    params = replace(params, memory_budget_mb=budget)
    found = replace(found, estimate=estimate_bytes(name, shape, dtype, params))
    return Planned(params, found, f"training on crops (memory budget {budget} MB) to fit")


def batch_engines() -> list[Engine]:
    """The engines that batch can run, in the table's order."""
    return [engine for engine in ENGINES.values() if engine.batch != "none"]


def batch_engine(name: str) -> Engine:
    """The engine called ``name`` if batch can run it; otherwise one sentence naming those
    that it can."""
    engine = engine_named(name)
    if engine.batch == "none":
        names = ", ".join(e.name for e in batch_engines())
        raise InputError(f"Batch cannot run '{name}'; it runs {names}.")
    return engine
