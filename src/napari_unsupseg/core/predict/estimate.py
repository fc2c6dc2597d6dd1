"""Peak memory of a prediction: bounded by the tile, not the image (:mod:`.engine`).

The model is not loaded for the estimate (it is read when the run starts): its size is
the checkpoint file's, and its activations per tile pixel a constant per kind of network.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .engine import PredictParams
from .objects import MAX_OBJECT_PIXELS

#: Activations, logits and blending buffers per tile pixel (bytes), measured on the CPU
#: (benchmarks/bench_memory.py): the U-Net that training here makes (depth 3, 8 channels);
#: DeepLabV3+ MobileNetV2 and other large networks (about 0.6 GiB per 1024 px tile,
#: benchmarks/bench_inference.py).
_PER_TILE_PIXEL = {"small": 330, "large": 600}
#: A model file under this size is one of the small U-Nets trained here.
_SMALL_MODEL = 20 * 2**20
_FIXED = 20 * 2**20
#: The objects split of a plane (:mod:`.objects`: distance maps, seeds, watershed), per
#: pixel above the rest, measured on a 2048 x 2048 mask: 79 bytes.
_OBJECTS_PER_PIXEL = 80
#: The same split of a whole stack as one volume, per voxel, measured (tracemalloc) on the
#: 48 x 192 x 192 stack of benchmarks/bench_volume.py: 122 bytes.
_OBJECTS_PER_VOXEL = 125


def estimate_memory(shape: tuple[int, ...], dtype: np.dtype, params: PredictParams) -> int:
    """Bytes the run adds for a channels-last ``(..., Y, X, C)`` image: one batch of tiles
    through the network, the model's weights (twice: read and placed), the labels, the
    float16 confidence image and, when objects are asked for, one plane's objects split
    (the whole stack's in volume mode; whether the model separates objects is known only
    once it is loaded: counted)."""
    path = Path(params.checkpoint) if params.checkpoint else None
    model = path.stat().st_size if path is not None and path.is_file() else 0
    small = params.architecture == "unet" or (
        params.architecture == "auto" and 0 < model < _SMALL_MODEL)
    per_pixel = _PER_TILE_PIXEL["small" if small else "large"]
    side_y, side_x = (min(params.tile_size, n) for n in shape[-3:-1])
    tiles = params.batch_size * side_y * side_x * per_pixel
    pixels = math.prod(shape[:-1])
    outputs = pixels * (4 + 2)  # labels (at most uint32) and the float16 confidence
    # Split as a volume, the whole stack's distance maps are held at once.
    volume = params.objects_mode == "volume" and len(shape) == 4
    at_once = pixels if volume else math.prod(shape[-3:-1])
    each = _OBJECTS_PER_VOXEL if volume else _OBJECTS_PER_PIXEL
    split = at_once * each if params.objects and at_once <= MAX_OBJECT_PIXELS else 0
    return tiles + 2 * model + outputs + split + _FIXED
