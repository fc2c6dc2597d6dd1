"""Helpers shared by the model tests: random weights with random BatchNorm statistics."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy import ndimage as ndi


def torchvision_module(name: str):
    """``torchvision.<name>`` (its pure-Python model code, the reference layout), or a
    skip where torchvision is not installed."""
    import pytest

    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    # torchvision's compiled operators may not register against a CPU-only torch; its
    # pure-Python model code needs only this module stubbed.
    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip(f"torchvision.{name}")


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights *and* BatchNorm statistics, so a wrongly loaded tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.2 + 0.9
                             if tensor.ndim == 1 else torch.randn(tensor.shape, generator=gen)
                             * 0.1)
    return model.eval()


def smooth_rgb(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth 8-bit RGB image (so predictions have regions, not noise)."""
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(rng.random((*shape, 3)), (3, 3, 0))
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def normalised(image: np.ndarray, mean, std) -> torch.Tensor:
    """(1, C, H, W) float32 of an 8-bit image scaled to 0..1, then (x - mean) / std."""
    x = (image.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


def calibrate(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set every BatchNorm's running statistics from ``x`` (other than the initial 0 / 1,
    and keeping activations in range, so deep random networks give varied predictions)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@contextmanager
def legacy_torchscript() -> Iterator[None]:
    """Write TorchScript as the archives users already hold were written. PyTorch now
    deprecates ``torch.jit`` (the suite turns that warning into an error so that the
    package never writes TorchScript again); the package still reads such files."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        # tracing says where a size became a constant: the fixtures trace at one size
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def sharp_unet(classes: int = 4, channels: int = 3, seed: int = 0):
    """A small random U-Net whose arg-max varies across an image (scaled head)."""
    from napari_unsupseg.core.models import ModelConfig, build_model
    from napari_unsupseg.core.models.checkpoints import LoadedModel

    torch.manual_seed(seed)
    config = ModelConfig("unet", classes, in_channels=channels, depth=2, base_channels=8,
                         mean=[0.5] * channels, std=[0.25] * channels)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return LoadedModel(model, config)
