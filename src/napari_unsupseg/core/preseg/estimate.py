"""Peak memory of a presegmentation run: a few image-sized float arrays, per method."""

from __future__ import annotations

import math

import numpy as np

from .engine import PresegParams

#: Bytes per pixel of one plane: (fixed, per channel), measured on 3-channel images
#: (benchmarks/bench_memory.py): the float copies, colour features and the method's own.
#: slic was measured; the others are given as much, quickshift and spectral (float64
#: features, a graph) twice as much.
_PER_PIXEL: dict[str, tuple[int, int]] = {
    "slic": (34, 12),
    "felzenszwalb": (34, 12),
    "quickshift": (68, 24),
    "watershed": (34, 12),
    "kmeans": (34, 12),
    "spectral": (68, 24),
}
_FIXED = 16 * 2**20


def estimate_memory(shape: tuple[int, ...], dtype: np.dtype, params: PresegParams) -> int:
    """Bytes the run adds for a channels-last ``(..., Y, X, C)`` image: the normalised
    stack (float32), the int64 labels, and one plane's working arrays (the whole
    volume's in volume mode, which segments the stack at once)."""
    channels = shape[-1]
    at_once = shape[:-1] if params.stack_mode == "volume" else shape[-3:-1]
    plane = math.prod(at_once)
    fixed, per_channel = _PER_PIXEL.get(params.method, (68, 24))
    stack = math.prod(shape[:-1])
    return stack * (4 * channels + 8) + plane * (fixed + per_channel * channels) + _FIXED
