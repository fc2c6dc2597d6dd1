"""Exporting any network this package holds to TorchScript or ONNX.

Both exports trace the network on an example input whose sides are a multiple of the
network's ``size_multiple`` (so the traced graph holds no padding step) and keep the
batch, height and width dynamic (ONNX: ``dynamic_axes``; TorchScript: the traced size
operations). Inputs of other sizes work when their sides are multiples of
``size_multiple`` too (pad the input otherwise, e.g. with
:func:`.unet.pad_to_multiple`). The input is ``(N, C, H, W)`` float32, normalised as the
model's configuration says; the output is ``(N, classes, H, W)`` logits.

A TorchScript file written here loads back through
:func:`.checkpoints.load_checkpoint` (its weights are read into the matching
architecture). Each function accepts an ``nn.Module`` or a
:class:`~.checkpoints.LoadedModel` and returns the path written.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["export_torchscript", "export_onnx", "example_input", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _network(model: Any) -> nn.Module:
    from torch import nn

    net = getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise InputError(f"Cannot export a {type(model).__name__}: expected a network.")
    return net


def example_input(model: Any, in_channels: int | None = None, size: int | None = None
                  ) -> torch.Tensor:
    """A ``(1, C, S, S)`` zero input with S a multiple of the network's ``size_multiple``."""
    import torch

    net = _network(model)
    config = getattr(model, "config", None)
    channels = in_channels or getattr(net, "in_channels", None) or getattr(
        config, "in_channels", None) or 3
    multiple = int(getattr(net, "size_multiple", 32) or 1)
    side = size or max(64, multiple * 2)
    side = -(-side // multiple) * multiple
    return torch.zeros(1, int(channels), side, side)


def export_torchscript(model: Any, path: str | Path, *, in_channels: int | None = None,
                       size: int | None = None) -> Path:
    """Trace ``model`` (eval mode, CPU) and save it as a TorchScript archive at ``path``."""
    import torch

    net = _network(model).cpu().eval()
    x = example_input(model, in_channels, size)
    path = _output(path)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracing warns that sizes become constants where Python ints are used; the
        # size operations of the sides are kept, which is what dynamic sizes need.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, x, check_trace=False)
    traced.save(str(path))
    return path


def export_onnx(model: Any, path: str | Path, *, in_channels: int | None = None,
                size: int | None = None, opset: int = 17, dynamic: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path``.

    ``dynamic``: batch, height and width are dynamic axes (``N``, ``H``, ``W``).
    Input name :data:`INPUT_NAME`, output name :data:`OUTPUT_NAME`.
    """
    import torch

    net = _network(model).cpu().eval()
    x = example_input(model, in_channels, size)
    path = _output(path)
    axes = {INPUT_NAME: {0: "N", 2: "H", 3: "W"}, OUTPUT_NAME: {0: "N", 2: "H", 3: "W"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes=axes if dynamic else None)
    config = getattr(model, "config", None)
    if config is not None:  # a LoadedModel: keep classes, normalisation and size multiple
        from .onnx_model import write_metadata

        write_metadata(path, config, net)
    return path


def _output(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the exported model.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
