"""Random warps (affine, thin-plate spline) and colour jitter for the equivariance loss.

A warp is a sampling grid ``(B, H, W, 2)`` for :func:`torch.nn.functional.grid_sample`
(``align_corners=False``): for each output pixel, the normalised (x, y) position
in the input it is read from. :func:`warp` applies one to images or part maps and
returns the mask of output pixels that were read from inside the input.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .losses import pixel_coordinates


def affine_matrices(
    rng: np.random.Generator, batch: int, max_rotation: float = 30.0,
    scale: tuple[float, float] = (0.8, 1.25), max_shift: float = 0.1,
) -> np.ndarray:
    """Random ``(B, 2, 3)`` maps from output (x, y) to input (x, y), normalised units.

    Rotation uniform in +-``max_rotation`` degrees, isotropic zoom log-uniform in
    ``scale`` (a zoom ``s`` shows the content ``s`` times larger), shift uniform in
    +-``max_shift``.
    """
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, batch))
    zoom = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), batch))
    shift = rng.uniform(-max_shift, max_shift, (batch, 2))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    mats = np.zeros((batch, 2, 3))
    mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0], mats[:, 1, 1] = cos, -sin, sin, cos
    mats[:, :, 2] = shift
    return mats


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """The thin-plate radial basis ``U = r^2 log r^2`` (0 at r = 0)."""
    return r2 * torch.log(r2.clamp_min(1e-12))


def tps_coefficients(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Thin-plate-spline coefficients mapping ``source`` points ``(n, 2)`` onto ``target``.

    Returns ``(n + 3, 2)``: ``n`` radial weights, then the affine part (1, x, y).
    """
    n = source.shape[0]
    d2 = ((source[:, None] - source[None]) ** 2).sum(-1)
    kernel = np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-12)), 0.0)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel
    system[:n, n] = 1
    system[:n, n + 1:] = source
    system[n, :n] = 1
    system[n + 1:, :n] = source.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = target
    return np.linalg.solve(system, rhs)


def tps_apply(points: torch.Tensor, source: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Evaluate a thin-plate spline at ``points`` ``(B, P, 2)``; ``coeffs`` ``(B, n + 3, 2)``."""
    n = source.shape[1]
    d2 = ((points[:, :, None] - source[:, None]) ** 2).sum(-1)  # (B, P, n)
    radial = _tps_kernel(d2) @ coeffs[:, :n]
    affine = coeffs[:, n:n + 1] + points @ coeffs[:, n + 1:]
    return radial + affine


@lru_cache(maxsize=8)
def _tps_design(height: int, width: int, tps_points: int) -> tuple[np.ndarray, torch.Tensor]:
    """The control lattice ``(n, 2)`` and the TPS design matrix ``(H * W, n + 3)`` of a grid.

    Both depend only on the grid's shape, so a batch of warps is one matrix product.
    """
    ticks = np.linspace(-1, 1, tps_points)
    source = np.stack(np.meshgrid(ticks, ticks), -1).reshape(-1, 2)
    points = identity_grid(1, height, width).reshape(-1, 2).double()
    src = torch.as_tensor(source, dtype=torch.float64)
    d2 = ((points[:, None] - src[None]) ** 2).sum(-1)
    ones = torch.ones(len(points), 1, dtype=torch.float64)
    design = torch.cat([_tps_kernel(d2), ones, points], 1)
    return source, design.float()


def identity_grid(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """The grid that copies an image: ``(B, H, W, 2)`` in (x, y) order."""
    yx = pixel_coordinates(height, width, device)
    return yx.flip(0).permute(1, 2, 0).expand(batch, height, width, 2).contiguous()


def random_grid(
    rng: np.random.Generator, batch: int, height: int, width: int, *, kind: str = "tps",
    max_rotation: float = 30.0, scale: tuple[float, float] = (0.8, 1.25),
    max_shift: float = 0.1, tps_strength: float = 0.08, tps_points: int = 4, device=None,
) -> torch.Tensor:
    """A random warp as a sampling grid ``(B, H, W, 2)``: affine, or TPS then affine.

    The TPS moves a ``tps_points x tps_points`` lattice of control points over
    [-1, 1]^2 by Gaussian offsets of standard deviation ``tps_strength``.
    """
    if kind == "tps":
        source, design = _tps_design(height, width, tps_points)
        coeffs = np.stack([
            tps_coefficients(source, source + rng.normal(0, tps_strength, source.shape))
            for _ in range(batch)
        ])
        coeffs_t = torch.as_tensor(coeffs, dtype=design.dtype)
        grid = (design @ coeffs_t).reshape(batch, height, width, 2).to(device)
    elif kind == "affine":
        grid = identity_grid(batch, height, width, device)
    else:
        raise ValueError(f"unknown warp kind {kind!r}")
    mats = torch.as_tensor(
        affine_matrices(rng, batch, max_rotation, scale, max_shift), dtype=grid.dtype,
        device=grid.device,
    )
    return torch.einsum("bij,bhwj->bhwi", mats[:, :, :2], grid) + mats[:, None, None, :, 2]


def warp(tensor: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``tensor`` ``(B, C, H, W)`` along ``grid``; also the valid mask ``(B, 1, H, W)``.

    Outside the input the result is 0 and the mask is 0.
    """
    out = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = torch.ones_like(tensor[:, :1])
    valid = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, (valid > 0.999).to(tensor.dtype)


def colour_jitter(
    images: torch.Tensor, rng: np.random.Generator, brightness: float = 0.3,
    contrast: float = 0.3, saturation: float = 0.2, hue: float = 0.2,
) -> torch.Tensor:
    """Random brightness, contrast (any channels), saturation and hue (RGB only) per image.

    ``images``: ``(B, C, H, W)`` in [0, 1]; factors are drawn uniformly in
    ``1 +- brightness`` etc., the hue turns by up to +-``hue`` of a full turn.
    """
    batch, channels = images.shape[:2]

    def factors(amount: float) -> torch.Tensor:
        values = rng.uniform(1 - amount, 1 + amount, batch)
        out = torch.as_tensor(values, dtype=images.dtype, device=images.device)
        return out[:, None, None, None]

    out = images * factors(brightness)
    grey = out.mean(dim=1, keepdim=True)
    level = grey.mean(dim=(2, 3), keepdim=True)
    out = level + (out - level) * factors(contrast)
    if channels == 3:
        grey = out.mean(dim=1, keepdim=True)
        out = grey + (out - grey) * factors(saturation)
        # Hue: turn the chroma plane of YIQ by a random angle.
        angles = rng.uniform(-hue, hue, batch) * 2 * math.pi
        to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                                    [0.211, -0.523, 0.312]])
        from_yiq = torch.linalg.inv(to_yiq)
        cos = torch.as_tensor(np.cos(angles), dtype=images.dtype, device=images.device)
        sin = torch.as_tensor(np.sin(angles), dtype=images.dtype, device=images.device)
        turn = torch.zeros(batch, 3, 3, dtype=images.dtype, device=images.device)
        turn[:, 0, 0] = 1
        turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = cos, -sin, sin, cos
        matrix = from_yiq @ turn @ to_yiq  # (B, 3, 3)
        out = torch.einsum("bij,bjhw->bihw", matrix, out)
    return out.clamp(0, 1)
