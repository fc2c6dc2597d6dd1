"""Training data from painted labels: checks, normalisation, a held-out validation part,
class-balanced random crops and their augmentation (numpy only, no torch).

Label convention: 0 = unlabelled (ignored), k > 0 = class k. The network predicts
``max(k) + 1`` channels and channel k *is* label k, so a model predicts the painted
values with no lookup table (channel 0 is never a target and loses every arg-max).

Intensities are scaled per image by its own 1st and 99.8th percentiles per channel
(:data:`INTENSITY`, clipped to [0, 1]; the trained model records it, so
:func:`..predict.predict` scales every image it is applied to the same way), then
standardised by the per-channel mean and standard deviation stored in the model. Per
image, not by the type's range: the images of one experiment differ several-fold in
brightness and background, as StarDist and Cellpose users know.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..base.errors import InputError
from ..base.images import check_image, intensity_range

#: How every image is scaled to [0, 1] in training and then in prediction.
INTENSITY = "stretch"
#: Largest label value a painted class may have (one output channel per value).
MAX_CLASS_VALUE = 255
#: At most this many pixel positions per class and plane are kept to draw crop centres.
_MAX_CENTRES = 200_000
#: Side of the validation blocks, in pixels.
VALIDATION_BLOCK = 32
#: At most this many validation windows (one crop each) are evaluated per epoch.
MAX_VALIDATION_WINDOWS = 16
#: Largest side of the window of a training plane that sets the island floors.
MAX_FLOOR_WINDOW = 4096
#: Fewer held-out pixels than this (or a single class among them) judge nothing: then
#: every labelled pixel trains and the training loss picks the model.
MIN_VALIDATION_PIXELS = 1000


@dataclass
class Plane:
    """One labelled plane: raw pixels ``(Y, X, C)`` and the image's intensity range."""

    image: np.ndarray
    train: np.ndarray  # (Y, X) uint8 class values, validation pixels set to 0
    low: np.ndarray
    span: np.ndarray
    centres: list[np.ndarray] = field(default_factory=list)  # flat indices per class value


@dataclass
class Window:
    """A validation crop: plane, corner, and its validation targets (0 = not scored)."""

    plane: int
    y0: int
    x0: int
    target: np.ndarray


@dataclass
class TrainingSet:
    planes: list[Plane]
    windows: list[Window]
    class_values: list[int]
    num_classes: int
    weights: np.ndarray  # (num_classes,) loss weight per class (0 for unused values)
    mean: np.ndarray
    std: np.ndarray
    crop: int
    counts: dict[int, int]  # labelled pixels per class value
    validation_pixels: int


def as_planes(images: Sequence[np.ndarray], labels: Sequence[np.ndarray]
              ) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Pair images ``(Y, X, C)`` / stacks ``(N, Y, X, C)`` with labels ``(Y, X)`` / ``(N, Y, X)``.

    Returns (image plane, label plane, index of the image it came from) for every plane
    holding at least one labelled pixel. Raises :class:`InputError` in plain words.
    """
    if len(images) == 0:
        raise InputError("Give at least one image to train on.")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} image(s) but {len(labels)} label image(s) were "
                         "given; give one label image per image.")
    channels = None
    out = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        image = image if hasattr(image, "dtype") else np.asarray(image)
        label = np.asarray(label)
        name = f"image {index + 1}" if len(images) > 1 else "the image"
        if image.ndim not in (3, 4):
            raise InputError(f"Expected {name} as a channels-last plane (Y, X, C) or stack "
                             f"(N, Y, X, C); got shape {image.shape}.")
        if label.shape != image.shape[:-1]:
            raise InputError(f"The labels of {name} have shape {label.shape}, but {name} has "
                             f"spatial shape {image.shape[:-1]}; they must match.")
        if channels is None:
            channels = image.shape[-1]
        elif image.shape[-1] != channels:
            raise InputError(f"The images have different channel counts ({channels} and "
                             f"{image.shape[-1]}); every image must have the same channels.")
        if label.dtype == np.bool_:
            label = label.astype(np.uint8)
        if not np.issubdtype(label.dtype, np.integer):
            raise InputError(f"The labels of {name} hold {label.dtype} values; labels must be "
                             "integers (0 = unlabelled, k = class k).")
        if label.size and label.min() < 0:
            raise InputError(f"The labels of {name} hold negative values; use 0 for "
                             "unlabelled and positive values for classes.")
        if label.size and label.max() > MAX_CLASS_VALUE:
            raise InputError(f"The labels of {name} go up to {label.max()}; painted classes "
                             f"must be numbered 1 to {MAX_CLASS_VALUE}.")
        image_planes = image if image.ndim == 4 else image[np.newaxis]
        label_planes = label if label.ndim == 3 else label[np.newaxis]
        for plane, plane_labels in zip(image_planes, label_planes, strict=True):
            if plane_labels.any():
                out.append((plane, plane_labels.astype(np.uint8), index))
    if not out:
        raise InputError("No pixel is labelled: paint some pixels of each class first.")
    return out


def prepare(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], crop_size: int,
            validation_fraction: float, rng: np.random.Generator) -> TrainingSet:
    """Check the inputs and build the training set (see the module docstring)."""
    pairs = as_planes(images, labels)
    values = sorted({int(v) for _, lab, _ in pairs for v in np.unique(lab) if v})
    if len(values) < 2:
        raise InputError(f"Only one class (label {values[0]}) is painted; paint at least two "
                         "classes (e.g. background and objects).")
    ranges = {}
    for index, image in enumerate(images):
        image = image if hasattr(image, "dtype") else np.asarray(image)
        if np.issubdtype(image.dtype, np.floating) and image.size <= 50_000_000:
            check_image(image)
        low, high = intensity_range(image, INTENSITY)
        ranges[index] = (low, np.where(high > low, high - low, 1.0).astype(np.float32))
    largest = max(max(p.shape[:2]) for p, _, _ in pairs)
    crop = min(crop_size, int(math.ceil(largest / 16) * 16))
    planes = [Plane(np.asarray(p), lab.copy(), *ranges[i]) for p, lab, i in pairs]
    num_classes = values[-1] + 1
    windows = _hold_out(planes, values, crop, validation_fraction, rng)
    held = sum(int((w.target > 0).sum()) for w in windows)
    present = {int(v) for w in windows for v in np.unique(w.target) if v}
    if windows and (held < MIN_VALIDATION_PIXELS or len(present) < 2):
        # Too few to judge a model by (a few strokes): train on every labelled pixel and
        # let the training loss pick the model instead.
        for plane, (_, lab, _) in zip(planes, pairs, strict=True):
            plane.train = lab.copy()
        windows = []
    counts = {v: 0 for v in values}
    for plane in planes:
        found = np.bincount(plane.train.ravel(), minlength=num_classes)
        for v in values:
            counts[v] += int(found[v])
        plane.centres = [_centres(plane.train, v, rng) for v in range(num_classes)]
    total = sum(counts.values())
    weights = np.zeros(num_classes, np.float32)
    for v in values:  # a mild inverse frequency: crops are class-balanced already
        weights[v] = (total / (len(values) * max(counts[v], 1))) ** 0.25
    weights[weights > 0] /= weights[weights > 0].mean()
    mean, std = _moments(planes, rng)
    validation = sum(int((w.target > 0).sum()) for w in windows)
    return TrainingSet(planes, windows, values, num_classes, weights, mean, std, crop,
                       counts, validation)


def _centres(labels: np.ndarray, value: int, rng: np.random.Generator) -> np.ndarray:
    if value == 0:
        return np.zeros(0, np.int64)
    found = np.flatnonzero(labels == value)
    if found.size > _MAX_CENTRES:
        found = rng.choice(found, _MAX_CENTRES, replace=False)
    return found


def _moments(planes: list[Plane], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the scaled intensities (sampled)."""
    samples = []
    for plane in planes:
        flat = plane.image.reshape(-1, plane.image.shape[-1])
        pick = rng.integers(0, flat.shape[0], min(flat.shape[0], 100_000))
        samples.append(scale(flat[pick], plane.low, plane.span))
    values = np.concatenate(samples)
    std = values.std(axis=0)
    return values.mean(axis=0).astype(np.float32), np.where(std > 1e-3, std, 1.0).astype(
        np.float32)


def scale(pixels: np.ndarray, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Raw intensities to [0, 1] as prediction scales them (clipped at the range)."""
    out = (np.asarray(pixels, np.float32) - low) / span
    return np.clip(out, 0.0, 1.0, out=out)


def _hold_out(planes: list[Plane], values: list[int], crop: int, fraction: float,
              rng: np.random.Generator) -> list[Window]:
    """Move whole blocks of labelled pixels out of training into validation windows.

    Blocks are drawn inside at most :data:`MAX_VALIDATION_WINDOWS` crop-sized windows,
    until ``fraction`` of the labelled pixels are held out; a block is skipped when it
    would leave a class with less than half of its pixels for training.
    """
    if fraction <= 0:
        return []
    num = values[-1] + 1
    totals = np.zeros(num, np.int64)
    for plane in planes:
        totals += np.bincount(plane.train.ravel(), minlength=num)
    candidates = []
    for index, plane in enumerate(planes):
        h, w = plane.train.shape
        for y0 in range(0, h, crop):
            for x0 in range(0, w, crop):
                if plane.train[y0:y0 + crop, x0:x0 + crop].any():
                    candidates.append((index, y0, x0))
    order = rng.permutation(len(candidates))[:MAX_VALIDATION_WINDOWS]
    chosen = [candidates[i] for i in order]
    blocks = []
    for index, y0, x0 in chosen:
        # A window may reach past the image's edge (its crop is padded there): its blocks
        # stop at the edge, so each block is the part of the plane it stands for.
        h, w = planes[index].train.shape
        y_end, x_end = min(y0 + crop, h), min(x0 + crop, w)
        for by in range(y0, y_end, VALIDATION_BLOCK):
            for bx in range(x0, x_end, VALIDATION_BLOCK):
                blocks.append((index, y0, x0, by, bx, min(by + VALIDATION_BLOCK, y_end),
                               min(bx + VALIDATION_BLOCK, x_end)))
    goal = fraction * totals.sum()
    left = totals.copy()
    held = 0
    targets: dict[tuple[int, int, int], np.ndarray] = {}
    for b in rng.permutation(len(blocks)):
        if held >= goal:
            break
        index, y0, x0, ya, xa, yb, xb = blocks[b]
        part = planes[index].train[ya:yb, xa:xb]
        found = np.bincount(part.ravel(), minlength=num)
        found[0] = 0
        if not found.any() or np.any((left - found)[values] < totals[values] / 2):
            continue
        window = targets.setdefault((index, y0, x0), np.zeros((crop, crop), np.uint8))
        window[ya - y0:yb - y0, xa - x0:xb - x0] = part
        part[...] = 0
        left -= found
        held += int(found.sum())
    return [Window(i, y, x, t) for (i, y, x), t in targets.items()]


def window(array: np.ndarray, y0: int, x0: int, size: int, reflect: bool) -> np.ndarray:
    """``array[y0:y0+size, x0:x0+size]``, padded where it leaves the array (mirrored
    for images, zeros - unlabelled - for labels)."""
    h, w = array.shape[:2]
    ya, yb = max(0, y0), min(h, y0 + size)
    xa, xb = max(0, x0), min(w, x0 + size)
    part = np.asarray(array[ya:yb, xa:xb])
    pads = [(ya - y0, y0 + size - yb), (xa - x0, x0 + size - xb)]
    if not any(p for pair in pads for p in pair):
        return part
    pads += [(0, 0)] * (array.ndim - 2)
    return np.pad(part, pads, mode="symmetric" if reflect else "constant")


def sample_batch(data: TrainingSet, batch: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` augmented crops ``(B, C, S, S)`` float32 and targets ``(B, S, S)`` int64.

    Each crop is centred near a pixel of a class drawn uniformly (so rare classes are
    seen as often as common ones), then flipped, rotated by a multiple of 90 degrees
    and jittered in intensity (per-channel gain and offset).
    """
    size = data.crop
    xs, ys = [], []
    for _ in range(batch):
        value = data.class_values[rng.integers(len(data.class_values))]
        pool = [i for i, p in enumerate(data.planes) if p.centres[value].size]
        if not pool:  # every pixel of this class is held out: any labelled pixel
            pool = [i for i, p in enumerate(data.planes) if p.train.any()]
            plane = data.planes[pool[rng.integers(len(pool))]]
            flat = np.flatnonzero(plane.train)
            centre = flat[rng.integers(flat.size)]
        else:
            plane = data.planes[pool[rng.integers(len(pool))]]
            centre = plane.centres[value][rng.integers(plane.centres[value].size)]
        cy, cx = divmod(int(centre), plane.train.shape[1])
        y0 = crop_start(cy, size, plane.train.shape[0], rng)
        x0 = crop_start(cx, size, plane.train.shape[1], rng)
        image = scale(window(plane.image, y0, x0, size, True), plane.low, plane.span)
        target = window(plane.train, y0, x0, size, False)
        # Mild: the classes are often told apart by brightness alone (dim nuclei).
        image = image * rng.uniform(0.9, 1.1, image.shape[-1]).astype(np.float32) \
            + rng.uniform(-0.03, 0.03, image.shape[-1]).astype(np.float32)
        turns = int(rng.integers(4))
        image, target = np.rot90(image, turns), np.rot90(target, turns)
        if rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, ::-1]
        xs.append(standardise(image, data))
        ys.append(target)
    return np.stack(xs), np.stack(ys).astype(np.int64)


def crop_start(centre: int, size: int, length: int, rng: np.random.Generator) -> int:
    """A crop's first row (or column) holding ``centre`` anywhere in it, kept inside the
    image when it fits: prediction sees the image's own edge there (not a mirrored
    one), and the network must learn to label pixels near a crop's edge."""
    start = centre - int(rng.integers(size))
    return min(max(start, 0), length - size) if length >= size else start


def standardise(scaled: np.ndarray, data: TrainingSet) -> np.ndarray:
    """Scaled ``(Y, X, C)`` pixels to the network's ``(C, Y, X)`` input."""
    return np.ascontiguousarray(((scaled - data.mean) / data.std).transpose(2, 0, 1),
                                dtype=np.float32)


def validation_batch(data: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
    """Every validation window as network inputs ``(W, C, S, S)`` and targets ``(W, S, S)``."""
    xs, ys = [], []
    for w in data.windows:
        plane = data.planes[w.plane]
        image = scale(window(plane.image, w.y0, w.x0, data.crop, True), plane.low, plane.span)
        xs.append(standardise(image, data))
        ys.append(w.target)
    return np.stack(xs), np.stack(ys).astype(np.int64)


def painted_windows(data: TrainingSet) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each training plane's window around its training pixels (with a margin, at most
    :data:`MAX_FLOOR_WINDOW` a side) and those pixels' labels: what sets the island floors
    (``core.islands``). A region cut by a window's edge looks smaller, so a cut lowers
    a floor: the safe side."""
    margin = MAX_FLOOR_WINDOW // 16
    for plane in data.planes:
        rows, cols = np.nonzero(plane.train)
        if not rows.size:  # every painted pixel of this plane was held out for validation
            continue
        box = []
        for found, length in ((rows, plane.train.shape[0]), (cols, plane.train.shape[1])):
            low, high = max(int(found.min()) - margin, 0), min(int(found.max()) + margin + 1,
                                                               length)
            if high - low > MAX_FLOOR_WINDOW:
                middle = (low + high) // 2
                low, high = middle - MAX_FLOOR_WINDOW // 2, middle + MAX_FLOOR_WINDOW // 2
            box.append(slice(low, high))
        yield np.asarray(plane.image[tuple(box)]), plane.train[tuple(box)]
