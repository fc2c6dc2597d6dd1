"""Exporting any network this package holds as a ``torch.export`` program or as ONNX.

Both exports capture the network with :func:`torch.export.export` on an example input
whose sides are a multiple of the network's ``size_multiple``, with batch, height and
width dynamic (inputs of other sizes work when their sides are multiples of
``size_multiple`` too: pad the input otherwise, e.g. with :func:`.unet.pad_to_multiple`).
The input is ``(N, C, H, W)`` float32, normalised as the model's configuration says; the
output is ``(N, classes, H, W)`` logits.

* :func:`export_program`: a ``.pt2`` archive (:func:`torch.export.save`); run it with
  ``torch.export.load(path).module()(x)``. It loads back through
  :func:`.checkpoints.load_checkpoint` (its weights are read into the matching
  architecture, the configuration from the archive).
* :func:`export_onnx`: ONNX through ``torch.onnx.export(..., dynamo=True)``, which needs
  ``onnxscript`` (the ``onnx`` extra); the configuration travels in its metadata.

TorchScript is no longer written (PyTorch deprecates ``torch.jit``); TorchScript files
written before are still read. Each function accepts an ``nn.Module`` or a
:class:`~.checkpoints.LoadedModel` and returns the path written.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from torch import nn

__all__ = ["export_program", "export_onnx", "onnx_export_available", "example_input",
           "INPUT_NAME", "OUTPUT_NAME", "CONFIG_FILE"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Name of the extra file in a ``.pt2`` archive that holds the model's configuration.
CONFIG_FILE = "napari_unsupseg.json"


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


def _capture_input(model: Any, in_channels: int | None, size: int | None
                   ) -> tuple[torch.Tensor, tuple[dict[int, Any]]]:
    """The example input and its dynamic axes for :func:`torch.export.export`.

    The example has a batch of 2: export specialises a size of 1 to a constant, and
    the explicit ``min=1`` keeps single images allowed. Height and width are ``AUTO``:
    export infers their lower bound from the network (e.g. 16 for a 4-level U-Net)."""
    from torch.export import Dim

    x = example_input(model, in_channels, size)
    x = x.expand(2, *x.shape[1:]).contiguous()
    return x, ({0: Dim("N", min=1), 2: Dim.AUTO, 3: Dim.AUTO},)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Gradients off, and one FutureWarning that PyTorch 2.13's ONNX exporter raises from
    its own internals (``isinstance(treespec, LeafSpec)``, through copyreg) kept out of the
    caller's output: nothing a user of this package can act on. Every other warning,
    deprecations included, still shows."""
    import torch

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                FutureWarning)
        yield


def _config_json(model: Any, net: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    from .architectures import input_geometry

    return json.dumps({"config": asdict(config),
                       "size_multiple": input_geometry(config, net)[0]})


def export_program(model: Any, path: str | Path, *, in_channels: int | None = None,
                   size: int | None = None) -> Path:
    """Capture ``model`` (eval mode, CPU) with ``torch.export`` and save it at ``path``
    (conventionally ``.pt2``). A :class:`~.checkpoints.LoadedModel`'s configuration is
    stored in the archive as the extra file :data:`CONFIG_FILE`."""
    import torch

    net = _network(model).cpu().eval()
    x, dynamic = _capture_input(model, in_channels, size)
    path = _output(path)
    with _quiet_exporter():
        program = torch.export.export(net, (x,), dynamic_shapes=dynamic)
    stored = _config_json(model, net)
    torch.export.save(program, str(path), extra_files={CONFIG_FILE: stored} if stored else None)
    return path


def export_onnx(model: Any, path: str | Path, *, in_channels: int | None = None,
                size: int | None = None, opset: int = 18, dynamic: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path``.

    ``dynamic``: batch, height and width are dynamic axes. Input name
    :data:`INPUT_NAME`, output name :data:`OUTPUT_NAME`. ``opset``: 18 is the oldest the
    exporter writes directly (older ones go through a version conversion).
    """
    import torch

    if not onnx_export_available():
        raise InputError("Writing ONNX needs onnx and onnxscript: pip install "
                         "'napari-unsupseg[onnx]'.")
    net = _network(model).cpu().eval()
    x, axes = _capture_input(model, in_channels, size)
    if not dynamic:
        x, axes = example_input(model, in_channels, size), None
    path = _output(path)
    with _quiet_exporter():
        # external_data=False: one file, the weights inside it (models here are small).
        torch.onnx.export(net, (x,), str(path), dynamo=True, external_data=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamic_shapes=axes, verbose=False)
    config = getattr(model, "config", None)
    if config is not None:  # a LoadedModel: keep classes, normalisation and size multiple
        from .onnx_model import write_metadata

        write_metadata(path, config, net)
    return path


def onnx_export_available() -> bool:
    """Whether :func:`export_onnx` can run: the exporter needs onnx and onnxscript."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("onnx", "onnxscript"))


def _output(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the exported model.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
