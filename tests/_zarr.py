"""Small OME-Zarr stores the tests write."""

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
                axes: str = "czyx", scale: dict[str, float] | None = None) -> Path:
    """An OME-Zarr image (two levels) at ``path`` in OME-Zarr ``version``, with the
    voxel ``scale`` (default :data:`SCALE`)."""
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_image

    data = smooth_volume() if data is None else data
    fmt = format_from_version(version)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, group, axes=axes, fmt=fmt, scale_factors=(2,),
                scale={a: (scale or SCALE)[a] for a in axes})
    return path
