"""A synthetic collection for part discovery, with its exact ground truth (numpy only).

Every image shows one object of the same class: a body (an ellipse) with a head
(a disc at one end), cut into ``n_parts`` known parts: the head, then bands of
the body from the head to the tail, the two middle bands split into an upper and
a lower half so that the object is not mirror-symmetric. Each part has its own
texture (stripes, checks, dots, rings, ...) drawn in the object's own frame, so
the texture turns and scales with the object. Each object is drawn under a random
rotation (a full turn), scale and translation, and **every part's colour is drawn
anew for every image**: colour says nothing about which part a pixel belongs to,
so parts must be told apart by shape, position within the object and texture, as
real collections demand. The background has its own random colour and a smooth
mottle.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..review.scores import contingency

#: Part names of the synthetic object, in label order (label k = ``PART_NAMES[k - 1]``).
PART_NAMES = ("head", "front", "upper middle", "lower middle", "back", "tail")


def _part_map(u: np.ndarray, v: np.ndarray, n_parts: int) -> np.ndarray:
    """True part (0 = background, 1..n_parts) at object coordinates (u along the body)."""
    body = (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    head = (u - 1.05) ** 2 + v**2 <= 0.36**2
    parts = np.zeros(u.shape, np.int32)
    inside = body | head
    if n_parts == 2:
        parts[inside] = np.where(u[inside] > 0.2, 1, 2)
        return parts
    parts[head | (inside & (u > 0.75))] = 1
    rest = inside & (parts == 0)
    n_body = n_parts - 1  # bands of the body from front (u = 0.75) to tail (u = -1)
    if n_body >= 3:
        # The middle band is split into an upper and a lower half: n_body - 1 bands.
        edges = np.linspace(0.75, -1.0, n_body)  # n_body - 1 bands
        band = np.clip(np.searchsorted(-edges, -u, side="right") - 1, 0, n_body - 2)
        middle = (n_body - 1) // 2
        label = np.where(band < middle, band + 2, band + 3)
        label = np.where((band == middle) & (v >= 0), middle + 2, label)
        label = np.where((band == middle) & (v < 0), middle + 3, label)
    else:
        edges = np.linspace(0.75, -1.0, n_body + 1)
        band = np.clip(np.searchsorted(-edges, -u, side="right") - 1, 0, n_body - 1)
        label = band + 2
    parts[rest] = label[rest]
    return parts


def _texture(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A texture in [-1, 1] in object coordinates (it turns and scales with the object)."""
    kind %= 6
    if kind == 0:  # dots
        return np.where(np.hypot((u * 5) % 1 - 0.5, (v * 5) % 1 - 0.5) < 0.28, 1.0, -0.6)
    if kind == 1:  # stripes across the body
        return np.sign(np.sin(u * 2 * np.pi * 3.2))
    if kind == 2:  # flat
        return np.zeros_like(u)
    if kind == 3:  # stripes along the body
        return np.sign(np.sin(v * 2 * np.pi * 4.0))
    if kind == 4:  # checks
        return np.sign(np.sin(u * 2 * np.pi * 2.5) * np.sin(v * 2 * np.pi * 2.5))
    return np.sign(np.sin(np.hypot(u, v) * 2 * np.pi * 4.0))  # rings


def part_collection(
    n_images: int = 32,
    size: int = 128,
    n_parts: int = 4,
    seed: int = 0,
    noise: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_images`` RGB uint8 images ``(N, size, size, 3)`` and true parts ``(N, size, size)``.

    The parts are int32, 0 = background, 1..n_parts (see :data:`PART_NAMES` for
    the order in the 6-part object; fewer parts merge bands of the body).
    """
    if not 2 <= n_parts <= 6:
        raise ValueError("n_parts must be between 2 and 6")
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    images = np.zeros((n_images, size, size, 3), np.float32)
    truth = np.zeros((n_images, size, size), np.int32)
    for i in range(n_images):
        angle = rng.uniform(0, 2 * np.pi)
        # Half-length of the body in pixels.
        half = size * 0.27 * rng.uniform(0.85, 1.15)
        reach = half * 1.45  # the head sticks out beyond the body
        cy, cx = rng.uniform(reach, size - reach, 2) if size > 2 * reach else (size / 2,) * 2
        dy, dx = (yy - cy) / half, (xx - cx) / half
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        parts = _part_map(u, v, n_parts)
        truth[i] = parts
        background = rng.uniform(0.05, 0.45, 3)
        mottle = ndi.gaussian_filter(rng.standard_normal((size, size)), size / 16)
        mottle /= np.abs(mottle).max() + 1e-9
        image = background + 0.12 * mottle[..., None]
        for k in range(1, n_parts + 1):
            inside = parts == k
            colour = rng.uniform(0.3, 1.0, 3)
            texture = _texture(k - 1, u[inside], v[inside])[:, None]
            image[inside] = colour * (1.0 + 0.35 * texture) - 0.1 * (texture < 0)
        image = ndi.gaussian_filter(image, (0.6, 0.6, 0))
        image += rng.normal(0.0, noise, image.shape)
        images[i] = image
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), truth


# ---------------------------------------------------------------------------
# Scoring discovered parts against the truth (used by the tests and the benchmark).


def normalized_mutual_information(table: np.ndarray) -> float:
    """NMI (arithmetic-mean normalisation) of a contingency table; 0 = independent, 1 = same."""
    table = np.asarray(table, np.float64)
    total = table.sum()
    if total == 0:
        return 0.0
    p = table / total
    pf, pt = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pf[:, None] * pt[None, :])[nz])).sum())
    hf = float(-(pf[pf > 0] * np.log(pf[pf > 0])).sum())
    ht = float(-(pt[pt > 0] * np.log(pt[pt > 0])).sum())
    if hf + ht == 0:
        return 1.0
    return max(0.0, 2 * mi / (hf + ht))


def part_scores(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """How consistently discovered parts map onto the true parts over a whole collection.

    Scored over the true object's pixels (``truth > 0``) of all images, with
    **one** mapping from discovered to true labels for the whole collection:

    - ``nmi``: normalised mutual information of discovered vs true parts;
    - ``purity``: accuracy when each discovered label takes the true part it
      overlaps most (many to one);
    - ``matched``: accuracy under the best one-to-one matching (Hungarian).
    """
    from scipy.optimize import linear_sum_assignment

    table = contingency(found, truth, np.asarray(truth) > 0)[:, 1:]
    total = max(int(table.sum()), 1)
    rows, cols = linear_sum_assignment(-table)
    return {
        "nmi": normalized_mutual_information(table),
        "purity": float(table.max(axis=1).sum() / total),
        "matched": float(table[rows, cols].sum() / total),
    }


def radial_partition(truth: np.ndarray, n_parts: int) -> np.ndarray:
    """A purely positional baseline: each object cut into ``n_parts`` angular sectors
    around its centroid, sector 1 always starting at the image's +x axis.

    It knows the exact object mask and centre (more than a method is given) but not
    the object's orientation, which is what telling parts apart requires.
    """
    out = np.zeros_like(truth, dtype=np.int32)
    for i, plane in enumerate(truth):
        yy, xx = np.nonzero(plane)
        if len(yy) == 0:
            continue
        angle = np.arctan2(yy - yy.mean(), xx - xx.mean()) % (2 * np.pi)
        out[i, yy, xx] = np.minimum((angle / (2 * np.pi) * n_parts).astype(int), n_parts - 1) + 1
    return out


def object_frames(truth: np.ndarray) -> np.ndarray:
    """Each object's frame from its true parts: ``(N, 5)`` = centre row, centre column,
    unit axis (row, column) from the centre towards the head (part 1), and the scale
    (square root of the object's area). Objects without a head get a NaN frame."""
    frames = np.full((len(truth), 5), np.nan)
    for i, plane in enumerate(truth):
        yy, xx = np.nonzero(plane)
        hy, hx = np.nonzero(plane == 1)
        if len(yy) == 0 or len(hy) == 0:
            continue
        centre = np.array([yy.mean(), xx.mean()])
        axis = np.array([hy.mean(), hx.mean()]) - centre
        frames[i] = [*centre, *(axis / (np.hypot(*axis) + 1e-9)), np.sqrt(len(yy))]
    return frames


def landmark_consistency(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """How consistently each discovered part's centre sits on the object, over images.

    Each part's centre (the centroid of its pixels) is written in its object's own
    frame (origin at the object's centre, first axis towards the head, units of the
    square root of the object's area: turning and scaling the object changes
    nothing). ``spread``: the root-mean-square distance of a part's centres from
    their mean, averaged over parts (0 = the same landmark in every image);
    ``hits``: the share of centres that lie on the true part matched one-to-one to
    the discovered part over the collection.
    """
    from scipy.optimize import linear_sum_assignment

    found, truth = np.asarray(found), np.asarray(truth)
    frames = object_frames(truth)
    table = contingency(found, truth, truth > 0)[1:, 1:]
    rows, cols = linear_sum_assignment(-table)
    match = {int(r) + 1: int(c) + 1 for r, c in zip(rows, cols, strict=True)}
    spreads, hits, total = [], 0, 0
    for k in range(1, int(found.max()) + 1):
        points = []
        for i, plane in enumerate(found):
            yy, xx = np.nonzero(plane == k)
            if len(yy) == 0 or not np.isfinite(frames[i]).all():
                continue
            cy, cx, ay, ax, scale = frames[i]
            dy, dx = yy.mean() - cy, xx.mean() - cx
            points.append([(dy * ay + dx * ax) / scale, (dx * ay - dy * ax) / scale])
            row, col = int(round(yy.mean())), int(round(xx.mean()))
            hits += int(truth[i, row, col] == match.get(k, -1))
            total += 1
        if len(points) > 1:
            points = np.asarray(points)
            spreads.append(float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean())))
    return {"spread": float(np.mean(spreads)) if spreads else float("nan"),
            "hits": hits / total if total else 0.0}
