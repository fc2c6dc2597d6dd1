"""The unsupervised backprop segmenter (Kanezaki, ICASSP 2018; TIP 2020 extension).

A small convolutional network is trained on the image itself: each iteration
takes the argmax of its response as labels, refines them by a majority vote
inside each superpixel, and pulls the response towards that target with a
cross-entropy loss (plus, optionally, the TIP 2020 continuity loss and a
scribble term). Labels merge as training goes on; the run stops when few enough
labels remain, when the label map has stopped changing, or at ``max_iter``.

Output: the final **refined target** (the superpixel-voted argmax of the last
iteration), not the argmax of one more unrefined forward pass as in the Kanezaki
scripts: the refined map follows the superpixel boundaries, has no speckle, and
is the map on which the stopping rules were decided. ``labels_from="response"`` gives
the reference behaviour.

Seed stability and the number of regions: ``restarts`` short runs from different
seeds are intersected (:mod:`.consensus`) and the pieces joined again by
their colour and texture statistics until the closest pair differs by more than
``merge_threshold`` (:mod:`.merge`); that threshold decides how many
regions come back when ``n_labels`` is not given. The boundaries are then placed
by colour, half-way across each edge, not where one run drew them
(:mod:`.boundaries`).

This module does not import torch at import time (the napari widgets import the
parameters at start-up); the torch code is in :mod:`.nets` and the
training loop of one network in :mod:`.train`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from ..base.device import describe, resolve_device
from ..base.engine import Progress, Result, RunControl, Stopwatch, no_control, provenance
from ..base.errors import InputError
from ..base.images import (
    check_image,
    check_rank,
    label_dtype,
    normalize,
    offset_per_plane,
    relabel_sequential,
)
from ..base.memory import keep_heap_mapped
from ..base.params import validate
from ..preseg import absorb_small_regions
from .boundaries import (
    FINAL_ROUNDS,
    place_boundaries,
    smoothed_colour,
    split_at_levels,
    two_class_levels,
)
from .consensus import consensus, restart_seed
from .large import needs_crops, segment_large
from .merge import merge_by_statistics, merge_labels
from .params import (
    DEFAULT_FEATURES,
    MERGE_SIGMA,
    NORMALISE_PERCENTILES,
    BackpropParams,
    level_split,
    outlines_placed,
    stabilise_intensities,
)
from .superpixels import (
    plane_superpixels,
    superpixel_method,
    training_ignore,
    training_planes,
    vote_superpixels,
)
from .train import NetworkRun, runs_summary, train_network
from .weak_edges import join_weak_edges

# ---------------------------------------------------------------------- engine


def _check_inputs(image: np.ndarray, scribbles: np.ndarray | None) -> np.ndarray | None:
    check_rank(image, "The segmenter takes")
    check_image(image)
    if scribbles is None:
        return None
    scribbles = np.asarray(scribbles)
    spatial = image.shape[:-1]
    if scribbles.shape != spatial:
        raise InputError(
            f"The scribbles must have the image's spatial shape {spatial}; "
            f"got {scribbles.shape}."
        )
    if not np.issubdtype(scribbles.dtype, np.integer) and scribbles.dtype != bool:
        raise InputError("The scribbles must be a label image of integers (0 = unlabelled).")
    if (scribbles < 0).any():
        raise InputError("Scribble labels must be 0 (unlabelled) or positive class ids.")
    if not (scribbles > 0).any():
        raise InputError("The scribble layer is empty: paint at least one class.")
    return scribbles.astype(np.int64)


def _check_excluded(excluded: np.ndarray | None, planes: np.ndarray) -> np.ndarray | None:
    """The pixels without data, as a bool mask of the planes' spatial shape (or of the stack's)."""
    if excluded is None:
        return None
    excluded = np.asarray(excluded, dtype=bool)
    if excluded.shape not in (planes.shape[1:3], planes.shape[:3]):
        raise InputError(f"The nodata mask has shape {excluded.shape}; the image's pixels are "
                         f"{planes.shape[1:3]}.")
    return excluded


def _plane_groups(n_planes: int, stack_mode: str) -> list[list[int]]:
    """Which planes train together: all at once (joint) or one at a time."""
    if stack_mode == "joint":
        return [list(range(n_planes))]
    return [[index] for index in range(n_planes)]


def segment(
    image: np.ndarray,
    params: BackpropParams | None = None,
    *,
    scribbles: np.ndarray | None = None,
    control: RunControl | None = None,
    excluded: np.ndarray | None = None,
) -> Generator[Progress, None, Result]:
    """The backprop segmenter engine for a plane ``(Y, X, C)`` or a stack ``(N, Y, X, C)``
(with ``stack_mode="volume"``, a z-stack as one volume: :mod:`.volume`).

    ``scribbles``: optional label image of the spatial shape (0 = unlabelled, k > 0 =
    class k); scribbled classes keep their ids in the output. ``control``: previews
    (the current label map) when the driver wants one, and finishing early: training
    stops at the next iteration and the result is post-processed as a full run's
    (planes not reached are 0), with ``stopped_early`` in its metadata.

    ``excluded``: optional bool mask ``(Y, X)`` (or ``(N, Y, X)``) of pixels without data
    (nodata, outside an area of interest): they take no part in the training's loss or
    label count. They are still labelled; the caller clears them (label 0).

    Returns labels 1..K (uint16 or uint32) of shape ``(Y, X)`` or ``(N, Y, X)``,
    ``extras["superpixels"]`` and provenance metadata (iterations, stop reason,
    final number of labels, timings); with ``bright_objects``, ``extras["objects"]``
    (:mod:`.bright`).
    """
    params = params or BackpropParams()
    validate(params)
    image = np.asarray(image)
    result = yield from _segment(image, params, scribbles, control or no_control(), excluded)
    if not params.bright_objects:
        return result
    from .bright import with_bright_objects
    from .volume import voxel_spacing  # imports this module: at call time

    stack = image.ndim == 4
    volume = stack and params.stack_mode == "volume"
    return with_bright_objects(result, image, stack and params.stack_mode == "planes",
                               excluded, voxel_spacing(params) if volume else None)


def _segment(
    image: np.ndarray,
    params: BackpropParams,
    scribbles: np.ndarray | None,
    control: RunControl,
    excluded: np.ndarray | None,
) -> Generator[Progress, None, Result]:
    if params.stack_mode == "volume" and image.ndim == 4:
        from .volume import segment_as_volume  # imports this module: at call time

        return (yield from segment_as_volume(image, params, scribbles=scribbles,
                                             control=control))
    if scribbles is None and image.ndim in (3, 4):
        if needs_crops(image.shape, params, image.dtype.itemsize):  # over the budget: tiles
            return (yield from segment_large(image, params, control=control, excluded=excluded))
    scribbles = _check_inputs(image, scribbles)
    device = resolve_device(params.device)
    clock = Stopwatch()

    single = image.ndim == 3
    planes = stabilise_intensities(
        normalize(image[np.newaxis] if single else image, *NORMALISE_PERCENTILES), params)
    scribble_planes = None
    if scribbles is not None:
        scribble_planes = scribbles[np.newaxis] if single else scribbles
    groups = _plane_groups(len(planes), params.stack_mode)
    # Scribbles tie outputs to classes; only then is one run enough (and the ids align).
    restarts = params.restarts if scribbles is None else 1
    total = params.max_iter * len(groups) * restarts
    superpixels = []
    for index, plane in enumerate(planes):
        superpixels.append(vote_superpixels(plane, params) if not control.stop_requested else None)
        if len(planes) > 1:  # a long stack must stay stoppable before training starts
            yield Progress(0, total, message=f"superpixels {index + 1}/{len(planes)}")
    # Without scribbles, training may see a shrunk copy (a 1-pixel stroke would not survive).
    shrunk = training_planes(planes, params) if scribble_planes is None else None
    train_planes, train_superpixels = planes, superpixels
    ignore = training_ignore(_check_excluded(excluded, planes), planes,
                             params if shrunk is not None else replace(params, train_pixels=None))
    if shrunk is not None:
        train_planes, shrunk_params = shrunk
        train_superpixels = [plane_superpixels(p, shrunk_params) for p in train_planes]
    # The two-class level is read off the training copy, as the large-image path reads it
    # (not with scribbles: no finishing step may move a scribbled class).
    levels = None
    if scribble_planes is None and level_split(params, planes.shape[-1]):
        levels = two_class_levels(train_planes, ignore)
    clock.lap("superpixels")

    n_features = params.n_features or DEFAULT_FEATURES[params.network]
    classes = None
    if scribble_planes is not None:
        classes = np.unique(scribble_planes[scribble_planes > 0])
    if classes is not None and len(classes) > n_features:
        raise InputError(
            f"There are {len(classes)} scribbled classes but the network has only "
            f"{n_features} outputs; raise n_features."
        )
    min_labels = len(classes) if classes is not None else params.min_labels

    raw = np.zeros(planes.shape[:3], dtype=np.int64)
    # Finished planes, for previews: the smallest type that holds every network output.
    shown = np.zeros(planes.shape[:3], dtype=label_dtype(n_features + 1))
    runs: list[NetworkRun] = []
    trained: list[int] = []
    done = 0
    with keep_heap_mapped(params.keep_heap and device.type == "cpu") as heap_kept:
        for group in groups:
            if control.stop_requested:
                break
            maps = []
            for index in range(restarts):
                if index and control.stop_requested:
                    break
                run = yield from train_network(
                    train_planes[group],
                    [train_superpixels[i] for i in group],
                    None if scribble_planes is None else scribble_planes[group],
                    classes,
                    replace(params, seed=restart_seed(params.seed, index)),
                    device=device,
                    n_features=n_features,
                    min_labels=min_labels,
                    step_offset=done,
                    total=total,
                    control=control,
                    preview_base=shown,
                    group=group,
                    full=None if shrunk is None else (
                        planes[group], [superpixels[i] for i in group]),
                    ignore=None if ignore is None else ignore[group],
                )
                maps.append(run.labels)
                runs.append(run)
                done += params.max_iter
            raw[group] = maps[0] if len(maps) == 1 else consensus(maps)
            shown[group] = raw[group] + 1
            trained += group
    clock.lap("training")
    # Runs that converge early leave steps of their budget unused: say the training is over.
    yield Progress(total, total, message="finishing the labels")

    # Planes a stopped run never reached stay 0; the others are finished as in a full run.
    labels = np.zeros(raw.shape, dtype=np.uint16)
    n_merged = False
    if trained:
        done_labels, n_merged = _postprocess(
            raw[trained], planes[trained], params, classes, per_plane=len(groups) > 1,
            levels=None if levels is None else levels[trained],
        )
        labels = labels.astype(done_labels.dtype)
        labels[trained] = done_labels
    clock.lap("postprocess")

    stopped = control.stop_requested or len(trained) < len(planes)
    metadata = provenance(
        "backprop",
        params,
        seed=params.seed,
        device=describe(device),
        timings=clock.total(),
        **runs_summary(runs),
        restarts=restarts,
        n_labels=int(len(np.unique(labels[labels > 0]))),
        merged_to_n_labels=n_merged,
        scribble_classes=None if classes is None else classes.tolist(),
        heap_kept_mapped=heap_kept,
        superpixel_method=superpixel_method(params),
        trained_at=list(train_planes.shape[1:3]),
        stopped_early=stopped,
        planes_done=len(trained),
        planes_total=len(planes),
    )
    sp_stack = np.stack(
        [sp if sp is not None else np.zeros(planes.shape[1:3], np.int32) for sp in superpixels]
    )
    sp_out = relabel_sequential(offset_per_plane(sp_stack))
    extras = {"superpixels": sp_out[0] if single else sp_out}
    return Result(labels=labels[0] if single else labels, metadata=metadata, extras=extras)


def _postprocess(
    raw: np.ndarray,
    planes: np.ndarray,
    params: BackpropParams,
    classes: np.ndarray | None,
    *,
    per_plane: bool,
    levels: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    """Labels merged by their statistics (or down to ``n_labels``), small regions absorbed,
    cut at each plane's two-class ``levels`` (when given), outlines placed by colour and
    regions joined across weak edges, ids made 1..K (or scribble ids)."""
    labels = raw
    groups = [np.s_[i : i + 1] for i in range(len(labels))] if per_plane else [np.s_[:]]
    merged = False
    by_statistics = params.merge_threshold > 0 and classes is None
    if by_statistics:
        for where in groups:
            before = len(np.unique(labels[where]))
            labels[where] = merge_by_statistics(
                labels[where],
                planes[where],
                scale=params.texture_scale,
                threshold=params.merge_threshold,
                n_labels=params.n_labels,
            )
            merged = merged or (
                params.n_labels is not None and len(np.unique(labels[where])) < before
            )
    if params.min_size > 1:
        labels = np.stack([absorb_small_regions(p, params.min_size, keep_ids=True) for p in labels])
    if params.n_labels is not None and not by_statistics:
        from scipy import ndimage as ndi

        protected = None if classes is None else np.arange(len(classes))
        # Colour smoothed over a few pixels: a striped or speckled region split into
        # light and dark labels then looks like one colour and is merged back first.
        smooth = ndi.gaussian_filter(planes, (0, MERGE_SIGMA, MERGE_SIGMA, 0))
        for where in groups:
            before = len(np.unique(labels[where]))
            labels[where] = merge_labels(labels[where], smooth[where], params.n_labels, protected)
            merged = merged or len(np.unique(labels[where])) < before
    if classes is None:  # scribbled classes are the user's: no step below may move them
        labels = _finish_outlines(labels, planes, params, placed=by_statistics, levels=levels)
    if classes is not None:
        return _scribble_ids(labels, classes, groups), merged
    if per_plane:
        # Plane-by-plane networks: an id means nothing across planes, so keep them apart.
        labels = offset_per_plane(labels + 1)
    return relabel_sequential(labels + 1 if not per_plane else labels), merged


def _finish_outlines(
    labels: np.ndarray, planes: np.ndarray, params: BackpropParams, *, placed: bool,
    levels: np.ndarray | None = None,
) -> np.ndarray:
    """Labels cut at the planes' two-class ``levels`` (when given), outlines placed by
    colour (unless a statistics merge ``placed`` them already), then regions joined across
    weak edges, plane by plane (:mod:`.weak_edges`)."""
    place = outlines_placed(params, planes.shape[-1]) and not placed
    if not (place or params.weak_edges > 0 or levels is not None):
        return labels
    colour = smoothed_colour(planes)
    if levels is not None:
        labels = split_at_levels(labels, colour, levels)
    if place:
        labels = place_boundaries(labels, colour, FINAL_ROUNDS)
    if params.weak_edges > 0:
        labels = np.stack([join_weak_edges(plane, plane_colour, params.weak_edges)
                           for plane, plane_colour in zip(labels, colour, strict=True)])
    return labels


def _scribble_ids(labels: np.ndarray, classes: np.ndarray, groups: list[Any]) -> np.ndarray:
    """Network output j < len(classes) becomes scribble class ``classes[j]`` in every plane;
    the other labels are numbered after the largest class id, apart in each group."""
    out = np.zeros(labels.shape, dtype=np.int64)
    next_id = int(classes.max()) + 1
    for where in groups:
        part = labels[where]
        values = np.unique(part)
        lut = np.zeros(int(values.max()) + 1, dtype=np.int64)
        scribbled = values[values < len(classes)]
        lut[scribbled] = classes[scribbled]
        others = values[values >= len(classes)]
        lut[others] = next_id + np.arange(len(others))
        next_id += len(others)
        out[where] = lut[part]
    # The type holds the largest id kept (scribble class ids are not renumbered).
    return out.astype(np.promote_types(np.uint16, label_dtype(int(out.max(initial=0)))))
