"""napari dock widgets: one per engine, thin drivers of the engines in :mod:`napari_unsupseg.core`.

The manifest (``napari.yaml``) points at the widget classes in the submodules
(:mod:`.preseg`, :mod:`.backprop`, ...). This package imports nothing on purpose:
docking a widget must not import torch, which the engines import only when a
run starts.

- :mod:`._base`: :class:`~._base.EngineWidget`, the base class every engine widget
  derives from (layer picker, parameter form, worker, progress, preview, result
  layers, notifications).
- :mod:`._form`: the one place that turns an engine's parameter dataclass into
  magicgui widgets.
- :mod:`._layers`: writing result layers (transforms, names, edit safety).
"""
