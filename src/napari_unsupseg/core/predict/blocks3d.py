"""Volume mode over an OME-Zarr z-stack: overlapping 3-D blocks, stitched in 3-D.

A volume larger than memory is cut into cores in z, y and x, each read with a margin
along every axis (the z margin is the y/x margin in physical units, by the voxel
spacing). Presegmentation with ``stack_mode="volume"`` runs the volume method
(:mod:`..preseg.volume`) on each extended block with ``n_segments`` scaled to the
block's share of the volume; prediction with objects in ``objects_mode="volume"``
predicts each plane of the extended block (the model sees planes), splits its objects
in 3-D (:mod:`.objects`) and writes the core's classes and objects. Supervoxels and
objects are stitched across every face, edge and corner of the blocks written before
(:mod:`..base.stitch`). Memory is bounded by one extended block.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from ..base.engine import Progress, Result, RunControl, Stopwatch, provenance
from ..base.images import relative_spacing
from ..base.omezarr import LabelsTarget, OmeZarrImage
from ..preseg import PresegParams, check_volume_mode, segment_volume
from .blockgrid import (
    PRESEG_MARGIN_STEPS,
    VOLUME_MARGIN,
    Block,
    LabelsWriter,
    block_geometry,
    model_metadata,
    objects_metadata,
    plan_blocks,
    predict_range,
    preseg_range,
    scale_block,
)

#: Largest side (y and x) of a 3-D core.
VOLUME_CORE = 256
#: Most voxels in an extended 3-D block (320^3): the volume methods hold several float
#: copies of it (about 1-2 GiB at the most).
VOLUME_BLOCK_VOXELS = 320**3


def volume_mode(engine: str, params: Any, image: OmeZarrImage, model: Any = None,
                objects_target: LabelsTarget | None = None) -> bool:
    """Whether the run goes in 3-D blocks: a z axis of two planes or more, and volume
    presegmentation (refused in one sentence for a method that only does planes), or
    objects split as volumes with a model that separates them and a place for them."""
    if engine == "preseg" and params.stack_mode == "volume":
        check_volume_mode(params)
    if "z" not in image.axes or image.level0.shape[image.axes.index("z")] < 2:
        return False
    if engine == "preseg":
        return params.stack_mode == "volume"
    return bool(params.objects and params.objects_mode == "volume"
                and objects_target is not None and model is not None
                and model.config.object_class)


def spacing_of(params: Any) -> tuple[float, float, float]:
    return (params.spacing_z, params.spacing_y, params.spacing_x)


def volume_geometry(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                    block: int, margin: int) -> tuple[tuple[int, int, int],
                                                      tuple[int, int, int]]:
    """(core, margin) per axis (z, y, x) of 3-D blocks: y and x as asked (the core at
    most :data:`VOLUME_CORE`, less where the margin would take an extended block past
    :data:`VOLUME_BLOCK_VOXELS`), z the same physical length (by the spacing), at least
    four planes of core and one of margin."""
    sides = relative_spacing(spacing)
    margin = max(0, margin)
    margin_z = int(min(max(1, round(margin * sides[1] / sides[0])), shape[0])) if margin else 0
    side = max(16, min(block, VOLUME_CORE))
    while True:
        core_z = int(np.clip(round(side * sides[1] / sides[0]), 4, max(4, shape[0])))
        extended = (min(shape[0], core_z + 2 * margin_z)
                    * min(shape[1], side + 2 * margin) * min(shape[2], side + 2 * margin))
        if extended <= VOLUME_BLOCK_VOXELS or side <= 64:
            return (core_z, side, side), (margin_z, margin, margin)
        side -= 16


def grid_steps(shape: tuple[int, int, int], n_segments: int) -> tuple[int, int, int]:
    """The (z, y, x) steps of the seeds scikit-image's SLIC lays on a volume of ``shape``
    (its ``regular_grid``, in voxels whatever the spacing)."""
    from skimage.util import regular_grid

    z, y, x = (int(s.step or 1) for s in regular_grid(shape, max(1, n_segments)))
    return z, y, x


def volume_margin(shape: tuple[int, int, int], n_segments: int) -> int:
    """The automatic y/x margin of 3-D presegmentation blocks: a few supervoxels wide
    (:data:`PRESEG_MARGIN_STEPS`), within :data:`VOLUME_MARGIN`."""
    step = grid_steps(shape, n_segments)[1]
    return int(np.clip(PRESEG_MARGIN_STEPS * step, *VOLUME_MARGIN))


def read_volume(image: OmeZarrImage, lead: dict[str, int], zs: slice, ys: slice,
                xs: slice) -> np.ndarray:
    """One window of a z-stack, channels last ``(z, y, x, C)``; ``lead``: the other
    leading axes (t) by name."""
    window = {"z": zs, "y": ys, "x": xs, "c": slice(None), **lead}
    block = np.asarray(image.level0[tuple(window[a] for a in image.axes)])
    if image.channel_axis is None:
        return block[..., np.newaxis]
    return np.moveaxis(block, 0, -1)  # c comes before z, y and x


def run_volume_blocks(image: OmeZarrImage, engine: str, params: Any, target: LabelsTarget,
                      *, model: Any = None, block: int = 256, margin: int | None = None,
                      control: RunControl, objects_target: LabelsTarget | None = None,
                      stitch: bool = True) -> Generator[Progress, None, Result]:
    """Run ``engine`` in volume mode over ``image`` in 3-D blocks (see the module)."""
    clock = Stopwatch()
    z_axis = image.axes.index("z")
    size = (int(image.level0.shape[z_axis]), *image.plane_size)
    align: int | tuple[int, int, int] = 1
    if engine == "predict":
        side, margin = block_geometry(engine, params, block, margin)  # within a tile
        core, margins = volume_geometry(size, spacing_of(params), side, margin)
        step_block, extra = _predict_volume(image, params, model, target, objects_target,
                                            stitch)
    else:
        if margin is None:
            margin = volume_margin(size, params.n_segments)
        core, margins = volume_geometry(size, spacing_of(params), block, margin)
        # slic's seeds lie on a grid counted from the block's corner: blocks that start on
        # its steps lay the whole volume's grid (watershed's grid is the block's own).
        align = grid_steps(size, params.n_segments) if params.method == "slic" else 1
        step_block, extra = _preseg_volume(image, params, target, stitch, size)
    clock.lap("prepare")
    blocks = plan_blocks(size, core, margins, align)
    others = [a for a in image.plane_axes if a != "z"]
    leads = list(np.ndindex(*(int(image.level0.shape[image.axes.index(a)]) for a in others)))
    total, done = len(blocks) * len(leads), 0
    yield Progress(0, total, message=f"{len(blocks)} 3-D block(s) per volume")
    for lead_index in leads:
        lead = dict(zip(others, lead_index, strict=True))
        written: list[Block] = []

        def place(window: tuple[slice, ...], lead: dict[str, int] = lead) -> tuple:
            zs, ys, xs = window
            return tuple(zs if a == "z" else lead[a] for a in image.plane_axes), ys, xs

        for piece in blocks:
            if control.stop_requested:
                break
            step_block(read_volume(image, lead, *piece.extended), piece, written, place)
            written.append(piece)
            done += 1
            yield Progress(done, total, message=f"3-D block {done}/{total}")
    clock.lap("blocks")
    metadata = provenance(engine, params, blocks=len(blocks), block_core=list(core),
                          margin=list(margins), block_align=align if isinstance(align, int)
                          else list(align), volumes=len(leads),
                          blocks_done=done,
                          stopped_early=done < total, segmented_as="volume",
                          spacing=list(spacing_of(params)), timings=clock.total(), **extra())
    return Result(labels=target.levels[0], metadata=metadata)


def _preseg_volume(image: OmeZarrImage, params: PresegParams, target: LabelsTarget,
                   stitch: bool, size: tuple[int, int, int]) -> tuple[Any, Any]:
    """Supervoxels of one extended 3-D block, written; and the metadata after."""
    low, high = preseg_range(image, params)
    voxels = math.prod(size)
    writer = LabelsWriter(target, stitch)

    def segment(block: np.ndarray, piece: Block, written: list[Block], place: Any) -> None:
        share = max(2, round(params.n_segments * math.prod(block.shape[:3]) / voxels))
        labels = segment_volume(scale_block(block, low, high),
                                replace(params, n_segments=share))
        writer.write(labels, piece, written, place)

    return segment, lambda: {"n_labels": writer.count, "device": "cpu", "seed": params.seed,
                             "stitched": {"on": stitch, "labels_continued": writer.matched}}


def _predict_volume(image: OmeZarrImage, params: Any, model: Any, target: LabelsTarget,
                    objects_target: LabelsTarget, stitch: bool) -> tuple[Any, Any]:
    """Classes of each plane of one extended 3-D block and its objects split in 3-D,
    written (the objects stitched); and the metadata after."""
    from ..base.engine import drive
    from .engine import predict
    from .objects import separate_objects

    mode, low, high = predict_range(image, params, model)
    block_params = replace(params, intensity="dtype", objects=False, confidence=False)
    object_class = model.config.object_class
    writer = LabelsWriter(objects_target, stitch)
    last: dict[str, Any] = {}

    def classify(block: np.ndarray, piece: Block, written: list[Block], place: Any) -> None:
        result = drive(predict(scale_block(block, low, high), block_params, model))
        last.update(result.metadata)
        target.write_block(*place(piece.core), result.labels[piece.inner])
        objects = separate_objects(result.labels == object_class, spacing_of(params))
        writer.write(objects, piece, written, place)

    def metadata() -> dict[str, Any]:
        return {**model_metadata(last), "intensity": {"mode": mode, "low": low, "high": high},
                **objects_metadata(params, object_class, writer)}

    return classify, metadata
