"""The one list of engines: name, title, parameters, entry point, and how batch runs them.

The command line, batch, the widgets and the manifest's tests read this table; an engine
has one name everywhere (its package under ``core``, its command, its metadata
``engine`` field, its batch name). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .backprop import BackpropParams, segment
from .base.errors import InputError
from .parts import PartsParams, discover_parts
from .predict import PredictParams, predict_scene
from .preseg import PresegParams, run_preseg
from .train import TrainParams, train

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
    #: ``run`` takes the image's georeference (``georef=``): predict reads its pixel size.
    georef: bool = False

    def run_scene(self, scene: Any, params: Any, control: Any = None) -> Any:
        """The run on a :class:`~.base.scene.Scene`: its image, and its georeference
        where the engine takes one (the same for the command line and batch)."""
        where = {"georef": scene.georef} if self.georef and scene.georef is not None else {}
        return self.run(scene.image, params, control=control, **where)


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine("preseg", "Presegment", PresegParams, run_preseg, "file", "superpixels",
               "napari_unsupseg.widgets.preseg:PresegWidget"),
        Engine("backprop", "Unsupervised segmentation", BackpropParams, segment, "file",
               "backprop", "napari_unsupseg.widgets.backprop:BackpropWidget"),
        Engine("predict", "Model inference", PredictParams, predict_scene, "file", "classes",
               "napari_unsupseg.widgets.predict:PredictWidget", georef=True),
        Engine("parts", "Part discovery", PartsParams, discover_parts, "collection", "parts",
               "napari_unsupseg.widgets.parts:PartsWidget"),
        Engine("train", "Train from labels", TrainParams, train, "none", "trained model",
               "napari_unsupseg.widgets.train:TrainWidget"),
    )
}


def engine_named(name: str) -> Engine:
    """The engine called ``name``; an unknown name lists the choices."""
    if name not in ENGINES:
        raise InputError(f"Unknown engine '{name}'; choose from {', '.join(ENGINES)}.")
    return ENGINES[name]


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
