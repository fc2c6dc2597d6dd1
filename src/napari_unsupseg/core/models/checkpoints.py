"""Loading and saving models: one entry point for every file format.

:func:`load_checkpoint` reads, through one adapter per file format (:data:`FILE_FORMATS`):

* a pickled PyTorch checkpoint: a DeepLabV3Plus-Pytorch dict (``model_state``), a bare
  state dict or one under ``state_dict`` / ``model`` (``module.`` / ``model.`` prefixes
  removed), or this project's format (:func:`save_checkpoint`: the weights plus a JSON
  configuration). The architecture is recognised from the keys by the weight layouts of
  :mod:`.layouts` (DeepLabV3Plus-Pytorch, torchvision, wkentaro/pytorch-fcn, this
  package's U-Nets);
* a ``torch.export`` archive (``.pt2``, as :func:`.export.export_program` writes): its
  weights and stored configuration (see :mod:`.program`; nothing in it is run);
* a TorchScript archive: its weights are loaded into the matching architecture here;
  only an archive whose keys match none is run as it is (``architecture="torchscript"``).
  Running an archive executes its code: only open archives from people you trust;
* an ONNX model (``.onnx``, optional extra ``onnx``, see :mod:`.onnx_model`);
* a bioimage.io model package (see :mod:`.bioimageio`).

Every pickle is read with ``torch.load(..., weights_only=True)``: a file that would run
code when loaded is refused; this needs PyTorch 2.6 (an older one is told so). A
checkpoint that does not fit the architecture is an :class:`InputError` naming the
missing and unexpected keys - never a silently random model. :func:`describe` says what
was recognised (architecture, classes, preprocessing, input size).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import InputError
from .architectures import ARCHITECTURES
from .bioimageio import is_package, load_package
from .layouts import detect_config
from .loaded import (  # noqa: F401 - part of this module's API
    FORMAT_NAME,
    LoadedModel,
    file_sha256,
    load_torchscript,
    model_from_state,
    sidecar_config,
    unwrap_state_dict,
)
from .onnx_model import load_onnx
from .presets import ModelConfig
from .program import is_program, load_program
from .safe_load import EXPECTED, TORCH_FLOOR, require_torch, torch_load
from .summary import describe  # noqa: F401 - part of this module's API

__all__ = ["LoadedModel", "load_checkpoint", "save_checkpoint", "describe",
           "describe_checkpoint", "detect_config", "require_torch", "is_torchscript",
           "FILE_FORMATS", "TORCH_FLOOR"]

FORMAT_VERSION = 1


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (running one executes its code: a driver
    may ask the user before loading it)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


@dataclass(frozen=True)
class FileFormat:
    """One readable file format: ``accepts(path)`` and
    ``load(path, architecture, output_stride) -> LoadedModel``."""

    name: str
    accepts: Callable[[Path], bool]
    load: Callable[[Path, str, int | None], LoadedModel]


def load_checkpoint(path: str | Path, architecture: str = "auto",
                    output_stride: int | None = None) -> LoadedModel:
    """Read a model file into a ready network (see the module docstring).

    ``architecture``: ``auto`` (recognised from the keys) or one of :data:`ARCHITECTURES`.
    ``output_stride``: 8 or 16 for DeepLab models; ``None`` keeps the checkpoint's
    (16 unless this project's format says otherwise).
    """
    require_torch()
    path = Path(path).expanduser()
    if not str(path) or not path.exists():
        raise InputError(f"The checkpoint file {path} does not exist.")
    if architecture != "auto" and architecture not in ARCHITECTURES:
        raise InputError(
            f"Unknown architecture '{architecture}'; use auto or one of "
            f"{', '.join(ARCHITECTURES)}.")
    for fmt in FILE_FORMATS:
        if fmt.accepts(path):
            return fmt.load(path, architecture, output_stride)
    if path.is_dir():
        raise InputError(f"{path} is a folder without a bioimage.io rdf.yaml; choose a model "
                         f"file: {EXPECTED}.")
    raise InputError(f"{path.name} is not a model file this plugin reads; expected {EXPECTED}.")


def _load_pickled(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    state, kind, config = unwrap_state_dict(torch_load(path))
    return model_from_state(state, kind, config or sidecar_config(path), architecture,
                            output_stride, path)


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write this project's format: the state dict plus the configuration as JSON.

    ``extra``: further JSON-serialisable entries (e.g. ``{"training": provenance}``),
    each stored as a JSON string under its key; loading ignores them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {key: json.dumps(value) for key, value in (extra or {}).items()}
    torch.save({**entries, "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "config": config.to_json(), "state_dict": model.state_dict()}, path)
    return path


def _onnx_load(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    return load_onnx(path)


FILE_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("bioimage.io package", is_package, load_package),
    FileFormat("ONNX model", lambda p: p.is_file() and p.suffix.lower() == ".onnx", _onnx_load),
    FileFormat("torch.export archive", lambda p: p.is_file() and is_program(p), load_program),
    FileFormat("TorchScript archive", lambda p: p.is_file() and is_torchscript(p),
               load_torchscript),
    FileFormat("PyTorch checkpoint", lambda p: p.is_file(), _load_pickled),
)


def describe_checkpoint(path: str | Path) -> str:
    """:func:`describe` of the model in ``path`` (reads the whole file: call it off the
    main thread); an :class:`InputError` when the file cannot be used."""
    return describe(load_checkpoint(path))
