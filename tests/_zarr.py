"""Small OME-Zarr stores the tests write, and a small U-Net whose classes vary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

SCALE = {"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.25}


def smooth_volume(shape=(2, 8, 96, 96), seed: int = 0) -> np.ndarray:
    """A smooth uint16 (c, z, y, x) volume: regions large enough to segment."""
    rng = np.random.default_rng(seed)
    data = ndi.gaussian_filter(rng.random(shape), (0, 0, 3, 3))
    return ((data - data.min()) / np.ptp(data) * 60000).astype(np.uint16)


def write_store(path: Path, data: np.ndarray | None = None, version: str = "0.5",
                axes: str = "czyx") -> Path:
    """An OME-Zarr image (two levels) at ``path`` in OME-Zarr ``version``."""
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_image

    data = smooth_volume() if data is None else data
    fmt = format_from_version(version)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, group, axes=axes, fmt=fmt, scale_factors=(2,),
                scale={a: SCALE[a] for a in axes})
    return path


def sharp_unet(classes: int = 4, channels: int = 2, seed: int = 0):
    """A small random U-Net whose arg-max varies across an image (scaled head)."""
    import torch

    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import LoadedModel

    torch.manual_seed(seed)
    config = ModelConfig("unet", classes, in_channels=channels, depth=2, base_channels=8,
                         mean=[0.5] * channels, std=[0.25] * channels)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return LoadedModel(model, config)
