"""Choosing the torch device and seeding, with plain-words failures.

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; a named device must be present.

    ``cuda:1`` style names are accepted. An absent device raises :class:`InputError`.
    """
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "CUDA was asked for, but this PyTorch sees no CUDA GPU "
                f"(PyTorch {torch.__version__}); choose 'auto' or 'cpu'."
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"There is no GPU {device.index}: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
        return device
    if kind == "mps":
        if not _mps_available():
            raise InputError(
                "Apple MPS was asked for, but it is not available here; choose 'auto' or 'cpu'."
            )
        return torch.device("mps")
    raise InputError(
        f"Unknown device '{name}': use one of {', '.join(DEVICE_CHOICES)} (or 'cuda:N')."
    )


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy and random; return a numpy generator for the engine's own draws.

    The same seed on the CPU gives identical results.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def describe(device: torch.device) -> str:
    """A short human description of a device for metadata and messages."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
