"""Local engines (prediction, and presegmentation) over an OME-Zarr image, block by block,
labels written as they come.

The image's level 0 is cut into square *cores* (one plane at a time); each core is read
with a *margin* around it, the engine runs on the extended block, and only the core's
labels are written to the labels array (:class:`~.base.omezarr.LabelsTarget`). Memory
is bounded by a block, never the image: neither the image nor its labels are whole in
memory at any time.

- **Prediction**: the model is loaded once; each extended block is one tile of the
  prediction engine (core = tile size - 2 x margin, margin = the tile overlap), so a
  pixel sees the same context as in the tiled whole-image run. Intensities are scaled
  once for the whole image (the sample the whole-image run takes), not per block.
- **Presegmentation**: one percentile normalisation for the whole image; the method runs
  on the extended block with ``n_segments`` scaled to the block's share of the plane,
  and the core's superpixels are numbered after those of the blocks before (unique
  across blocks and planes). Superpixels end at core borders.

:func:`seam_agreement` measures how well block borders match a whole-image run.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.images import INTENSITY_CHOICES, intensity_range, relabel_sequential
from ..base.omezarr import LabelsTarget, OmeZarrImage, read_block
from ..base.params import validate
from ..preseg import PRESEG_METHODS, PresegParams, method_kwargs

#: Engines that run here (the others need the whole image at once).
BLOCK_ENGINES = ("preseg", "predict")
#: Pixels in the intensity sample, as the engines take it (``intensity_range``).
SAMPLE_PIXELS = 1_000_000


@dataclass(frozen=True)
class Block:
    """A core (written) and the extended window around it (read)."""

    core: tuple[slice, slice]
    extended: tuple[slice, slice]

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core inside the extended block's own coordinates."""
        (cy, cx), (ey, ex) = self.core, self.extended
        return (slice(cy.start - ey.start, cy.stop - ey.start),
                slice(cx.start - ex.start, cx.stop - ex.start))


def plan_blocks(size: tuple[int, int], core: int, margin: int) -> list[Block]:
    """Cores of at most ``core`` px covering a plane row by row, each with ``margin``."""
    height, width = size
    blocks = []
    for y in range(0, height, core):
        for x in range(0, width, core):
            cy, cx = slice(y, min(y + core, height)), slice(x, min(x + core, width))
            ey = slice(max(0, y - margin), min(height, cy.stop + margin))
            ex = slice(max(0, x - margin), min(width, cx.stop + margin))
            blocks.append(Block((cy, cx), (ey, ex)))
    return blocks


def sample_image(image: OmeZarrImage) -> np.ndarray:
    """A regular subsample of level 0, channels last, of about a million pixels: the
    one the engines take from a whole image (same step), read plane by plane."""
    height, width = image.plane_size
    n_planes = math.prod(image.plane_shape)
    step = max(1, int(math.sqrt(n_planes * height * width / SAMPLE_PIXELS)))
    every = slice(None, None, step)
    return np.stack([read_block(image, plane, every, every) for plane in image.planes()])


def scale_block(block: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Intensities mapped to [0, 1] by the whole image's (low, high); constant channels 0."""
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    out = (block.astype(np.float32) - low) / span
    np.clip(out, 0.0, 1.0, out=out)
    out[..., high <= low] = 0.0
    return out


def run_blocks(image: OmeZarrImage, engine: str, params: Any, target: LabelsTarget, *,
               model: Any = None, block: int = 1024, margin: int = 32,
               control: RunControl | None = None) -> Generator[Progress, None, Result]:
    """Run ``engine`` (``preseg`` or ``predict``) over ``image`` block by block into
    ``target`` (cores and margins: :func:`block_geometry`); returns a :class:`Result`
    whose ``labels`` is the (lazy) level 0 of the target and whose metadata describes
    the run. ``target.finish`` is left to the caller
    (it writes the pyramid and metadata once the labels are complete)."""
    if engine not in BLOCK_ENGINES:
        raise InputError(f"The {engine} engine needs the whole image at once; block by "
                         f"block runs {' and '.join(BLOCK_ENGINES)}.")
    control = control or no_control()
    validate(params)
    clock = Stopwatch()
    core, margin = block_geometry(engine, params, block, margin)
    if engine == "predict":
        step_block, extra = _predict_blocks(image, params, model)
    else:
        step_block, extra = _preseg_blocks(image, params)
    clock.lap("prepare")
    blocks = plan_blocks(image.plane_size, core, margin)
    planes = list(image.planes())
    total, done = len(blocks) * len(planes), 0
    yield Progress(0, total, message=f"{len(blocks)} block(s) per plane")
    for plane in planes:
        for piece in blocks:
            if control.stop_requested:
                break
            labels = step_block(read_block(image, plane, *piece.extended), piece)
            target.write_block(plane, *piece.core, labels[piece.inner])
            done += 1
            where = ",".join(map(str, plane)) or "0"
            yield Progress(done, total, message=f"plane {where}: block {done}/{total}")
    clock.lap("blocks")
    metadata = provenance(engine, params, blocks=len(blocks), block_core=core,
                          margin=margin, planes=len(planes), blocks_done=done,
                          stopped_early=done < total, timings=clock.total(), **extra())
    return Result(labels=target.levels[0], metadata=metadata)


def _preseg_blocks(image: OmeZarrImage, params: PresegParams) -> tuple[Any, Any]:
    """The presegmentation of one extended block, and the metadata after the run."""
    sample = sample_image(image).reshape(-1, image.n_channels)
    low, high = np.percentile(sample.astype(np.float32), [params.norm_low, params.norm_high],
                              axis=0).astype(np.float32)
    plane_area = image.plane_size[0] * image.plane_size[1]
    function = PRESEG_METHODS[params.method]
    count = {"offset": 0}

    def segment(block: np.ndarray, piece: Block) -> np.ndarray:
        area = block.shape[0] * block.shape[1]
        share = replace(params, n_segments=max(2, round(params.n_segments * area / plane_area)))
        labels = function(scale_block(block, low, high), **method_kwargs(share))
        core = relabel_sequential(labels[piece.inner], np.uint32).astype(np.uint32)
        core[core > 0] += count["offset"]
        count["offset"] = max(count["offset"], int(core.max(initial=0)))
        out = np.zeros(labels.shape, np.uint32)
        out[piece.inner] = core
        return out

    return segment, lambda: {"n_labels": count["offset"], "device": "cpu", "seed": params.seed}


def block_geometry(engine: str, params: Any, block: int = 1024, margin: int = 32
                   ) -> tuple[int, int]:
    """(core, margin) of the blocks. Prediction: each extended block is one tile of the
    engine, its margin the tile overlap (as in a tiled whole-image run)."""
    if engine != "predict":
        return max(16, block), max(0, margin)
    margin = min(params.overlap, params.tile_size // 4)
    return max(32, min(block, params.tile_size - 2 * margin)), margin


def _predict_blocks(image: OmeZarrImage, params: Any, model: Any) -> tuple[Any, Any]:
    """The prediction of one extended block, and the metadata after the run."""
    from .engine import load_model, predict

    model = model if model is not None else load_model(params)
    mode = model.config.intensity if params.intensity == "auto" else params.intensity
    if mode not in INTENSITY_CHOICES or mode == "auto":
        mode = "dtype" if image.level0.dtype == np.uint8 else "percentile"
    low, high = intensity_range(sample_image(image), mode)
    # Each block is scaled here, so the engine takes it as it is (float in [0, 1]).
    # Objects are not split block by block (an object may cross a border).
    block_params = replace(params, intensity="dtype", objects=False, confidence=False)
    last: dict[str, Any] = {}

    def classify(block: np.ndarray, piece: Block) -> np.ndarray:
        from ..base.engine import drive

        result = drive(predict(scale_block(block, low, high), block_params, model))
        last.update(result.metadata)
        return result.labels

    def metadata() -> dict[str, Any]:
        keep = ("model", "class_names", "palette", "label_offset", "classes", "channels",
                "device")
        skipped = {"objects": {"class": model.config.object_class, "skipped": "objects are "
                               "not split block by block (one may cross a border)"}}
        return {**{k: last[k] for k in keep if k in last},
                "intensity": {"mode": mode, "low": low, "high": high},
                **(skipped if params.objects and model.config.object_class else {})}

    return classify, metadata


def border_pixels(size: tuple[int, int], blocks: list[Block]) -> np.ndarray:
    """A mask of the pixels on either side of every inner core border of a plane."""
    mask = np.zeros(size, bool)
    for piece in blocks:
        cy, cx = piece.core
        if cy.start > 0:
            mask[cy.start - 1:cy.start + 1, cx] = True
        if cx.start > 0:
            mask[cy, cx.start - 1:cx.start + 1] = True
    return mask


def seam_agreement(blocked: np.ndarray, whole: np.ndarray, blocks: list[Block]) -> float:
    """Share of the pixels beside block borders whose label is the whole-image run's
    (1.0 when there is no inner border)."""
    mask = border_pixels(blocked.shape[-2:], blocks)
    if not mask.any():
        return 1.0
    return float((blocked[..., mask] == whole[..., mask]).mean())


def border_pairs_split(labels: np.ndarray, blocks: list[Block]) -> float:
    """Share of the pixel pairs straddling inner core borders that lie in two different
    labels (superpixels: 1.0 block by block; a whole-plane run's share says how many of
    those cuts it has too)."""
    split = total = 0
    for piece in blocks:
        cy, cx = piece.core
        if cy.start > 0:
            pair = labels[..., cy.start - 1, cx] != labels[..., cy.start, cx]
            split, total = split + int(pair.sum()), total + pair.size
        if cx.start > 0:
            pair = labels[..., cy, cx.start - 1] != labels[..., cy, cx.start]
            split, total = split + int(pair.sum()), total + pair.size
    return split / total if total else 0.0


def labels_dtype(engine: str, model: Any = None) -> type[np.unsignedinteger]:
    """The labels' type, known before the run: a model's classes, or superpixels (many)."""
    if engine == "predict" and model is not None:
        from ..base.images import label_dtype

        return label_dtype(int(model.config.num_classes))
    return np.uint32
