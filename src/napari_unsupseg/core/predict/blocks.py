"""Local engines (prediction, and presegmentation) over an OME-Zarr image, block by block,
labels written as they come.

The image's level 0 is cut into square *cores* (one plane at a time; a z-stack in
volume mode: cubes of planes, :mod:`.blocks3d`); each core is read with a *margin*
around it, the engine runs on the extended block, and only the core's labels are
written to the labels array (:class:`~.base.omezarr.LabelsTarget`). Memory is bounded by
a block, never the image: neither the image nor its labels are whole in memory at any
time.

- **Prediction**: the model is loaded once; each extended block is one tile of the
  prediction engine (core = tile size - 2 x margin, margin = the tile overlap), so a
  pixel sees the same context as in the tiled whole-image run. Intensities are scaled
  once for the whole image (the sample the whole-image run takes), not per block. With
  a second target (``objects_target``) and a model that separates objects, each
  extended block's objects are split (:mod:`.objects`) and stitched across borders.
- **Presegmentation**: one percentile normalisation for the whole image; the method runs
  on the extended block with ``n_segments`` scaled to the block's share of the plane.

Superpixels and objects are *stitched* (:mod:`..base.stitch`): in the margin that
overlaps cores already written, a block's labels are compared with the written ones,
and a label that continues a written one (IoU >= 0.5 there) takes its id; the others get
new ids, unique across blocks and planes. Written labels never change.
:func:`border_pair_agreement` measures how well block borders match a whole-image run.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.omezarr import LabelsTarget, OmeZarrImage, read_block
from ..base.params import validate
from ..preseg import PRESEG_METHODS, PresegParams, method_kwargs
from .blockgrid import (
    PRESEG_MARGIN_STEPS,
    SAMPLE_PIXELS,
    Block,
    LabelsWriter,
    block_geometry,
    border_pair_agreement,
    border_pairs,
    border_pairs_split,
    border_pixels,
    cut_at_cores,
    model_metadata,
    objects_metadata,
    plan_blocks,
    predict_range,
    preseg_range,
    sample_image,
    scale_block,
    seam_agreement,
    seed_step,
)
from .blocks3d import run_volume_blocks, volume_mode

__all__ = ["BLOCK_ENGINES", "SAMPLE_PIXELS", "Block", "LabelsWriter", "block_geometry",
           "border_pair_agreement", "border_pairs", "border_pairs_split", "border_pixels",
           "cut_at_cores", "labels_dtype", "plan_blocks", "run_blocks", "sample_image",
           "scale_block", "seam_agreement", "seed_step", "volume_mode"]

#: Engines that run here (the others need the whole image at once).
BLOCK_ENGINES = ("preseg", "predict")


def run_blocks(image: OmeZarrImage, engine: str, params: Any, target: LabelsTarget, *,
               model: Any = None, block: int = 1024, margin: int | None = None,
               control: RunControl | None = None, objects_target: LabelsTarget | None = None,
               stitch: bool = True) -> Generator[Progress, None, Result]:
    """Run ``engine`` (``preseg`` or ``predict``) over ``image`` block by block into
    ``target`` (cores and margins: :func:`block_geometry`); returns a :class:`Result`
    whose ``labels`` is the (lazy) level 0 of the target and whose metadata describes
    the run. ``margin``: presegmentation's (none: a few superpixels wide, so that the
    stitched superpixels agree with a whole-image run). ``objects_target``: where a
    prediction's objects go (models that separate objects; none: no objects).
    ``stitch=False`` numbers each block's superpixels or objects on their own (labels
    end at core borders). Volume mode (``stack_mode="volume"``; ``objects_mode=
    "volume"`` with objects) on an image with a z axis runs in 3-D blocks
    (:mod:`.blocks3d`). ``target.finish`` is left to the caller (it writes the pyramid
    and metadata once the labels are complete)."""
    if engine not in BLOCK_ENGINES:
        raise InputError(f"The {engine} engine needs the whole image at once; block by "
                         f"block runs {' and '.join(BLOCK_ENGINES)}.")
    control = control or no_control()
    validate(params)
    if engine == "predict" and model is None:
        from .engine import load_model

        model = load_model(params)
    if volume_mode(engine, params, image, model, objects_target):
        return (yield from run_volume_blocks(
            image, engine, params, target, model=model, block=block, margin=margin,
            control=control, objects_target=objects_target, stitch=stitch))
    clock = Stopwatch()
    probe = engine == "preseg" and margin is None
    core, margin = block_geometry(engine, params, block, margin, image.plane_size)
    # One intensity range for the whole image (its sample reads every chunk: once).
    scaling = preseg_range(image, params) if engine == "preseg" else None
    if probe:
        margin = probed_margin(image, params, core, margin, scaling)
    if engine == "predict":
        step_block, extra = _predict_blocks(image, params, model, target, objects_target,
                                            stitch)
    else:
        step_block, extra = _preseg_blocks(image, params, target, stitch, scaling)
    clock.lap("prepare")
    align = seed_step(image.plane_size, params.n_segments) if engine == "preseg" else 1
    blocks = plan_blocks(image.plane_size, core, margin, align)
    planes = list(image.planes())
    total, done = len(blocks) * len(planes), 0
    yield Progress(0, total, message=f"{len(blocks)} block(s) per plane")
    for plane in planes:
        written: list[Block] = []

        def place(window: tuple[slice, ...], plane: tuple = plane) -> tuple:
            return (plane, *window)

        for piece in blocks:
            if control.stop_requested:
                break
            step_block(read_block(image, plane, *piece.extended), piece, written, place)
            written.append(piece)
            done += 1
            where = ",".join(map(str, plane)) or "0"
            yield Progress(done, total, message=f"plane {where}: block {done}/{total}")
    clock.lap("blocks")
    metadata = provenance(engine, params, blocks=len(blocks), block_core=core,
                          margin=margin, block_align=align, planes=len(planes), blocks_done=done,
                          stopped_early=done < total, timings=clock.total(), **extra())
    return Result(labels=target.levels[0], metadata=metadata)


def _preseg_blocks(image: OmeZarrImage, params: PresegParams, target: LabelsTarget,
                   stitch: bool, scaling: Any) -> tuple[Any, Any]:
    """The presegmentation of one extended block, written; and the metadata after."""
    low, high = scaling
    plane_area = image.plane_size[0] * image.plane_size[1]
    function = PRESEG_METHODS[params.method]
    writer = LabelsWriter(target, stitch)

    def segment(block: np.ndarray, piece: Block, written: list[Block], place: Any) -> None:
        area = block.shape[0] * block.shape[1]
        share = replace(params, n_segments=max(2, round(params.n_segments * area / plane_area)))
        labels = function(scale_block(block, low, high), **method_kwargs(share))
        writer.write(labels, piece, written, place)

    return segment, lambda: {"n_labels": writer.count, "device": "cpu", "seed": params.seed,
                             "stitched": {"on": stitch, "labels_continued": writer.matched}}


def probed_margin(image: OmeZarrImage, params: PresegParams, core: int, margin: int,
                  scaling: Any) -> int:
    """The presegmentation margin from the superpixels' real size: the method runs once on
    a window at the centre of the first plane (as large as an extended block), and the
    margin is :data:`PRESEG_MARGIN_STEPS` of its superpixels, at least ``margin`` (the
    seed grid's) and, above that, at most ``core`` (an extended block stays within three
    cores a side). Methods often return far fewer superpixels than
    asked on smooth images (slic joins its small pieces): a margin of seed steps is then
    narrower than two superpixels, and neighbouring blocks cut them differently."""
    height, width = image.plane_size
    side_y, side_x = min(height, core + 2 * margin), min(width, core + 2 * margin)
    ys = slice((height - side_y) // 2, (height - side_y) // 2 + side_y)
    xs = slice((width - side_x) // 2, (width - side_x) // 2 + side_x)
    low, high = scaling
    window = scale_block(read_block(image, next(image.planes()), ys, xs), low, high)
    share = replace(params, n_segments=max(2, round(params.n_segments * side_y * side_x
                                                      / (height * width))))
    count = len(np.unique(PRESEG_METHODS[params.method](window, **method_kwargs(share))))
    step = math.sqrt(side_y * side_x / max(1, count))
    return int(max(margin, min(core, round(PRESEG_MARGIN_STEPS * step))))


def _predict_blocks(image: OmeZarrImage, params: Any, model: Any, target: LabelsTarget,
                    objects_target: LabelsTarget | None, stitch: bool) -> tuple[Any, Any]:
    """The prediction of one extended block, written (and its objects, stitched); and
    the metadata after the run."""
    from ..base.engine import drive
    from .engine import predict
    from .objects import separate_objects

    mode, low, high = predict_range(image, params, model)
    # Each block is scaled here, so the engine takes it as it is (float in [0, 1]).
    # Objects are split here, on the extended block, and stitched across borders.
    block_params = replace(params, intensity="dtype", objects=False, confidence=False)
    object_class = model.config.object_class if params.objects else None
    writer = LabelsWriter(objects_target, stitch) \
        if object_class and objects_target is not None else None
    last: dict[str, Any] = {}

    def classify(block: np.ndarray, piece: Block, written: list[Block], place: Any) -> None:
        result = drive(predict(scale_block(block, low, high), block_params, model))
        last.update(result.metadata)
        target.write_block(*place(piece.core), result.labels[piece.inner])
        if writer is not None:
            writer.write(separate_objects(result.labels == object_class), piece, written,
                         place)

    def metadata() -> dict[str, Any]:
        return {**model_metadata(last), "intensity": {"mode": mode, "low": low, "high": high},
                **objects_metadata(params, object_class, writer)}

    return classify, metadata


def labels_dtype(engine: str, model: Any = None) -> type[np.unsignedinteger]:
    """The labels' type, known before the run: a model's classes, or superpixels (many)."""
    if engine == "predict" and model is not None:
        from ..base.images import label_dtype

        return label_dtype(int(model.config.num_classes))
    return np.uint32
