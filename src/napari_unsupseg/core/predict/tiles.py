"""Tiles for model inference: the tile plan of one axis, streaming blending of tile
probabilities into labels, and batches of same-shaped tiles (numpy; torch only inside
:meth:`Blender.add`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TilePlan", "plan_tiles", "Blender", "batches", "count_batches"]


@dataclass
class TilePlan:
    """Tile extents along one axis, their blending windows and the segments they share.

    ``starts[i]:ends[i]`` is tile ``i``; ``segments`` are the pieces between all tile
    edges, ``covering[k]`` the tiles over segment ``k``; ``tile_segments[i]`` the
    segments inside tile ``i``.
    """

    starts: list[int]
    ends: list[int]
    windows: list[np.ndarray]
    segments: list[tuple[int, int]]
    covering: list[list[int]]
    tile_segments: list[list[int]]


def _ramp(n: int, ramp: int) -> np.ndarray:
    """Window of length n rising smoothly (sin^2) over the first ``ramp`` pixels."""
    if ramp <= 0:
        return np.ones(n, np.float32)
    u = (np.arange(n, dtype=np.float64) + 0.5) / ramp
    w = np.where(u < 1.0, np.sin(0.5 * np.pi * np.clip(u, 0, 1)) ** 2, 1.0)
    return np.maximum(w, 1e-3).astype(np.float32)


def plan_tiles(length: int, tile: int, overlap: int, multiple: int = 1) -> TilePlan:
    """Fewest tiles of at most ``tile`` px (plus < ``multiple`` for the last) covering
    ``length`` with about ``overlap`` px shared; starts and inner lengths are multiples of
    ``multiple`` so that each tile's feature grid lines up with the whole image's."""
    multiple = max(1, int(multiple))
    tile = max(multiple, tile // multiple * multiple)
    overlap = max(0, min(overlap, tile // 2))
    if length <= tile:
        starts, ends = [0], [length]
    else:
        starts, ends = _spread(length, tile, overlap, multiple)
    n = len(starts)
    windows = []
    for i in range(n):
        lo = max(0, ends[i - 1] - starts[i]) if i > 0 else 0
        hi = max(0, ends[i] - starts[i + 1]) if i < n - 1 else 0
        size = ends[i] - starts[i]
        windows.append(np.minimum(_ramp(size, lo), _ramp(size, hi)[::-1]))
    edges = sorted(set(starts) | set(ends))
    segments = list(zip(edges[:-1], edges[1:], strict=True))
    covering = [[i for i in range(n) if starts[i] <= a and b <= ends[i]] for a, b in segments]
    tile_segments = [[k for k, cov in enumerate(covering) if i in cov] for i in range(n)]
    return TilePlan(starts, ends, windows, segments, covering, tile_segments)


def _spread(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], list[int]]:
    """Tile starts and ends: the fewest tiles, evenly spread and as small as they can be."""
    first = max(2, math.ceil((length - overlap) / (tile - overlap)))
    for n in range(first, first + 4):
        size = math.ceil((length + (n - 1) * overlap) / n)
        size = min(tile, math.ceil(size / multiple) * multiple)
        starts = [int(i * (length - size) / (n - 1)) // multiple * multiple for i in range(n)]
        ends = [s + size for s in starts[:-1]] + [length]
        if len(set(starts)) == n and all(
                starts[i + 1] <= ends[i] - min(overlap, multiple) for i in range(n - 1)):
            return starts, ends
    # Fallback (coarse multiples): fixed step, the last tile flush with the end.
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, step))
    last = (length - tile) // multiple * multiple
    if last > starts[-1]:
        starts.append(last)
    ends = [s + tile for s in starts[:-1]] + [length]
    return starts, ends


class Blender:
    """Streams tile probabilities into labels (and confidence), keeping only unfinished
    overlap pieces in memory."""

    def __init__(self, ys: TilePlan, xs: TilePlan, labels: np.ndarray,
                 confidence: np.ndarray | None, offset: int) -> None:
        self.ys, self.xs = ys, xs
        self.labels, self.confidence, self.offset = labels, confidence, offset
        self.pending: dict[tuple[int, int], list[Any]] = {}

    def add(self, ty: int, tx: int, logits: Any) -> None:
        """``logits``: (classes, tile height, tile width) float32 CPU tensor of tile (ty, tx).

        Pieces only this tile covers take the arg-max of the logits directly (the softmax
        is only computed where needed: overlaps, and the confidence when asked for)."""
        import torch

        ys, xs = self.ys, self.xs
        y0, x0 = ys.starts[ty], xs.starts[tx]
        for sy in ys.tile_segments[ty]:
            ya, yb = ys.segments[sy]
            for sx in xs.tile_segments[tx]:
                xa, xb = xs.segments[sx]
                part = logits[:, ya - y0:yb - y0, xa - x0:xb - x0]
                expected = len(ys.covering[sy]) * len(xs.covering[sx])
                if expected == 1:
                    best = part.argmax(0).numpy()
                    confidence = None
                    if self.confidence is not None:
                        confidence = torch.softmax(part, 0).amax(0).numpy()
                    self._write(ya, yb, xa, xb, best, confidence)
                    continue
                probs = torch.softmax(part, 0).numpy()
                weight = np.outer(ys.windows[ty][ya - y0:yb - y0],
                                  xs.windows[tx][xa - x0:xb - x0])
                entry = self.pending.get((sy, sx))
                if entry is None:
                    entry = self.pending[(sy, sx)] = [probs * weight, weight.copy(), 1]
                else:
                    entry[0] += probs * weight
                    entry[1] += weight
                    entry[2] += 1
                if entry[2] == expected:
                    del self.pending[(sy, sx)]
                    blended = entry[0] / entry[1]
                    self._write(ya, yb, xa, xb, blended.argmax(axis=0),
                                None if self.confidence is None else blended.max(axis=0))

    def flush(self) -> None:
        """Write the overlaps some of whose tiles never came (a run stopped early) from
        the tiles that did."""
        for (sy, sx), (weighted, weight, _) in self.pending.items():
            (ya, yb), (xa, xb) = self.ys.segments[sy], self.xs.segments[sx]
            blended = weighted / weight
            self._write(ya, yb, xa, xb, blended.argmax(axis=0),
                        None if self.confidence is None else blended.max(axis=0))
        self.pending.clear()

    def _write(self, ya: int, yb: int, xa: int, xb: int, best: np.ndarray,
               confidence: np.ndarray | None) -> None:
        if self.offset:
            best = best + self.offset
        self.labels[ya:yb, xa:xb] = best
        if confidence is not None:
            self.confidence[ya:yb, xa:xb] = confidence


def batches(tiles: list[tuple[int, int]], ys: TilePlan, xs: TilePlan, size: int):
    """Consecutive tiles of the same shape, at most ``size`` at a time (row-major order)."""
    batch: list[tuple[int, int]] = []
    shape = None
    for ty, tx in tiles:
        this = (ys.ends[ty] - ys.starts[ty], xs.ends[tx] - xs.starts[tx])
        if batch and (this != shape or len(batch) == size):
            yield batch
            batch = []
        batch.append((ty, tx))
        shape = this
    if batch:
        yield batch


def count_batches(tiles: list[tuple[int, int]], ys: TilePlan, xs: TilePlan, size: int) -> int:
    return sum(1 for _ in batches(tiles, ys, xs, size))

