"""napari-unsupseg: unsupervised and model-based segmentation for napari.

Importing the package is cheap: no torch, no Qt. The engines live in
:mod:`napari_unsupseg.core`, the dock widgets in :mod:`napari_unsupseg.widgets`
and the command line in :mod:`napari_unsupseg.cli`.
"""

__version__ = "0.1.0"
