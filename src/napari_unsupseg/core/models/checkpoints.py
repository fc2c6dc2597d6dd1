"""Loading and saving model checkpoints - weights only, never code.

Accepted files:

* a VainF/DeepLabV3Plus-Pytorch checkpoint: a dict with ``model_state`` (keys
  ``backbone.*`` / ``classifier.*``), other entries (optimizer, ...) ignored;
* a bare state dict, or one under ``state_dict`` / ``model``; keys prefixed
  ``module.`` (``DataParallel``) or ``model.`` are unprefixed;
* a TorchScript archive: its weights are read and loaded into the matching
  architecture here; only an archive whose keys match no known architecture is
  run as it is (``architecture="torchscript"``);
* this project's format (:func:`save_checkpoint`): the weights plus a JSON
  configuration (architecture, classes, class names, palette, normalisation).

Every pickle is read with ``torch.load(..., weights_only=True)``: a file that
would run code when loaded is refused. The architecture, class count, input
channels and separable head are detected from the keys; the output stride is not
stored in the weights (VainF's released models use 16). A checkpoint that does
not fit the architecture is an :class:`InputError` naming the missing and
unexpected keys - never a silently random model.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from . import build_model
from .presets import ARCHITECTURES, DEEPLAB_ARCHITECTURES, ModelConfig

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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


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


def _torch_load(path: Path) -> Any:
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
            f"damaged or not a checkpoint ({type(error).__name__}: {text[:200]}).") from error


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


def _max_index(keys: set[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = [int(m.group(1)) for k in keys if (m := regex.match(k))]
    return max(found) if found else -1


def detect_config(state: Mapping[str, torch.Tensor]) -> ModelConfig | None:
    """The architecture and sizes a state dict was made for, or ``None`` if unknown."""
    keys = set(state)
    plus = "classifier.project.0.weight" in keys
    v3 = any(k.startswith("classifier.classifier.0.convs.") for k in keys)
    if plus or v3:
        if "backbone.low_level_features.0.0.weight" in keys:
            backbone = "mobilenet"
            in_channels = state["backbone.low_level_features.0.0.weight"].shape[1]
        elif "backbone.conv1.weight" in keys:
            blocks = _max_index(keys, r"backbone\.layer3\.(\d+)\.") + 1
            backbone = {6: "resnet50", 23: "resnet101"}.get(blocks)
            if backbone is None:
                raise InputError(
                    f"The checkpoint's ResNet has {blocks} blocks in layer3; only ResNet-50 (6) "
                    "and ResNet-101 (23) backbones are supported.")
            in_channels = state["backbone.conv1.weight"].shape[1]
        else:
            return None
        last = "classifier.classifier.3.weight" if plus else "classifier.classifier.4.weight"
        if last not in keys:
            return None
        return ModelConfig(
            architecture=("deeplabv3plus_" if plus else "deeplabv3_") + backbone,
            num_classes=int(state[last].shape[0]), in_channels=int(in_channels),
            separable=any(k.startswith("classifier.") and ".body.0." in k for k in keys))
    if {"encoder.0.block.0.weight", "head.weight"} <= keys:
        first = state["encoder.0.block.0.weight"]
        return ModelConfig(
            architecture="unet", num_classes=int(state["head.weight"].shape[0]),
            in_channels=int(first.shape[1]), depth=_max_index(keys, r"up\.(\d+)\.weight") + 1,
            base_channels=int(first.shape[0]),
            batch_norm="encoder.0.block.1.running_mean" in keys)
    if {"encoder.features.0.0.weight", "head.weight"} <= keys:
        return ModelConfig(
            architecture="unet_mobilenet", num_classes=int(state["head.weight"].shape[1]),
            in_channels=int(state["encoder.features.0.0.weight"].shape[1]))
    return None


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


def load_checkpoint(path: str | Path, architecture: str = "auto",
                    output_stride: int | None = None) -> LoadedModel:
    """Read a checkpoint file into a ready network (see the module docstring).

    ``architecture``: ``auto`` (detected from the keys) or one of :data:`ARCHITECTURES`.
    ``output_stride``: 8 or 16 for DeepLab models; ``None`` keeps the checkpoint's
    (16 unless this project's format says otherwise).
    """
    path = Path(path).expanduser()
    if not str(path) or not path.exists():
        raise InputError(f"The checkpoint file {path} does not exist.")
    if path.is_dir():
        raise InputError(f"{path} is a folder; choose the checkpoint file (.pth / .pt).")
    if architecture != "auto" and architecture not in ARCHITECTURES:
        raise InputError(
            f"Unknown architecture '{architecture}'; use auto or one of "
            f"{', '.join(ARCHITECTURES)}.")
    scripted = None
    if _is_torchscript(path):
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:  # noqa: BLE001
            raise InputError(f"{path.name} could not be read as a TorchScript archive "
                             f"({type(error).__name__}: {str(error)[:200]}).") from error
        state, kind, config = strip_prefixes(dict(scripted.state_dict())), "torchscript", None
    else:
        state, kind, config = unwrap_state_dict(_torch_load(path))
    if config is None:
        config = _sidecar_config(path)
    detected = detect_config(state)
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
            base = config or ModelConfig(architecture, num_classes=_guess_classes(state))
            config = replace(base, architecture=architecture)
    elif architecture != "auto" and architecture != config.architecture:
        config = replace(config, architecture=architecture)
    if output_stride is not None:
        if config.architecture in DEEPLAB_ARCHITECTURES and output_stride not in (8, 16):
            raise InputError(f"The output stride must be 8 or 16, not {output_stride}.")
        config = replace(config, output_stride=int(output_stride))
    model = build_model(config)
    load_weights(model, state, config.architecture, detected)
    return LoadedModel(model.eval(), config, str(path), kind, file_sha256(path))


def _guess_classes(state: Mapping[str, torch.Tensor]) -> int:
    for key in ("classifier.classifier.3.weight", "classifier.classifier.4.weight",
                "head.weight"):
        if key in state:
            return int(state[key].shape[0])
    return 21


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
    return LoadedModel(model, config, str(path), kind, file_sha256(path))


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


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig) -> Path:
    """Write this project's format: the state dict plus the configuration as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "config": config.to_json(), "state_dict": model.state_dict()}, path)
    return path



def describe_checkpoint(path: str | Path) -> str:
    """One line on what a checkpoint holds (format, architecture, classes), without
    building the model; an :class:`InputError` when the file cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a file.")
    if _is_torchscript(path):
        return "TorchScript archive (its architecture is found when the model is loaded)"
    state, kind, config = unwrap_state_dict(_torch_load(path))
    config = config or _sidecar_config(path) or detect_config(state)
    if config is None:
        return f"{kind}: {len(state)} tensors, architecture not recognised - choose one"
    names = ""
    if config.class_names:
        names = f"; classes {', '.join(config.class_names[:4])}"
        names += ", ..." if len(config.class_names) > 4 else ""
    head = ", separable head" if config.separable else ""
    return (f"{config.architecture}: {config.num_classes} classes, {config.in_channels} input "
            f"channel(s){head} ({kind}){names}")
