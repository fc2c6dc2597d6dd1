"""The backprop segmenter's parameters (one dataclass, read by the CLI and the widget),
and the per-network defaults. No torch here: the widgets import it at start-up.

The final merge (``merge_threshold``, ``texture_scale``) joins labels by their colour and
texture statistics, then places the boundaries by colour, half-way across each edge
(:mod:`.merge`, :mod:`.boundaries`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.device import DEVICE_CHOICES
from ..base.params import Shown, from_mapping, nested, param
from ..preseg import PRESEG_METHODS, PresegParams

NETWORKS = ("fast", "kanezaki")
SUPERPIXEL_CHOICES = ("auto", *PRESEG_METHODS, "none")
# What 'auto' superpixels are for each network: as in the fast variant and Kanezaki 2018.
AUTO_SUPERPIXELS = {"fast": "felzenszwalb", "kanezaki": "slic"}
DEFAULT_FEATURES = {"fast": 32, "kanezaki": 100}
DEFAULT_LR = {"fast": 0.05, "kanezaki": 0.1}
# Statistics are brought to the host every iteration on the CPU (free there) and
# every few iterations on a GPU, so the training loop never waits on the device.
SYNC_EVERY_GPU = 8
OUTLINE_CHOICES = ("auto", "on", "off")
# Percentiles of each channel mapped to 0 and 1 before training. Not 1-99: in a field
# where the objects cover under 1% (a few nuclei in a dark field), the 99th percentile
# is in the background's noise, which would then fill the whole scale (on the 60
# development nuclei images: one such field went from 0.25 to 0.93-0.96 foreground IoU).
NORMALISE_PERCENTILES = (0.1, 99.9)
# Smoothing (pixels) of the colours compared when merging labels down to n_labels.
MERGE_SIGMA = 2.0


@dataclass
class BackpropParams:
    """Settings of the backprop segmenter; the defaults are fast and work on photos."""

    network: str = param(
        "fast",
        "Network: 'fast' (4 small layers, up to 32 labels, quick on a CPU) or "
        "'kanezaki' (the ICASSP 2018 net: n_conv 3x3 layers of 100 channels).",
        choices=NETWORKS,
    )
    max_iter: int = param(
        64, "Most training iterations (per plane when stack_mode is 'planes').", min=1
    )
    min_labels: int = param(
        3,
        "Stop once this many labels or fewer remain (with scribbles: the number of "
        "scribbled classes).",
        min=1,
    )
    n_labels: int | None = param(
        None,
        "Wanted number of labels: training stops when it is reached, and if more remain "
        "at the end the most similar labels are merged down to it (by colour and texture "
        "statistics; Ward distance on mean colour when merge_threshold is 0 or with "
        "scribbles). Empty = decided by merge_threshold.",
        min=1,
    )
    restarts: int = param(
        1,
        "Training runs from different seeds whose label maps are intersected (two "
        "pixels share a label only if every run gave them one): less dependence on the "
        "seed, more and smaller regions, a run's time each. 1 = one run, as in the papers. "
        "Not used with scribbles.",
        min=1,
    )
    train_pixels: int | None = param(
        20000,
        "Training sees the image shrunk to about this many pixels (per plane); the trained "
        "network then labels the image at full size, where the superpixels vote. Far "
        "faster on photographs and microscope fields, as good on real images. Empty = "
        "train at full size, as in the papers.",
        min=1024,
        advanced=True,
    )
    merge_threshold: float = param(
        0.0,
        "Final merge: labels whose local colour and texture statistics differ by less "
        "than this many standard deviations are joined, closest first; this decides the "
        "number of regions when n_labels is empty (larger = fewer regions). 0 = no merge "
        "(the default: on real photographs and nuclei it cost more than it gave).",
        min=0.0,
    )
    texture_scale: float = param(
        4.0,
        "Final merge: the window (Gaussian sigma, pixels) over which the colour and its "
        "local contrast are measured; about the size of the textures' pattern.",
        min=0.5,
        advanced=True,
    )
    min_size: int = param(
        0,
        "Merge connected regions smaller than this many pixels into their neighbours "
        "(0 = keep everything).",
        min=0,
    )
    preseg: PresegParams = nested(
        lambda: PresegParams(method="auto", n_segments=2000, compactness=10.0, scale=16.0,
                             min_size=16),
        prefix="superpixel_",
        # The presegmentation settings the segmenter offers, in the words of the segmenter
        # (its method adds 'auto' and 'none'); the older flat name keeps working.
        shown={
            "method": Shown(
                name="superpixels",
                help="Presegmentation whose superpixels vote on the labels: auto "
                "(felzenszwalb for the fast network, slic for kanezaki), felzenszwalb, "
                "slic, quickshift, watershed, kmeans, or 'none' (no vote, TIP 2020 style; "
                "use with a continuity weight, w_con, above 0).",
                choices=SUPERPIXEL_CHOICES,
            ),
            "scale": Shown(
                help="Felzenszwalb superpixels: larger gives fewer, bigger superpixels."),
            "min_size": Shown(
                help="Felzenszwalb superpixels: the smallest in pixels (smaller ones are "
                "merged); keep it under the area of the smallest objects wanted.",
                advanced=True,
            ),
            "n_segments": Shown(
                label="superpixel count",
                help="About how many superpixels for slic, watershed and kmeans (Kanezaki "
                "2018 used 10000 slic superpixels with compactness 100).",
                aliases=("superpixel_count",),
            ),
            "compactness": Shown(
                help="Shape versus colour for slic, watershed and kmeans superpixels "
                "(higher = rounder).",
                advanced=True,
            ),
        },
    )
    w_con: float = param(
        0.0,
        "Weight of the continuity loss (TIP 2020: L1 of neighbouring response "
        "differences); smooths labels, about 30% slower. 0 = off.",
        min=0.0,
    )
    w_scribble: float = param(
        0.5,
        "Weight of the scribble loss (only used when scribbles are given).",
        min=0.0,
    )
    n_features: int | None = param(
        None,
        "Output channels of the network, the most labels possible. Empty = the "
        "network's default (fast 32, kanezaki 100).",
        min=2,
        advanced=True,
    )
    n_conv: int = param(
        2, "Number of 3x3 conv blocks in the kanezaki network.", min=1, advanced=True
    )
    lr: float | None = param(
        None,
        "SGD learning rate. Empty = the network's default (fast 0.05, kanezaki 0.1).",
        min=0.0,
        advanced=True,
    )
    momentum: float = param(0.9, "SGD momentum.", min=0.0, max=1.0, advanced=True)
    converge_tol: float = param(
        0.025,
        "Convergence: an iteration counts as stable when the number of labels is "
        "unchanged and fewer than this fraction of pixels change label.",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    patience: int = param(
        3,
        "Stop after this many stable iterations in a row "
        "(0 = no convergence stop, run to max_iter or min_labels).",
        min=0,
        advanced=True,
    )
    weak_edges: float = param(
        0.02,
        "Last step: connected regions whose shared boundary is weak (mean colour gradient "
        "along it under this, the image scaled to 0-1) are joined, chains of them too, and "
        "take the label of the largest; a shading or texture split into patches of two labels "
        "becomes one region. 0 = off.",
        min=0.0,
        advanced=True,
    )
    place_outlines: str = param(
        "auto",
        "Last step: the pixels along each boundary go to the label nearby whose interior "
        "colour is closest, so that outlines follow the image rather than the superpixels. "
        "'auto' = on for single-channel images (fluorescence), off for colour photographs "
        "(see the README's figures on real images); 'on'; 'off'.",
        choices=OUTLINE_CHOICES,
        advanced=True,
    )
    level_split: str = param(
        "auto",
        "Finishing: every label is cut in two at the brightness that best splits the "
        "image into two classes (Otsu's level of the lightly smoothed training copy, channels "
        "averaged), before the outlines are placed: a label that holds both dim objects and "
        "the glow around bright ones comes back as two. 'auto' = on for single-channel images "
        "(fluorescence), off for colour photographs; 'on'; 'off'.",
        choices=OUTLINE_CHOICES,
        advanced=True,
    )
    stabilise: str = param(
        "auto",
        "Take the square root of the scaled intensities before training and labelling: the "
        "variance-stabilising transform of photon-counting noise, so that a dim object "
        "stands out of the background's noise as a bright one does. 'auto' = on for "
        "single-channel images (fluorescence), off for colour photographs (already "
        "gamma-encoded); 'on'; 'off'. Not in volume mode.",
        choices=OUTLINE_CHOICES,
        advanced=True,
    )
    bright_objects: bool = param(
        False,
        "Also return the bright labels' objects (for a dark field: fluorescence nuclei, "
        "cells): the labels on the bright side of an Otsu split of the label means, every "
        "connected object its own label, touching ones split (a volume's in 3-D); written "
        "beside the labels as an 'objects' layer or file.",
    )
    labels_from: str = param(
        "refined",
        "Which map to return: 'refined' (the superpixel-voted labels of the last "
        "iteration) or 'response' (the argmax of one more forward pass, as the Kanezaki "
        "scripts do).",
        choices=("refined", "response"),
        advanced=True,
    )
    stack_mode: str = param(
        "planes",
        "For a stack (z or t): 'planes' trains one network per plane (ids differ between "
        "planes); 'joint' trains one network on all planes, so a label means the same "
        "thing in every plane; 'volume' trains one network of 3-D convolutions on a "
        "z-stack as one volume, its labels voted by supervoxels (slic or watershed) that "
        "span planes, so an object crossing planes keeps one label.",
        choices=("planes", "joint", "volume"),
    )
    spacing_z: float = param(
        1.0, "Volume mode: distance between planes, in the unit of spacing_y and spacing_x "
        "(only the ratios matter).", min=1e-6, label="z spacing", advanced=True)
    spacing_y: float = param(
        1.0, "Volume mode: voxel height (y).", min=1e-6, label="y spacing", advanced=True)
    spacing_x: float = param(
        1.0, "Volume mode: voxel width (x).", min=1e-6, label="x spacing", advanced=True)
    seed: int = param(0, "Random seed; the same seed on the CPU gives identical labels.", min=0)
    device: str = param(
        "auto", "Where to train: auto (CUDA, then Apple MPS, then CPU), cpu, cuda or mps.",
        choices=DEVICE_CHOICES,
    )
    keep_heap: bool = param(
        True,
        "CPU speed-up on Linux: keep freed memory mapped during the run instead of "
        "returning it to the system every iteration (given back at the end).",
        advanced=True,
    )
    memory_budget_mb: int = param(
        4096,
        "Memory for training (MB). An image whose whole-image training would need more "
        "is trained on sampled crops and labelled tile by tile (overlapping, no seams).",
        min=64,
        advanced=True,
    )
    crop_size: int = param(
        128,
        "Side of the full-size crops that calibrate the network for an image over the "
        "memory budget.",
        min=16,
        advanced=True,
    )
    tile_size: int = param(
        1024,
        "Side of the tiles labelled at a time for an image over the memory budget "
        "(smaller if the budget needs it).",
        min=64,
        advanced=True,
    )


def _on_for_grey(choice: str, channels: int) -> bool:
    """An 'auto' / 'on' / 'off' setting whose 'auto' means on for single-channel images."""
    return choice == "on" or (choice == "auto" and channels == 1)


def stabilised(params: BackpropParams, channels: int) -> bool:
    """Whether the scaled intensities are square-rooted before training (``stabilise``)."""
    return _on_for_grey(params.stabilise, channels)


def stabilise_intensities(scaled: np.ndarray, params: BackpropParams) -> np.ndarray:
    """``scaled`` (channels last, in [0, 1]) square-rooted in place when :func:`stabilised`.

    On the 60 real nuclei fields of the development set (DSB2018), seeds 0-2: foreground
    IoU 0.818-0.832 against 0.803-0.820 without, 5-9 images more than 0.05 below Otsu's
    against 10-16 (a logarithm instead: 0.803-0.823); grey photographs 0.293 against 0.289.
    Not used in volume mode: no real z-stack measured it, and on the synthetic one (three
    classes in additive noise) the volume network then merged two of them."""
    if stabilised(params, scaled.shape[-1]):
        np.sqrt(scaled, out=scaled)
    return scaled


def outlines_placed(params: BackpropParams, channels: int) -> bool:
    """Whether the final labels' outlines are placed by colour (``place_outlines``)."""
    return _on_for_grey(params.place_outlines, channels)


def level_split(params: BackpropParams, channels: int) -> bool:
    """Whether the final labels are cut at the image's two-class level (``level_split``)."""
    return _on_for_grey(params.level_split, channels)


def default_params(**changes: Any) -> BackpropParams:
    """The default parameters with some changed, by their flat names as the command line
    and the widget show them (``superpixel_n_segments=500``); validated."""
    return from_mapping(BackpropParams, changes)
