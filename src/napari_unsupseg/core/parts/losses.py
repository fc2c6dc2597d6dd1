"""The SCOPS losses, each a plain function of tensors (written from the paper).

Conventions: part responses are softmax maps ``(B, K + 1, H, W)`` with channel 0
the background; the geometric terms use the foreground channels ``1..K`` only.
Positions are in normalised coordinates: a pixel's centre lies at
``(2 i + 1) / n - 1`` in [-1, 1] (``grid_sample``'s ``align_corners=False``
convention), (y, x) order. Every loss is a mean over the batch, so its size does
not depend on the batch or the image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def pixel_coordinates(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised (y, x) coordinates of the pixel centres, ``(2, H, W)``."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def to_pixels(centres: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised (y, x) centres ``(..., 2)`` to (row, column) pixel coordinates."""
    scale = centres.new_tensor([height, width])
    return ((centres + 1) * scale - 1) / 2


def part_centres(
    parts: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass of each response map and its mass.

    ``parts``: ``(B, K, H, W)`` non-negative responses (foreground channels);
    ``mask``: optional ``(B, 1, H, W)`` weights (e.g. the valid region of a warp).
    Returns centres ``(B, K, 2)`` in normalised (y, x) and masses ``(B, K)`` (sums).
    """
    if mask is not None:
        parts = parts * mask
    _, _, height, width = parts.shape
    coords = pixel_coordinates(height, width, parts.device, parts.dtype)
    mass = parts.sum(dim=(2, 3))
    weighted = torch.einsum("bkhw,chw->bkc", parts, coords)
    return weighted / (mass[..., None] + EPS), mass


def concentration_loss(parts: torch.Tensor) -> torch.Tensor:
    """Geometric concentration: the spatial variance of each part around its centre.

    ``parts``: ``(B, K, H, W)`` foreground responses. For each part the response is
    normalised to sum to one, and the loss is ``sum_uv |p_uv - c_k|^2 R_k(uv) / z_k``
    in normalised coordinates, averaged over parts and images. A part that sits
    on one pixel scores 0; a part spread evenly over the image scores the variance
    of the pixel grid (about 2/3 on [-1, 1]^2).
    """
    _, _, height, width = parts.shape
    coords = pixel_coordinates(height, width, parts.device, parts.dtype)
    centres, mass = part_centres(parts)
    diff = coords[None, None] - centres[..., None, None]  # (B, K, 2, H, W)
    spread = (diff.pow(2).sum(dim=2) * parts).sum(dim=(2, 3)) / (mass + EPS)
    return spread.mean()


def equivariance_kl(
    warped_image_parts: torch.Tensor, warped_parts: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(parts of the warped image || warped parts), per pixel, averaged over valid pixels.

    Both are ``(B, K + 1, H, W)`` probability maps (over the channel axis);
    ``valid``: ``(B, 1, H, W)`` with 1 where the warp sampled inside the image.
    """
    p = warped_image_parts.clamp_min(EPS)
    q = warped_parts.clamp_min(EPS)
    kl = (p * (p.log() - q.log())).sum(dim=1, keepdim=True)
    if valid is None:
        return kl.mean()
    return (kl * valid).sum() / (valid.sum() + EPS)


def centre_loss(centres_a: torch.Tensor, centres_b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between matching part centres ``(B, K, 2)`` (normalised units)."""
    return (centres_a - centres_b).pow(2).sum(dim=-1).mean()


def semantic_loss(
    parts: torch.Tensor, features: torch.Tensor, bases: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Semantic consistency: ``|V(uv) - sum_k R_k(uv) w_k|^2`` averaged over pixels and images.

    ``parts``: ``(B, K + 1, H, W)`` (all channels, background included, each with its
    own basis); ``features``: ``(B, D, H, W)``; ``bases``: ``(K + 1, D)`` (made
    non-negative with a ReLU, as the features of a ReLU network are); ``mask``:
    optional ``(B, 1, H, W)`` saliency that masks the features.
    """
    recon = torch.einsum("bkhw,kd->bdhw", parts, F.relu(bases))
    if mask is None:
        return (features - recon).pow(2).sum(dim=1).mean()
    error = (features * mask - recon).pow(2).sum(dim=1, keepdim=True)
    # Averaged over the foreground, so a small object weighs as much as a large one.
    return (error * mask).sum() / (mask.sum() + EPS) + (error * (1 - mask)).sum() / (
        (1 - mask).sum() + EPS)


def orthonormal_loss(bases: torch.Tensor) -> torch.Tensor:
    """``|W W^T - I|_F^2`` for the row-normalised (ReLU'd) part bases ``W`` ``(K, D)``.

    Zero for orthogonal bases; two identical bases add 2. Pass the foreground
    bases only (the background basis may shrink to zero to reconstruct a masked
    background).
    """
    w = F.normalize(F.relu(bases), dim=1, eps=EPS)
    gram = w @ w.T
    eye = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    return (gram - eye).pow(2).sum()


def saliency_loss(parts: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the foreground probability ``1 - R_0`` and a mask.

    Not in the paper: a light pull of the background channel onto a given
    saliency mask ``(B, 1, H, W)`` (values in [0, 1]).
    """
    fg = (1.0 - parts[:, :1]).clamp(EPS, 1 - EPS)
    return F.binary_cross_entropy(fg, foreground)


def diversity_loss(parts: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(log K - H(q)) + mean_uv H(r_uv)``: balanced and decisive parts.

    Not in the paper: on a CPU budget of a few hundred steps a randomly started
    network tends to give the whole object to one part, or to share it out evenly
    and softly. The first term (zero when the K foreground parts take equal shares
    ``q`` of the foreground over the batch) keeps every part alive; the second (the
    per-pixel entropy of the part distribution ``r`` among the K parts, averaged
    over the foreground) makes each pixel choose a part. ``parts``: ``(B, K + 1, H,
    W)``; ``weights``: optional ``(B, 1, H, W)`` foreground weights (default ``1 - R_0``).
    """
    fg = parts[:, 1:]
    if weights is None:
        weights = 1.0 - parts[:, :1]
    r = fg / (fg.sum(dim=1, keepdim=True) + EPS)
    share = (r * weights).sum(dim=(0, 2, 3))
    share = share / (share.sum() + EPS)
    balance = torch.log(torch.tensor(float(fg.shape[1]), device=parts.device)) + (
        share * share.clamp_min(EPS).log()).sum()
    pixel_entropy = -(r * r.clamp_min(EPS).log()).sum(dim=1, keepdim=True)
    decisiveness = (pixel_entropy * weights).sum() / (weights.sum() + EPS)
    return balance + decisiveness


#: Pixel offsets (dy, dx) compared by :func:`colour_affinity_loss`: the 8 neighbours at
#: distances 1 and 2 (each unordered pair once).
AFFINITY_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, 2), (2, -2))


def colour_affinity_loss(
    parts: torch.Tensor, image: torch.Tensor,
    offsets: tuple[tuple[int, int], ...] = AFFINITY_OFFSETS,
) -> torch.Tensor:
    """Neighbours of like colour share a part: ``sum w_ij (1 - r_i . r_j) / sum w_ij``.

    Not in the paper: the pairwise term of a dense CRF used as a loss. ``parts``:
    ``(B, K + 1, H, W)`` probabilities; ``image``: ``(B, C, H, W)`` in [0, 1]. The
    weight of a pixel pair is ``exp(-beta |x_i - x_j|^2)`` with ``beta`` set per
    image from the mean squared colour difference of neighbours (as in GrabCut), so
    it adapts to the image's contrast. The texture features that the semantic loss
    reconstructs are colour-blind and blurred over several pixels; this term lets
    the colour edges inside each image (parts of one object differ in colour even
    when no colour is shared between images) place the boundaries between parts.
    """
    pairs = []
    for dy, dx in offsets:
        ys, yt = slice(0, parts.shape[2] - dy), slice(dy, None)
        xs, xt = (slice(0, parts.shape[3] - dx), slice(dx, None)) if dx >= 0 else (
            slice(-dx, None), slice(0, parts.shape[3] + dx))
        diff = (image[:, :, ys, xs] - image[:, :, yt, xt]).pow(2).sum(dim=1)
        agree = (parts[:, :, ys, xs] * parts[:, :, yt, xt]).sum(dim=1)
        pairs.append((diff.flatten(1), (1 - agree).flatten(1)))
    diffs = torch.cat([d for d, _ in pairs], dim=1)
    beta = 1.0 / (2 * diffs.mean(dim=1, keepdim=True) + EPS)
    weight = torch.exp(-beta * diffs)
    disagree = torch.cat([a for _, a in pairs], dim=1)
    return ((weight * disagree).sum(dim=1) / (weight.sum(dim=1) + EPS)).mean()


def region_means(values: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """``(N, D, h, w)`` values replaced by their mean over each region of ``(N, h, w)``."""
    n, d = values.shape[:2]
    offsets = torch.arange(n, device=regions.device)[:, None, None] * (int(regions.max()) + 1)
    ids = (regions + offsets).reshape(-1)  # region ids unique over the whole stack
    flat = values.permute(0, 2, 3, 1).reshape(-1, d)
    count = torch.bincount(ids).to(values.dtype).clamp_min(1)[:, None]
    sums = values.new_zeros(len(count), d).index_add_(0, ids, flat)
    return (sums / count)[ids].reshape(n, *values.shape[2:], d).permute(0, 3, 1, 2)


def region_consistency_loss(parts: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """KL(region mean || parts) per pixel: the pixels of one colour region share a part.

    Not in the paper. ``parts``: ``(B, K + 1, H, W)`` probabilities; ``regions``:
    ``(B, H, W)`` integer region ids of each image (superpixels that follow its colour
    edges). Each pixel is pulled towards the mean part distribution of its region
    (held fixed for the step), so the network learns parts whose boundaries follow
    the images' own edges, which the blurred, colour-blind texture features do not
    locate. Zero when the parts are constant over every region.
    """
    target = region_means(parts.detach(), regions).clamp_min(EPS)
    return (target * (target.log() - parts.clamp_min(EPS).log())).sum(dim=1).mean()
