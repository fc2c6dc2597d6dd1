"""Which object comes next, and how to frame one in a view (pure arithmetic, no viewer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..base.errors import InputError
from .table import n_dims, row_of


def review_order(
    table: Mapping[str, np.ndarray],
    by: str = "label",
    descending: bool = False,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """The labels in the order to visit them: sorted by ``by``, only the rows ``keep`` selects.

    Ties keep ascending label order, so the order is stable from call to call.
    """
    if by not in table:
        raise InputError(f"The table has no column '{by}'; it has {', '.join(table)}.")
    labels = np.asarray(table["label"])
    values = np.asarray(table[by])
    rows = np.arange(labels.size) if keep is None else np.flatnonzero(keep)
    key = values[rows]
    if descending:
        # lexsort sorts ascending; reverse the rank of the values, not the tie order.
        _, rank = np.unique(key, return_inverse=True)
        key = -rank
    order = rows[np.lexsort((labels[rows], key))]
    return labels[order]


def step(order: Sequence[int] | np.ndarray, current: int | None, offset: int = 1) -> int | None:
    """The label ``offset`` places after ``current`` in ``order``, wrapping around.

    When ``current`` is not in the order (none chosen yet, or filtered out), the first
    label (moving forward) or the last (moving back) is the answer; None if the order is
    empty.
    """
    order = np.asarray(order)
    if order.size == 0:
        return None
    where = np.flatnonzero(order == current) if current is not None else np.array([], int)
    if where.size == 0:
        return int(order[0] if offset >= 0 else order[-1])
    return int(order[(int(where[0]) + offset) % order.size])


@dataclass(frozen=True)
class Framing:
    """Where to look: a centre in data coordinates, and the box half-size it must show."""

    center: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def framing(table: Mapping[str, np.ndarray], label: int) -> Framing:
    """The centroid of ``label`` and its bounding box (pixel edges), in data coordinates."""
    row = row_of(table, label)
    ndim = n_dims(table)
    center = tuple(float(table[f"centroid-{a}"][row]) for a in range(ndim))
    lower = tuple(float(table[f"bbox-{a}"][row]) - 0.5 for a in range(ndim))
    upper = tuple(float(table[f"bbox-{a + ndim}"][row]) - 0.5 for a in range(ndim))
    return Framing(center, lower, upper)


def zoom_to_fill(
    extent: Sequence[float], canvas: Sequence[float], fill: float = 0.5, max_zoom: float = 40.0
) -> float:
    """Canvas pixels per world unit so that a box of ``extent`` fills ``fill`` of the canvas.

    ``extent`` and ``canvas`` are the (height, width) of the object (world units) and of
    the canvas (screen pixels). Tiny objects stop at ``max_zoom``.
    """
    extent = np.maximum(np.asarray(extent, dtype=float), 1.0)
    canvas = np.asarray(canvas, dtype=float)
    return float(min(max_zoom, fill * float(np.min(canvas / extent))))
