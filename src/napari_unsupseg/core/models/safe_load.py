"""Reading pickled weights without running code, and the PyTorch version that needs.

``torch.load(..., weights_only=True)`` with numpy scalars allowed through
``torch.serialization.safe_globals`` given (callable, name) pairs: PyTorch 2.6 or newer
(:data:`TORCH_FLOOR`); an older one gets a sentence naming the version needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..base.errors import InputError

__all__ = ["TORCH_FLOOR", "EXPECTED", "require_torch", "torch_load"]

#: Oldest PyTorch that can read checkpoints here: ``torch.serialization.safe_globals``
#: with (callable, name) pairs arrived in 2.6.
TORCH_FLOOR = (2, 6)
EXPECTED = ("a PyTorch checkpoint (.pth / .pt: a state dict of a known architecture, a "
            "DeepLabV3Plus-Pytorch checkpoint or a model saved by this plugin), a torch.export "
            "archive (.pt2), a TorchScript archive, an ONNX model (.onnx) or a bioimage.io "
            "package (a folder or .zip with rdf.yaml)")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def require_torch() -> None:
    """An :class:`InputError` naming the version needed when PyTorch is too old."""
    if _version(torch.__version__) < TORCH_FLOOR or not hasattr(torch.serialization,
                                                                "safe_globals"):
        need = ".".join(map(str, TORCH_FLOOR))
        raise InputError(
            f"Reading model files needs PyTorch {need} or newer, and this environment has "
            f"PyTorch {torch.__version__}; upgrade it (pip install 'torch>={need}').")


def _numpy_safe_globals() -> list[Any]:
    """numpy scalars and dtypes: DeepLabV3Plus-Pytorch saves ``best_score`` as a numpy
    float64. Rebuilding a scalar from its dtype and bytes runs no code of the file's choosing;
    both the numpy 1 and numpy 2 module names are accepted."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[Any] = [(scalar, "numpy.core.multiarray.scalar"),
                          (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def torch_load(path: Path) -> Any:
    """``torch.load`` of weights only (numpy scalars allowed); plain errors."""
    require_torch()
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - classified below
        text = str(error)
        if "Unsupported global" in text or "GLOBAL" in text:
            raise InputError(
                f"{path.name} was refused: it holds Python objects that would run code when "
                "loaded, and this plugin only loads weights. Re-save the model's state dict "
                "(torch.save(model.state_dict(), ...)) in a trusted environment.") from error
        raise InputError(
            f"{path.name} could not be read as a PyTorch checkpoint: the file is truncated, "
            f"damaged or not a model file; expected {EXPECTED} "
            f"({type(error).__name__}: {text[:200]}).") from error
