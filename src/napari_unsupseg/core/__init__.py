"""Engines and the helpers they share: numpy, scikit-image and torch only (no Qt, no napari).

Every engine is a generator function ``engine(image, params, ...)`` that yields
:class:`~napari_unsupseg.core.engine.Progress` events and returns a
:class:`~napari_unsupseg.core.engine.Result`. Drive one to completion with
:func:`~napari_unsupseg.core.engine.run_to_end`.
"""

from .engine import Progress, Result, run_to_end
from .errors import InputError

__all__ = ["InputError", "Progress", "Result", "run_to_end"]
