"""``napari-unsupseg preseg``: superpixels (felzenszwalb, slic, quickshift, watershed, k-means)."""

from __future__ import annotations

from ._image_command import ImageCommand

COMMAND = ImageCommand("preseg", "Split an image into superpixels.",
                       bar_label=lambda params: f"preseg {params.method}")
HELP, add_arguments, run = COMMAND.help, COMMAND.add_arguments, COMMAND.run
