"""The grid of blocks that :mod:`.blocks` and :mod:`.blocks3d` run engines on: cores and
their margins in 2-D or 3-D, labels written core by core (stitched across borders:
:mod:`..base.stitch`), the image's intensity sample, and the seam measures.

A *core* is written; the *extended* block (the core and a margin around it) is read and
segmented. Blocks are taken in raster order, so the margin of a block overlaps cores
written before it; :class:`LabelsWriter` compares its labels there with the written ones
and gives each label that continues a written one that label's id.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.images import INTENSITY_CHOICES, intensity_range
from ..base.omezarr import LabelsTarget, OmeZarrImage, read_block
from ..base.stitch import MIN_IOU, stitch_block

#: Pixels in the intensity sample, as the engines take it (``intensity_range``).
SAMPLE_PIXELS = 1_000_000


@dataclass(frozen=True)
class Block:
    """A core (written) and the extended window around it (read): slices of (y, x) or of
    (z, y, x)."""

    core: tuple[slice, ...]
    extended: tuple[slice, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core inside the extended block's own coordinates."""
        return tuple(slice(c.start - e.start, c.stop - e.start)
                     for c, e in zip(self.core, self.extended, strict=True))

    @property
    def shape(self) -> tuple[int, ...]:
        """The extended block's shape."""
        return tuple(e.stop - e.start for e in self.extended)


def plan_blocks(size: tuple[int, ...], core: int | tuple[int, ...],
                margin: int | tuple[int, ...], align: int | tuple[int, ...] = 1
                ) -> list[Block]:
    """Cores of at most ``core`` px (per axis, or one for all) covering a plane ``(Y, X)``
    or a volume ``(Z, Y, X)`` in raster order (the last axis fastest), each with
    ``margin`` around it (clipped at the edges). ``align`` (per axis, or one for y and
    x): the extended blocks start on multiples of it (their margin before the core grows
    by less than ``align``), so that a method's grid of seeds, counted from the block's
    corner, lies where the whole image's does."""
    ndim = len(size)
    cores = (core,) * ndim if isinstance(core, int) else tuple(core)
    margins = (margin,) * ndim if isinstance(margin, int) else tuple(margin)
    steps = ((1,) * (ndim - 2) + (align,) * 2) if isinstance(align, int) else tuple(align)
    steps = tuple(max(1, a) for a in steps)
    starts = [range(0, n, c) for n, c in zip(size, cores, strict=True)]
    blocks = []
    for corner in itertools.product(*starts):
        spans = [(slice(s, min(s + c, n)), m, n, a)
                 for s, c, m, n, a in zip(corner, cores, margins, size, steps, strict=True)]
        blocks.append(Block(tuple(c for c, _, _, _ in spans),
                            tuple(slice(max(0, (c.start - m) // a * a), min(n, c.stop + m))
                                  for c, m, n, a in spans)))
    return blocks


def done_mask(piece: Block, done: list[Block]) -> np.ndarray:
    """Where, inside ``piece``'s extended block, the cores of ``done`` lie."""
    mask = np.zeros(piece.shape, bool)
    for other in done:
        window = []
        for c, e in zip(other.core, piece.extended, strict=True):
            start, stop = max(c.start, e.start), min(c.stop, e.stop)
            if stop <= start:
                break
            window.append(slice(start - e.start, stop - e.start))
        else:
            mask[tuple(window)] = True
    return mask


#: Where a window of the labels lies: (leading index, ys, xs) for the target.
Place = Callable[[tuple[slice, ...]], tuple[tuple, slice, slice]]


@dataclass
class LabelsWriter:
    """Writes the cores of one labels image whose ids are numbered here (superpixels,
    objects): each block's labels stitched to those written before (``stitch``), or
    all new (ids unique across the image either way)."""

    target: LabelsTarget
    stitch: bool = True
    min_iou: float = MIN_IOU
    next_id: int = 1
    matched: int = field(default=0, init=False)  #: block labels that continued a written one

    @property
    def count(self) -> int:
        """Ids handed out so far (the labels are 1..count)."""
        return self.next_id - 1

    def write(self, labels: np.ndarray, piece: Block, done: list[Block],
              place: Place) -> None:
        """Write ``labels`` (of ``piece``'s extended block, 0 = background) into the
        core; ``done``: the blocks of this plane or volume written before."""
        overlap = done_mask(piece, done) if self.stitch and done else None
        if overlap is not None and overlap.any():
            written = self.target.read_block(*place(piece.extended))
        else:
            overlap = np.zeros(labels.shape, bool)
            written = np.zeros(labels.shape, np.uint32)
        start = self.next_id
        core, self.next_id = stitch_block(labels, written, overlap, piece.inner,
                                          self.next_id, self.min_iou)
        kept = np.unique(core[(core > 0) & (core < start)]).size
        self.matched += int(kept)
        self.target.write_block(*place(piece.core), core.astype(self.target.levels[0].dtype))


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


def border_pairs(labels: np.ndarray, blocks: list[Block]
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The two sides of every inner core border: for each core and each axis where it
    does not start the image, (the last row before it, its first row) of ``labels``
    (``(..., Y, X)`` for 2-D blocks, ``(..., Z, Y, X)`` for 3-D ones)."""
    for piece in blocks:
        ndim = len(piece.core)
        for axis, span in enumerate(piece.core):
            if span.start == 0:
                continue
            before = list(piece.core)
            after = list(piece.core)
            before[axis] = span.start - 1
            after[axis] = span.start
            lead = (Ellipsis,) if labels.ndim > ndim else ()
            yield labels[(*lead, *before)], labels[(*lead, *after)]


def border_pixels(size: tuple[int, ...], blocks: list[Block]) -> np.ndarray:
    """A mask of the pixels on either side of every inner core border."""
    mask = np.zeros(size, bool)
    for piece in blocks:
        for axis, span in enumerate(piece.core):
            if span.start > 0:
                window = list(piece.core)
                window[axis] = slice(span.start - 1, span.start + 1)
                mask[tuple(window)] = True
    return mask


def seam_agreement(blocked: np.ndarray, whole: np.ndarray, blocks: list[Block]) -> float:
    """Share of the pixels beside block borders whose label is the whole-image run's
    (classes; 1.0 when there is no inner border)."""
    ndim = len(blocks[0].core) if blocks else 2
    mask = border_pixels(blocked.shape[-ndim:], blocks)
    if not mask.any():
        return 1.0
    return float((blocked[..., mask] == whole[..., mask]).mean())


def border_pairs_split(labels: np.ndarray, blocks: list[Block]) -> float:
    """Share of the pixel pairs straddling inner core borders that lie in two different
    labels (superpixels not stitched: 1.0; a whole-image run's share says how many of
    those cuts it has too)."""
    split = total = 0
    for a, b in border_pairs(labels, blocks):
        pair = a != b
        split, total = split + int(pair.sum()), total + pair.size
    return split / total if total else 0.0


def border_pair_agreement(blocked: np.ndarray, whole: np.ndarray,
                          blocks: list[Block]) -> float:
    """Rand index on the pixel pairs straddling inner core borders: the share of those
    pairs that both labellings put alike (one label in both, or two labels in both).
    Label ids need not match (superpixels, objects); 1.0 without inner borders."""
    agree = total = 0
    for (a, b), (c, d) in zip(border_pairs(blocked, blocks), border_pairs(whole, blocks),
                              strict=True):
        same = (a == b) == (c == d)
        agree, total = agree + int(same.sum()), total + same.size
    return agree / total if total else 1.0

def cut_at_cores(labels: np.ndarray, blocks: list[Block]) -> np.ndarray:
    """``labels`` numbered anew inside each core (uint64), so that no label crosses a core
    border: what a run without stitching writes (stitching renames each block's labels
    one to one, so this undoes exactly the joins it made). 0 stays 0."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint64)
    top = int(labels.max(initial=0)) + 1
    ndim = len(blocks[0].core) if blocks else labels.ndim
    lead = (Ellipsis,) if labels.ndim > ndim else ()
    for number, piece in enumerate(blocks):
        where = (*lead, *piece.core)
        part = labels[where].astype(np.uint64)
        out[where] = np.where(part > 0, part + np.uint64(number * top), 0)
    return out


def preseg_range(image: OmeZarrImage, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """The percentile (low, high) of each channel of the whole image's sample."""
    sample = sample_image(image).reshape(-1, image.n_channels)
    low, high = np.percentile(sample.astype(np.float32), [params.norm_low, params.norm_high],
                              axis=0).astype(np.float32)
    return low, high

#: Margin of presegmentation blocks, in steps of the seed grid (the side of one
#: superpixel). Measured on smooth blobs with slic, stitched superpixels agree with a
#: whole-plane run on 84%, 98% and 100% of the pixel pairs across block borders with
#: margins of 2, 4 and 8 steps (seeds 16 px apart), 95% and 99% with 4 and 6 (32 px).
PRESEG_MARGIN_STEPS = 6
#: Bounds of the automatic y/x margin of 3-D blocks (voxels): their memory grows as the
#: cube of their side.
VOLUME_MARGIN = (32, 128)


def seed_step(size: tuple[int, ...], n_segments: int) -> int:
    """The step of the grid of seeds that grid-seeded methods (slic, watershed) lay on a
    plane of ``size`` for ``n_segments`` (scikit-image's ``regular_grid``): blocks that
    start on its multiples, with ``n_segments`` scaled to their area, lay the same grid."""
    return max(1, round((math.prod(size) / max(1, n_segments)) ** (1.0 / len(size))))


def block_geometry(engine: str, params: Any, block: int = 1024, margin: int | None = None,
                   size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(core, margin) of the blocks. Prediction: each extended block is one tile of the
    engine, its margin the tile overlap (as in a tiled whole-image run). Presegmentation:
    ``margin`` as given, else :data:`PRESEG_MARGIN_STEPS` superpixels of a plane of
    ``size`` (32 px without one)."""
    if engine != "predict":
        if margin is None:
            margin = 32 if size is None else PRESEG_MARGIN_STEPS * seed_step(
                size, params.n_segments)
        return max(16, block), max(0, margin)
    margin = min(params.overlap, params.tile_size // 4)
    return max(32, min(block, params.tile_size - 2 * margin)), margin


def predict_range(image: OmeZarrImage, params: Any, model: Any
                  ) -> tuple[str, np.ndarray, np.ndarray]:
    """The intensity mode and the whole image's (low, high) for the model."""
    mode = model.config.intensity if params.intensity == "auto" else params.intensity
    if mode not in INTENSITY_CHOICES or mode == "auto":
        mode = "dtype" if image.level0.dtype == np.uint8 else "percentile"
    low, high = intensity_range(sample_image(image), mode)
    return mode, low, high

def model_metadata(last: dict[str, Any]) -> dict[str, Any]:
    """What a block's prediction says of the model and its classes."""
    keep = ("model", "class_names", "palette", "label_offset", "classes", "channels",
            "device")
    return {k: last[k] for k in keep if k in last}

def objects_metadata(params: Any, object_class: int | None,
                     writer: LabelsWriter | None) -> dict[str, Any]:
    """The objects entry of a block run's metadata (none without objects)."""
    if not (params.objects and object_class):
        return {}
    if writer is None:
        return {"objects": {"class": object_class, "skipped": "no labels image was given "
                            "for the objects"}}
    return {"objects": {"class": object_class, "count": writer.count,
                        "stitched": {"on": writer.stitch,
                                     "labels_continued": writer.matched}}}
