"""Loading and saving models: one entry point for every file format.

:func:`load_checkpoint` reads, through one adapter per file format (:data:`FILE_FORMATS`):

* a pickled PyTorch checkpoint: a DeepLabV3Plus-Pytorch dict (``model_state``), a bare
  state dict or one under ``state_dict`` / ``model`` (``module.`` / ``model.`` prefixes
  removed), or this project's format (:func:`save_checkpoint`: the weights plus a JSON
  configuration). The architecture is recognised from the keys by the weight layouts of
  :mod:`.layouts` (DeepLabV3Plus-Pytorch, torchvision, wkentaro/pytorch-fcn, this
  package's U-Nets);
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

import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import InputError
from . import build_model
from .architectures import ARCHITECTURES, DEEPLAB_ARCHITECTURES
from .layouts import detect_config, find_layout, guess_classes
from .presets import ModelConfig
from .safe_load import EXPECTED, TORCH_FLOOR, require_torch, torch_load

__all__ = ["LoadedModel", "load_checkpoint", "save_checkpoint", "describe",
           "describe_checkpoint", "detect_config", "require_torch", "is_torchscript",
           "FILE_FORMATS", "TORCH_FLOOR"]

FORMAT_NAME = "napari-unsupseg"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "model.", "net.")
_LIST_LIMIT = 8


@dataclass
class LoadedModel:
    """A network ready for prediction (eval mode, on the CPU) and what describes it."""

    model: nn.Module
    config: ModelConfig
    source: str = ""
    format: str = ""
    sha256: str = ""
    #: Format-specific facts for :func:`describe` (e.g. an ONNX model's tensor layouts).
    details: dict[str, str] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def unwrap_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], str, ModelConfig | None]:
    """(state dict, format name, embedded config) from what ``torch.load`` returned."""
    if not isinstance(obj, Mapping):
        raise InputError(
            f"The checkpoint holds a {type(obj).__name__}, not a dictionary of weights.")
    config = None
    if obj.get("format") == FORMAT_NAME:
        try:
            config = ModelConfig.from_mapping(json.loads(obj["config"]))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise InputError(f"The checkpoint's JSON configuration is unreadable ({error}).") \
                from error
        state, kind = obj.get("state_dict"), FORMAT_NAME
    elif "model_state" in obj:
        state, kind = obj["model_state"], "deeplabv3plus-pytorch"
    elif isinstance(obj.get("state_dict"), Mapping):
        state, kind = obj["state_dict"], "state_dict"
    elif isinstance(obj.get("model"), Mapping):
        state, kind = obj["model"], "state_dict"
    else:
        state, kind = obj, "state_dict"
    if not isinstance(state, Mapping):
        raise InputError("The checkpoint's weights are not a dictionary of tensors.")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError("The checkpoint holds no weights (no tensors found).")
    return strip_prefixes(tensors), kind, config


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``module.`` / ``model.`` / ``net.`` prefix shared by every key."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" (and {len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str,
                 detected: ModelConfig | None = None) -> None:
    """Load ``state`` strictly; any missing, unexpected or mis-shaped key is an InputError."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"The checkpoint does not fit the architecture '{arch}'."]
        if detected is not None and detected.architecture != arch:
            parts.append(f"Its keys look like '{detected.architecture}': choose that (or 'auto').")
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {_key_list(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {_key_list(unexpected)}.")
        if wrong:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]
            parts.append(f"Keys of another shape ({len(wrong)}): {_key_list(shapes)}.")
        raise InputError(" ".join(parts))
    full = dict(own)
    full.update({k: v for k, v in state.items()})
    model.load_state_dict(full, strict=True)


class ScriptedModel(nn.Module):
    """A TorchScript module run as it is (its keys match no architecture known here)."""

    def __init__(self, scripted: torch.jit.ScriptModule, in_channels: int) -> None:
        super().__init__()
        self.scripted = scripted
        self.in_channels = in_channels
        self.size_multiple = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scripted(x)
        if isinstance(out, Mapping):  # torchvision-style {"out": ...}
            out = out["out"]
        return out


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
    return model_from_state(state, kind, config or _sidecar_config(path), architecture,
                            output_stride, path)


def _load_torchscript(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # noqa: BLE001
        raise InputError(f"{path.name} could not be read as a TorchScript archive "
                         f"({type(error).__name__}: {str(error)[:200]}).") from error
    state = strip_prefixes(dict(scripted.state_dict()))
    return model_from_state(state, "torchscript", _sidecar_config(path), architecture,
                            output_stride, path, scripted)


def model_from_state(state: Mapping[str, torch.Tensor], kind: str, config: ModelConfig | None,
                     architecture: str, output_stride: int | None, path: Path,
                     scripted: Any = None) -> LoadedModel:
    """Build the architecture that ``state`` fits (or the one asked for) and load it.

    ``config``: a configuration stored with the weights (wins over the keys);
    ``scripted``: a TorchScript module run as it is when no architecture fits."""
    found = find_layout(state)
    detected = None
    details: dict[str, str] = {}
    if found is not None:
        layout, detected = found
        adapted = layout.adapt(state)
        if len(adapted) != len(state):
            details["dropped"] = f"{len(state) - len(adapted)} training-only tensors " \
                                 "(auxiliary head) not used for prediction"
        state = adapted
        if kind == "state_dict":
            kind = layout.name
    if config is None:
        if architecture == "auto" and detected is None:
            if scripted is not None:
                return _as_scripted(scripted, path, kind)
            sample = ", ".join(sorted(state)[:5])
            raise InputError(
                f"The architecture of {path.name} could not be recognised from its keys "
                f"(first keys: {sample}). Supported: {', '.join(ARCHITECTURES)}.")
        config = detected
        if architecture != "auto" and (config is None or config.architecture != architecture):
            base = config or ModelConfig(architecture,
                                         num_classes=guess_classes(state, architecture))
            config = replace(base, architecture=architecture)
    elif architecture != "auto" and architecture != config.architecture:
        config = replace(config, architecture=architecture)
    if output_stride is not None:
        if config.architecture in DEEPLAB_ARCHITECTURES and output_stride not in (8, 16):
            raise InputError(f"The output stride must be 8 or 16, not {output_stride}.")
        config = replace(config, output_stride=int(output_stride))
    model = build_model(config)
    load_weights(model, state, config.architecture, detected)
    return LoadedModel(model.eval(), config, str(path), kind, file_sha256(path), details)


def _as_scripted(scripted: Any, path: Path, kind: str) -> LoadedModel:
    convs = [v for v in scripted.state_dict().values() if v.ndim == 4]
    in_channels = int(convs[0].shape[1]) if convs else 3
    model = ScriptedModel(scripted, in_channels).eval()
    try:
        with torch.inference_mode():
            probe = model(torch.zeros(1, in_channels, 64, 64))
    except Exception as error:  # noqa: BLE001
        raise InputError(f"The TorchScript model in {path.name} failed on a test input "
                         f"({type(error).__name__}: {str(error)[:200]}).") from error
    if probe.ndim != 4 or tuple(probe.shape[-2:]) != (64, 64):
        raise InputError(f"The TorchScript model in {path.name} does not return per-pixel "
                         f"class scores (output shape {tuple(probe.shape)}).")
    config = ModelConfig("torchscript", num_classes=int(probe.shape[1]), in_channels=in_channels)
    return LoadedModel(model, config, str(path), kind, file_sha256(path),
                       {"runs": "its own code (TorchScript): its architecture matches none "
                                "known here"})


def _sidecar_config(path: Path) -> ModelConfig | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        values = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(values, dict) or "architecture" not in values:
        return None
    try:  # a JSON file of some other tool beside the weights is not an error
        return ModelConfig.from_mapping(values)
    except (InputError, TypeError):
        return None


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


def _bioimageio_accepts(path: Path) -> bool:
    from .bioimageio import is_package

    return is_package(path)


def _bioimageio_load(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    from .bioimageio import load_package

    return load_package(path, architecture, output_stride)


def _onnx_load(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    from .onnx_model import load_onnx

    return load_onnx(path)


FILE_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("bioimage.io package", _bioimageio_accepts, _bioimageio_load),
    FileFormat("ONNX model", lambda p: p.is_file() and p.suffix.lower() == ".onnx", _onnx_load),
    FileFormat("TorchScript archive", lambda p: p.is_file() and is_torchscript(p),
               _load_torchscript),
    FileFormat("PyTorch checkpoint", lambda p: p.is_file(), _load_pickled),
)


def describe(loaded: LoadedModel) -> str:
    """What was recognised in a loaded model (see :func:`.summary.describe`)."""
    from .summary import describe as _describe

    return _describe(loaded)


def describe_checkpoint(path: str | Path) -> str:
    """:func:`describe` of the model in ``path`` (reads the whole file: call it off the
    main thread); an :class:`InputError` when the file cannot be used."""
    return describe(load_checkpoint(path))
