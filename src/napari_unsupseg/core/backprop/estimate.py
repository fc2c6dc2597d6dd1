"""Peak memory of a backprop run, from the budget arithmetic that chooses the large-image path
(:mod:`.large`): one estimate decides the path and tells the user."""

from __future__ import annotations

import numpy as np

from .large import crops_bytes, needs_crops, training_bytes
from .params import BackpropParams

#: Measured above the per-pixel figures: PyTorch's CPU runtime and the shrunk copy's
#: training (benchmarks/bench_memory.py).
_FIXED = 100 * 2**20


def estimate_memory(shape: tuple[int, ...], dtype: np.dtype, params: BackpropParams) -> int:
    """Bytes the run adds to memory for a channels-last ``(..., Y, X, C)`` image: the crop
    path's when the image is over ``memory_budget_mb``, else whole-image training plus
    the labelling (the normalised copy, superpixels and labels are within the per-pixel
    figures, which were fitted to whole runs)."""
    itemsize = np.dtype(dtype).itemsize
    # Volume mode has no crop path (over the budget it is refused): its whole-volume run.
    if params.stack_mode != "volume" and needs_crops(shape, params, itemsize):
        return crops_bytes(shape, params, itemsize) + _FIXED
    return training_bytes(shape, params) + _FIXED
