"""Presegmentation: superpixels from a registry of classic methods (:mod:`.methods`,
:mod:`.spectral`), run on a plane or a stack by the engine (:mod:`.engine`)."""

from .engine import (
    PRESEG_METHODS,
    PresegParams,
    method_fields,
    method_kwargs,
    presegment,
    run_preseg,
)
from .methods import absorb_small_regions, felzenszwalb, kmeans, quickshift, slic, watershed
from .spectral import spectral

__all__ = [
    "PRESEG_METHODS",
    "PresegParams",
    "absorb_small_regions",
    "felzenszwalb",
    "kmeans",
    "method_fields",
    "method_kwargs",
    "presegment",
    "quickshift",
    "run_preseg",
    "slic",
    "spectral",
    "watershed",
]
