"""Engines and the helpers they share: numpy, scikit-image and torch only (no Qt, no napari).

Every engine is a generator function ``engine(image, params, ...)`` that yields
:class:`~napari_unsupseg.core.base.engine.Progress` events and returns a
:class:`~napari_unsupseg.core.base.engine.Result`. Drive one to completion with
:func:`~napari_unsupseg.core.base.engine.run_to_end`.
"""

from .base.engine import Progress, Result, run_to_end
from .base.errors import InputError

__all__ = ["InputError", "Progress", "Result", "run_to_end"]
