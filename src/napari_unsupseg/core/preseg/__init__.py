"""Presegmentation: superpixels from a registry of classic methods (:mod:`.methods`,
:mod:`.spectral`), run on a plane or a stack by the engine (:mod:`.engine`); a z-stack
may be segmented as one volume with its voxel spacing (:mod:`.volume`)."""

from .engine import (
    PRESEG_METHODS,
    STACK_MODES,
    VOLUME_METHODS,
    PresegParams,
    check_volume_mode,
    method_fields,
    method_kwargs,
    presegment,
    run_preseg,
    segment_volume,
)
from .methods import absorb_small_regions, felzenszwalb, kmeans, quickshift, slic, watershed
from .spectral import spectral
from .volume import slic_volume, watershed_volume

__all__ = [
    "PRESEG_METHODS",
    "STACK_MODES",
    "VOLUME_METHODS",
    "PresegParams",
    "absorb_small_regions",
    "check_volume_mode",
    "felzenszwalb",
    "kmeans",
    "method_fields",
    "method_kwargs",
    "presegment",
    "quickshift",
    "run_preseg",
    "segment_volume",
    "slic",
    "slic_volume",
    "spectral",
    "watershed",
    "watershed_volume",
]
