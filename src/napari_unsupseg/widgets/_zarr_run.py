"""Block-by-block runs of the Presegment and Model inference docks on OME-Zarr layers.

A layer opened from an OME-Zarr store (napari-ome-zarr sets ``layer.source.path`` to
the store) is never read whole: when a run covers the whole image (a 2-D image, or
"every plane" of a stack), the worker opens the store, runs the engine over level 0
block by block (:func:`~..core.predict.blocks.run_blocks`, the command line's engine)
and writes each block's labels into a new labels image of the store's ``labels/``
group (``labels/preseg``, ``labels/preseg-2``, ...: existing labels are never
replaced), which napari-ome-zarr and other OME-Zarr viewers list with the image.
The run uses every channel of the store, whichever of its channel layers is chosen (the
limits line says how many); channel layers that are not the store's make it an ordinary
run, read into memory.

The result layer is a multiscale Labels layer over the store's label arrays, added when
the worker has created them and refreshed every :data:`REFRESH_INTERVAL` seconds, so
blocks appear at whatever zoom napari shows; napari reads only the tiles it displays.

A current-plane run of a stack, and a volume run, still read their image into memory
(see :mod:`._volume`). A stopped run (Cancel pressed once) writes the OME metadata of the
blocks done (the provenance says ``stopped_early`` and how many blocks were done; the
rest is 0) and says so in a notification, so the partial labels open like any other; an
abandoned (Cancel pressed twice) or failed run leaves the arrays it had written without
that metadata (viewers do not list them), and the status line says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from magicgui import widgets

from ..core.base.engine import Progress, Result, RunControl
from ..core.base.errors import InputError
from ..core.registry import plan_run
from ._setup import RunSetup

#: Seconds between two refreshes of the result layer while blocks are written: each
#: refresh makes napari read the displayed tiles of the labels again, on the main thread.
REFRESH_INTERVAL = 1.5
#: The most of the main thread's time refreshing may take: a slow refresh (a large
#: window, slow disk) spaces the next ones, so the viewer stays responsive.
REFRESH_SHARE = 0.1
#: Engines the docks run block by block (the others need the whole image at once).
BLOCK_ENGINES = ("preseg", "predict")
DEFAULT_BLOCK = 1024


def layer_store(layer: Any) -> Path | None:
    """The OME-Zarr store ``layer`` was opened from, or None."""
    from ..core.base.omezarr import is_omezarr_path

    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or "://" in str(path):  # a remote store is read-only here
        return None
    path = Path(path)
    return path if path.is_dir() and is_omezarr_path(path) else None


@dataclass
class ZarrPlan:
    """A block-by-block run, decided on the main thread at Run (metadata only)."""

    engine: str
    store: Path
    image: Any  #: the store's :class:`~..core.base.omezarr.OmeZarrImage`
    block: int
    core: int
    margin: int  #: the widest margin a block may have (its memory estimate's)

    @property
    def extended_shape(self) -> tuple[int, int, int]:
        """The largest block an engine sees, channels last (its memory estimate's input)."""
        side = self.core + 2 * self.margin
        height, width = self.image.plane_size
        return min(side, height), min(side, width), self.image.n_channels


def zarr_plan(engine: str | None, setup: RunSetup, params: Any,
              block: int = DEFAULT_BLOCK) -> ZarrPlan | None:
    """The block-by-block run of ``setup`` when its layer comes from an OME-Zarr store and
    the run covers the whole image; None for a run that reads its image into memory."""
    if engine not in BLOCK_ENGINES or setup.plane is not None or setup.channel_axis is not None:
        return None
    if "volume" in (getattr(params, "stack_mode", None), getattr(params, "objects_mode", None)):
        return None  # the whole stack at once: the in-memory path (or its refusal)
    store = layer_store(setup.source)
    if store is None:
        return None
    from ..core.base.omezarr import open_omezarr
    from ..core.predict.blocks import block_geometry

    try:
        image = open_omezarr(store)
    except InputError:
        return None  # a zarr store that is not an OME-Zarr image: read as any lazy layer
    if image.label_shape != tuple(setup.result_shape):
        return None  # the layer is not the store's image as stored (another view of it)
    if setup.channel_data and 1 + len(setup.channel_data) != image.n_channels:
        return None  # channel layers that are not the store's channels: read them all
    core, margin = block_geometry(engine, params, block, None, image.plane_size)
    if engine == "preseg":  # the engine measures its margin on the image, up to a core
        margin = max(margin, core)
    return ZarrPlan(engine, store, image, block, core, margin)


def limits_text(plan: ZarrPlan, params: Any, dtype: Any) -> tuple[str, Any]:
    """The limits line of a block run (the estimate of one block) and its limits."""
    planned = plan_run(plan.engine, plan.extended_shape, dtype, params)
    channels = plan.image.n_channels
    text = (f"block by block ({plan.core} px blocks, {channels} channel"
            f"{'s' if channels != 1 else ''} of {plan.store.name}), labels written into "
            f"its labels/ group; {planned.limits.line} at the peak (one block)")
    segments = getattr(params, "n_segments", None)
    if plan.engine == "preseg" and segments:
        # n_segments counts superpixels in the whole image: each block gets its share,
        # which on a large image is far fewer than the number typed.
        height, width = plan.image.plane_size
        share = max(2, round(segments * min(plan.core**2, height * width) / (height * width)))
        text += f"; n_segments {segments} over the image is about {share} per block"
    return text, planned.limits


def limits_line(plan: ZarrPlan | None, setup: RunSetup) -> str | None:
    """The limits line of a block run; None for a run that reads its image whole."""
    return None if plan is None else limits_text(plan, setup.params, setup.data.dtype)[0]


def free_label_name(store: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``...: the first name no labels of the store have
    (listed in its metadata or present as a group), so a run never replaces labels."""
    labels = store / "labels"
    taken: set[str] = set()
    if labels.is_dir():
        taken.update(p.name for p in labels.iterdir())
        import zarr

        try:
            attrs = dict(zarr.open_group(str(labels), mode="r").attrs)
            taken.update(dict(attrs.get("ome", attrs)).get("labels") or [])
        except Exception:  # noqa: BLE001 - no readable metadata: the folder names suffice
            pass
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


@dataclass
class BlockRun:
    """What the worker shares with the main thread: the target once it is created."""

    plan: ZarrPlan
    name: str
    target: Any = None
    objects_target: Any = None  #: a model's objects, when it separates them
    layer: Any = None
    last_refresh: float = field(default=-float("inf"))
    interval: float = REFRESH_INTERVAL


@dataclass
class BlockOutcome:
    """A finished (or stopped) block run: the engine's result and where the labels are."""

    result: Result
    run: BlockRun
    total: int


def work(run: BlockRun, params: Any, control: RunControl,
         load_model: Callable[[], Any] | None = None,
         provenance: dict[str, Any] | None = None) -> Generator[Progress, None, BlockOutcome]:
    """The block run in the worker thread: create the labels, run, write the metadata."""
    from ..core.base.omezarr import create_labels
    from ..core.predict.blocks import labels_dtype, run_blocks

    plan = run.plan
    model = None
    if plan.engine == "predict" and load_model is not None:
        yield Progress(0, 0, message="loading the model")
        model = load_model()
    target = create_labels(plan.image, run.name, labels_dtype(plan.engine, model),
                           chunk=plan.core)
    run.target = target
    yield Progress(0, 0, message=f"writing labels/{run.name} of {plan.store.name}")
    objects = None
    if model is not None and getattr(params, "objects", False) and model.config.object_class:
        # A model that separates objects: they are split block by block and stitched
        # across borders, into labels of their own beside the classes.
        objects = create_labels(plan.image, f"{run.name}_objects", "uint32", chunk=plan.core)
    run.objects_target = objects
    # Presegmentation measures its margin on the image (None); prediction's is the tile's.
    margin = None if plan.engine == "preseg" else plan.margin
    result = yield from run_blocks(plan.image, plan.engine, params, target, model=model,
                                   block=plan.block, margin=margin, control=control,
                                   objects_target=objects)
    total = int(result.metadata.get("blocks", 0)) * int(result.metadata.get("planes", 0))
    classes = result.metadata.get("classes")
    properties = [{"label-value": int(v), "class": n} for v, n in classes.items()] \
        if classes else None
    about = {**result.metadata, **(provenance or {}), "source": str(plan.store)}
    target.finish(properties=properties, provenance=about)
    if objects is not None:
        objects.finish(provenance={**about, "objects_of": run.name})
    return BlockOutcome(result, run, total)


def add_result_layer(viewer: Any, run: BlockRun, setup: RunSetup, name: str,
                     metadata: dict[str, Any]) -> Any:
    """The multiscale Labels layer over the store's label arrays (zarr arrays, not dask:
    a dask array's chunks may be cached by napari, and a refresh must read new blocks)."""
    levels = list(run.target.levels)
    return viewer.add_labels(levels if len(levels) > 1 else levels[0],
                             multiscale=len(levels) > 1, name=name, metadata=metadata,
                             **setup.transform)


def stored_metadata(store: Path, name: str) -> dict[str, Any]:
    """Where a result layer's labels are stored: the keys the Edit stored labels dock reads
    (napari edits only single-scale labels; that dock edits a region and writes it back)."""
    from ..core.base.stored_labels import METADATA_KEY

    return {"store": str(store), "labels": name,
            METADATA_KEY: {"store": str(store), "name": name}}


def add_objects_layer(viewer: Any, run: BlockRun, setup: RunSetup) -> Any:
    """The model's objects, stitched across blocks, as a multiscale Labels layer."""
    from ._layers import unique_name

    name = f"{run.name}_objects"
    levels = list(run.objects_target.levels)
    return viewer.add_labels(levels if len(levels) > 1 else levels[0],
                             multiscale=len(levels) > 1,
                             name=unique_name(viewer, f"{setup.name} ({name})"),
                             metadata=stored_metadata(run.plan.store, name),
                             **setup.transform)


def refresh(run: BlockRun, force: bool = False) -> None:
    """Show the blocks written since the last refresh (at most every REFRESH_INTERVAL)."""
    now = time.monotonic()
    if run.layer is None or (not force and now - run.last_refresh < run.interval):
        return
    if not force and not run.layer.visible:
        return  # nothing to show: the last refresh, at the end, shows it all
    # Setting the data again, not refresh(): napari keeps its smallest level in memory
    # until the data is replaced, and would show that level as it was when first read.
    run.layer.data = list(run.target.levels)
    run.last_refresh = time.monotonic()
    run.interval = max(REFRESH_INTERVAL, (run.last_refresh - now) / REFRESH_SHARE)


def stopped_words(outcome: BlockOutcome) -> str:
    meta = outcome.result.metadata
    done = int(meta.get("blocks_done", 0))
    return f"Stopped after {done} of {outcome.total} blocks (the rest is 0)"


def count_text(result: Result) -> str:
    n = result.metadata.get("n_labels")
    if n is not None:
        return f"{int(n)} labels"
    classes = result.metadata.get("classes")
    return f"{len(classes)} classes" if classes else "labels"


def prepare(widget: Any, setup: RunSetup, plan: ZarrPlan) -> Callable[[], None]:
    """Check a block run on the main thread (one sentence on refusal, before any work)
    and return what starts it. ``widget``: the engine dock running it."""
    _, limits = limits_text(plan, setup.params, setup.data.dtype)
    if not limits.fits:
        raise InputError(limits.refusal)
    from ..core.base.omezarr import check_writable

    check_writable(plan.store)
    inputs = widget.collect_inputs(setup)
    params, load_model = widget.block_inputs(setup, inputs)
    run = BlockRun(plan, free_label_name(plan.store, plan.engine))
    where = f"{plan.store.name}/labels/{run.name}"
    provenance = {"napari": widget.result_metadata(setup, {})["napari"]}

    def after(outcome: str, _value: Any) -> None:
        widget.runner.ended.disconnect(after)
        if outcome == "abandoned" and run.target is not None:
            widget.set_status(f"Abandoned: {where} keeps the blocks written so far, without "
                              "OME metadata (viewers do not list it).")

    def start() -> None:
        widget.runner.ended.connect(after)
        widget.runner.start(
            lambda control: work(run, params, control, load_model, provenance),
            f"{widget.engine_label}: {setup.source_name}",
            status=f"Running {widget.engine_label} on '{setup.source_name}' block by block "
            f"into {where}...",
            on_progress=partial(_on_progress, widget, setup, run),
            on_result=partial(_on_result, widget, setup, run))

    return start


def _on_progress(widget: Any, setup: RunSetup, run: BlockRun, _event: Progress) -> None:
    """Main thread: add the result layer once the labels exist, then refresh it."""
    if run.target is None:
        return
    if run.layer is None:
        from ._layers import unique_name

        metadata = {"engine": widget.engine_label, "status": "being written block by block",
                    **stored_metadata(run.plan.store, run.name),
                    "napari": {"source_layer": setup.source_name}}
        run.layer = add_result_layer(
            widget.viewer, run, setup,
            unique_name(widget.viewer, f"{setup.name} ({run.name})"), metadata)
        run.last_refresh = time.monotonic()
        return
    refresh(run)


def _on_result(widget: Any, setup: RunSetup, run: BlockRun, ended: str,
               outcome: BlockOutcome) -> None:
    """Main thread: the last blocks shown, the layer dressed, the status line."""
    from napari.utils.notifications import show_info

    if run.layer is None:  # a run so short that no progress reached the main thread
        _on_progress(widget, setup, run, Progress(0, 0))
    refresh(run, force=True)
    layer, result = run.layer, outcome.result
    where = f"{run.plan.store}/labels/{run.name}"
    if layer not in widget.viewer.layers:  # removed by the user during the run
        widget.set_status(f"Done: the labels are in {where}.")
        return
    layer.metadata = {**widget.result_metadata(setup, dict(result.metadata)),
                      **stored_metadata(run.plan.store, run.name)}
    widget.style_result(layer, result, setup)
    if run.objects_target is not None:
        objects = add_objects_layer(widget.viewer, run, setup)
        where += f" (objects: labels/{run.name}_objects, layer '{objects.name}')"
    widget.viewer.layers.selection.active = layer
    if result.metadata.get("stopped_early"):
        words = f"{stopped_words(outcome)}: {where} holds the blocks done"
        show_info(f"{words}; its metadata says the run was stopped early.")
    else:
        words = f"Done: {count_text(result)}"
    widget.set_status(f"{words}, in {widget.runner.elapsed:.1f} s; written to {where}, "
                      f"shown in layer '{layer.name}'.")


class BlockSize:
    """The block side of OME-Zarr runs: a spin box shown only for a layer read from a
    store (predict blocks are also bounded by the tile size less twice the overlap)."""

    def __init__(self, image_input: Any) -> None:
        self.input = image_input
        self.widget = widgets.SpinBox(
            value=DEFAULT_BLOCK, min=16, max=16384, step=256, label="block size (px)",
            visible=False,
            tooltip="This layer comes from an OME-Zarr store: the run reads and writes it "
            "in blocks of this side, never the whole image. Larger blocks: fewer seams, "
            "more memory.")
        image_input.image_picker.changed.connect(self.update)
        self.update()

    @property
    def value(self) -> int:
        return int(self.widget.value)

    def update(self, *_: Any) -> None:
        layer = self.input.image
        self.widget.visible = layer is not None and layer_store(layer) is not None
