"""Peak memory of training: the images' normalised copies and the batches of crops
through the network with the model and its optimiser state."""

from __future__ import annotations

import math

import numpy as np

from .params import TrainParams

#: Activations and gradients per crop pixel (bytes) per network, measured on the CPU for
#: the classic U-Net at its default width (benchmarks/bench_memory.py); the others scaled.
_PER_CROP_PIXEL = {"unet": 2_000}
_OTHER_PER_CROP_PIXEL = 12_000
_FIXED = 115 * 2**20


def estimate_memory(shape: tuple[int, ...], dtype: np.dtype, params: TrainParams) -> int:
    """Bytes the run adds for one channels-last ``(..., Y, X, C)`` image (for several,
    the sum of the image terms: :func:`estimate_memory_of`)."""
    return estimate_memory_of([shape], params)


def estimate_memory_of(shapes: list[tuple[int, ...]], params: TrainParams) -> int:
    """Bytes the run adds for several images: their float32 copies and label maps, and
    one batch of crops through the network (the closing predictions of the painted
    windows stayed under it on 256-1024 px images)."""
    copies = sum(math.prod(s[:-1]) * (4 * s[-1] + 8) for s in shapes)
    per_pixel = _PER_CROP_PIXEL.get(params.architecture, _OTHER_PER_CROP_PIXEL)
    width = params.unet_channels / 8 if params.architecture == "unet" else 1.0
    batch = int(params.batch_size * params.crop_size**2 * per_pixel * width)
    return copies + batch + _FIXED
