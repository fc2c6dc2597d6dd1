"""What every model file adapter needs: the loaded model, file hashing, unwrapping and
strictly loading state dicts, TorchScript archives, and this project's configuration beside
the weights. The format modules (:mod:`.checkpoints`, :mod:`.onnx_model`,
:mod:`.bioimageio`) build on it and never on each other's internals."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import InputError
from .architectures import ARCHITECTURES, DEEPLAB_ARCHITECTURES, build_model
from .layouts import find_layout, guess_classes
from .presets import ModelConfig

#: The name this project's checkpoints carry in their ``format`` entry.
FORMAT_NAME = "napari-unsupseg"
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


def load_torchscript(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    try:
        with warnings.catch_warnings():
            # PyTorch deprecates TorchScript in favour of torch.export, but users hold
            # archives written before: reading them stays supported here (nothing here
            # writes TorchScript any more).
            warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated",
                                    DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # noqa: BLE001
        raise InputError(f"{path.name} could not be read as a TorchScript archive "
                         f"({type(error).__name__}: {str(error)[:200]}).") from error
    state = strip_prefixes(dict(scripted.state_dict()))
    return model_from_state(state, "torchscript", sidecar_config(path), architecture,
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


def sidecar_config(path: Path) -> ModelConfig | None:
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
