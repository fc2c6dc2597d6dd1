"""The network being trained: built from scratch or from a checkpoint, and saved in this
package's own format (weights + JSON configuration + training provenance).

The saved file loads through :func:`..models.checkpoints.load_checkpoint` like any
other model, so ``predict`` and the inference widget run it; its configuration says
``background: True`` with one class name per output channel, so channel k comes back
as label k: the painted class values.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import InputError
from ..models import ModelConfig, build_model
from ..models.presets import generic_palette
from .params import TrainParams

if TYPE_CHECKING:
    from torch import nn

    from ..models.loaded import LoadedModel

MODEL_SUFFIXES = (".pt", ".pth")


def class_names(spec: str, values: list[int], num_classes: int,
                given: dict[int, str] | None = None) -> list[str]:
    """One name per output channel: 'unlabelled' for 0, the painted classes' names, and
    'unused k' for values nobody painted."""
    names = [f"unused {k}" for k in range(num_classes)]
    names[0] = "unlabelled"
    for v in values:
        names[v] = f"class {v}"
    if given:
        for v, name in given.items():
            if 0 < v < num_classes:
                names[v] = str(name)
    listed = [n.strip() for n in (spec or "").split(",") if n.strip()]
    if listed:
        if len(listed) != len(values):
            raise InputError(f"{len(listed)} class names were given for {len(values)} painted "
                             f"classes ({', '.join(map(str, values))}); give one name per "
                             "class, separated by commas.")
        for v, name in zip(values, listed, strict=True):
            names[v] = name
    return names


def class_palette(num_classes: int, colours: dict[int, Any] | None = None) -> list[list[int]]:
    """RGB 0-255 per output channel: the given colours (e.g. the painted layer's), else a
    generic palette."""
    palette = [list(c) for c in generic_palette(num_classes)]
    palette[0] = [0, 0, 0]
    for v, colour in (colours or {}).items():
        if 0 < v < num_classes:
            rgb = np.asarray(colour, float)[:3]
            if rgb.max() <= 1.0:
                rgb = rgb * 255.0
            palette[v] = [int(round(c)) for c in rgb]
    return palette


def start_model(params: TrainParams, in_channels: int, num_classes: int,
                mean: np.ndarray, std: np.ndarray, start: LoadedModel | None = None
                ) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """The network to train, its configuration, and a note on where its weights came from.

    From scratch: ``params.architecture``, normalised by the data's ``mean`` / ``std``.
    From ``params.init``: that checkpoint's architecture and normalisation; every weight
    of the same shape is kept and the class head is replaced when the class count differs.
    A checkpoint made for another number of input channels is an :class:`InputError`.
    ``start``: a model in memory to continue from (takes the place of ``params.init``).
    ``params.encoder_weights``: an ImageNet classifier's state dict loaded into the encoder
    of a network built from scratch (see :mod:`..models.encoders`); ignored, and the note
    says so, when starting from a checkpoint or a model in memory.
    """
    if not params.init and start is None:
        config = ModelConfig(
            params.architecture, num_classes, in_channels, output_stride=16,
            depth=params.unet_depth, base_channels=params.unet_channels, background=True,
            mean=[float(m) for m in mean], std=[float(s) for s in std])
        net = build_model(config)
        note: dict[str, Any] = {"init": None, "encoder_weights": None}
        if params.encoder_weights:
            from ..models.encoders import load_encoder

            note.update(load_encoder(net, config.architecture, params.encoder_weights))
        return net, config, note
    from ..models.checkpoints import load_checkpoint

    loaded = start if start is not None else load_checkpoint(params.init)
    name = "the previous model" if start is not None else Path(params.init).name
    source = loaded.config
    if source.architecture == "torchscript":
        raise InputError(f"{name} is a TorchScript archive of an unknown "
                         "architecture; training needs a checkpoint of one of this plugin's "
                         "architectures.")
    if source.in_channels != in_channels:
        raise InputError(f"The checkpoint {name} takes {source.in_channels} "
                         f"channel(s) but the images have {in_channels}; choose a checkpoint "
                         "made for these images or start from scratch.")
    if len(source.mean) != in_channels or len(source.std) != in_channels:
        source = replace(source, mean=[float(m) for m in mean], std=[float(s) for s in std])
    # Training feeds RGB scaled as 'auto' prediction does: the saved model must say so.
    changes: dict[str, Any] = {"num_classes": num_classes, "background": True,
                               "class_names": [], "palette": []}
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    changes.update({k: defaults[k] for k in ("bgr", "intensity") if k in defaults})
    config = replace(source, **changes)
    net = build_model(config)
    kept, replaced = transfer_weights(loaded.model, net)
    note = {"init": loaded.source if start is not None else str(params.init),
            "init_sha256": loaded.sha256,
            "init_format": loaded.format, "init_classes": source.num_classes,
            "weights_kept": kept, "weights_replaced": replaced, "encoder_weights": None}
    if params.encoder_weights:  # the checkpoint's encoder is already trained
        note["encoder_weights_ignored"] = (f"{params.encoder_weights}: training started from "
                                           f"{name}, whose weights were kept")
    return net, config, note


def transfer_weights(source: nn.Module, target: nn.Module) -> tuple[int, list[str]]:
    """Copy every tensor of the same name and shape from ``source`` into ``target``;
    returns how many were copied and the names left as initialised (a new head)."""
    own = target.state_dict()
    theirs = source.state_dict()
    same = {k: v for k, v in theirs.items() if k in own and v.shape == own[k].shape}
    target.load_state_dict({**own, **same})
    return len(same), sorted(k for k in own if k not in same
                             and not k.endswith("num_batches_tracked"))


#: The weight that outputs the classes, per architecture (bias: the same name, ``bias``).
_HEADS = {"unet": "head.weight", "unet_mobilenet": "head.weight",
          "deeplabv3plus": "classifier.classifier.3.weight",
          "deeplabv3": "classifier.classifier.4.weight"}


def silence_unused(net: nn.Module, config: ModelConfig, values: list[int]) -> None:
    """Make the output channels of values nobody painted (0 included) lose every arg-max:
    zero weights and a bias of -10,000 (float16-safe). Their softmax is then exactly 0,
    so training never moves them."""
    import torch

    arch = config.architecture
    key = _HEADS.get(arch) or _HEADS.get(arch.split("_")[0])
    params = dict(net.named_parameters())
    if key not in params or key.replace("weight", "bias") not in params:
        return
    weight, bias = params[key], params[key.replace("weight", "bias")]
    axis = 1 if arch == "unet_mobilenet" else 0  # a transposed conv: (in, out, k, k)
    unused = [k for k in range(config.num_classes) if k not in set(values)]
    with torch.no_grad():
        weight.index_fill_(axis, torch.tensor(unused, dtype=torch.long), 0.0)
        bias[unused] = -1e4


def loaded(net: nn.Module, config: ModelConfig, source: str = "") -> LoadedModel:
    """The trained network as the loader's :class:`LoadedModel` (CPU, eval mode)."""
    from ..models.loaded import LoadedModel

    return LoadedModel(net.cpu().eval(), config, source, "napari-unsupseg", "")


def save_model(path: str | Path, model: LoadedModel, training: dict[str, Any] | None = None
               ) -> Path:
    """Write a trained model in this package's format (``.pt`` added when there is no
    suffix); ``training``: the provenance stored beside the configuration."""
    from ..models.checkpoints import save_checkpoint

    path = Path(path).expanduser()
    if path.suffix.lower() not in MODEL_SUFFIXES:
        if path.suffix:
            raise InputError(f"Models are saved as .pt or .pth files, not {path.name}.")
        path = path.with_suffix(".pt")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the model.")
    return save_checkpoint(path, model.model, model.config,
                           extra={"training": training} if training else None)


def check_model_path(path: str | Path) -> Path:
    """Refuse an unusable output name before any training (nothing is written)."""
    path = Path(path).expanduser()
    if path.suffix and path.suffix.lower() not in MODEL_SUFFIXES:
        raise InputError(f"Models are saved as .pt or .pth files, not {path.name}.")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the model.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"The model cannot be written under {path.parent}.")
    return path
