"""ONNX models through onnxruntime (optional extra ``onnx``), e.g. networks trained in
other frameworks (a Keras U-Net after ``tf2onnx``).

What the model wants is read from the file, not asked of the user:

* **input layout**: NCHW or NHWC, from the input's shape - the channel axis is the fixed
  small one (``[N, 3, H, W]`` vs ``[N, H, W, 3]``; when both are fixed, the smaller);
* **input size**: fixed (ints in the shape: the image is predicted tile by tile at that
  size, smaller tiles padded up to it) or dynamic (any size);
* **output**: per-pixel logits or probabilities (a softmax - found by running the model
  once - read back as log-probabilities so blending and the arg-max are unchanged), in
  NCHW or NHWC, found from where the probe's height and width appear; a single output
  channel is a binary model (two classes).

Inputs are scaled to 0..1 by the image type (``intensity="dtype"``) with no further
normalisation unless the user chooses otherwise; :class:`OnnxModel` is an ``nn.Module``
so :func:`~..inference.predict` runs it like any other network (on the CPU or through
onnxruntime's providers; tensors come back on the caller's device). Files carrying
Deepness metadata give their classes, resolution and standardisation (:mod:`.deepness`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base.errors import InputError
from .architectures import input_geometry
from .deepness import apply_deepness
from .presets import ModelConfig

__all__ = ["OnnxModel", "load_onnx", "input_layout", "write_metadata", "METADATA_KEY"]

#: ONNX ``metadata_props`` key under which a file exported here keeps its configuration.
METADATA_KEY = "napari_unsupseg"

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
_PROBE = (64, 96)  # dynamic models are probed at this size (multiples of 32, not square)


def _fixed(dim: Any) -> bool:
    return isinstance(dim, int) and dim > 0


def input_layout(shape: list[Any]) -> tuple[str, int | None, tuple[int, int] | None]:
    """("NCHW" | "NHWC", channels or None, fixed (height, width) or None) of an input shape."""
    if len(shape) != 4:
        raise InputError(f"The ONNX model's input has {len(shape)} axes ({shape}); expected "
                         "an image batch with 4: NCHW or NHWC.")
    first, last = shape[1], shape[3]
    if _fixed(first) and (not _fixed(last) or first <= last):
        layout, channels, spatial = "NCHW", first, shape[2:4]
    elif _fixed(last):
        layout, channels, spatial = "NHWC", last, shape[1:3]
    else:
        layout, channels, spatial = "NCHW", None, shape[2:4]
    fixed = (int(spatial[0]), int(spatial[1])) if all(_fixed(d) for d in spatial) else None
    return layout, channels, fixed


class OnnxModel(nn.Module):
    """An onnxruntime session run as ``nn.Module``: NCHW float in, NCHW logits out."""

    def __init__(self, session: Any, layout: str, in_channels: int,
                 fixed: tuple[int, int] | None, batch: int | None, dtype: Any) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.layout = layout
        self.in_channels = in_channels
        self.fixed = fixed
        self.batch = batch  # a fixed batch size, or None
        self.dtype = dtype
        self.output_layout = "NCHW"
        self.probabilities = False
        self.size_multiple = 1

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The model's first output for an NCHW float batch, as the model gives it."""
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        step = self.batch or len(x)
        outs = []
        for start in range(0, len(x), step):
            part = x[start:start + step]
            short = step - len(part)
            if short:  # a fixed batch size: repeat the last sample, drop its outputs
                part = np.concatenate([part, np.repeat(part[-1:], short, axis=0)])
            out = self.session.run(None, {self.input_name: part})[0]
            outs.append(out[:len(out) - short])
        return np.concatenate(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x.detach().float().cpu().numpy())
        if self.output_layout == "NHWC":
            out = out.transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        if t.shape[1] == 1:  # binary: one logit / probability for the foreground
            t = torch.cat([1 - t, t] if self.probabilities else [torch.zeros_like(t), t], 1)
        if self.probabilities:
            t = torch.log(t.clamp_min(1e-12))
        return t.to(x.device)


def write_metadata(path: str | Path, config: ModelConfig, net: Any) -> None:
    """Store ``config`` and the size multiple the traced graph needs in an ONNX file, so
    that loading it back restores classes, normalisation and padding."""
    import onnx

    multiple = input_geometry(config, net)[0]
    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, json.dumps(
            {"config": asdict(config), "size_multiple": multiple}))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _stored(session: Any) -> tuple[ModelConfig | None, int]:
    """The configuration and size multiple of a file written by :func:`write_metadata`."""
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if not text:
        return None, 1
    try:
        values = json.loads(text)
        return ModelConfig.from_mapping(values["config"]), int(values.get("size_multiple", 1))
    except (KeyError, TypeError, ValueError, InputError):
        return None, 1


def _session(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise InputError("Reading ONNX models needs onnxruntime: pip install "
                         "'napari-unsupseg[onnx]'.") from error
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
        raise InputError(f"{path.name} could not be read as an ONNX model "
                         f"({type(error).__name__}: {str(error)[:200]}).") from error


def load_onnx(path: str | Path, sha256: str = "") -> Any:
    """A :class:`~.checkpoints.LoadedModel` for an ONNX file (see the module docstring)."""
    from .loaded import LoadedModel, file_sha256

    path = Path(path)
    session = _session(path)
    spec = session.get_inputs()[0]
    layout, channels, fixed = input_layout(list(spec.shape))
    dtype = _NUMPY_TYPES.get(spec.type)
    if dtype is None:
        raise InputError(f"The ONNX model takes {spec.type} input; only float, double, "
                         "float16 and uint8 images are supported.")
    batch = spec.shape[0] if _fixed(spec.shape[0]) else None
    stored, multiple = _stored(session)
    if channels is None and stored is not None:
        channels = stored.in_channels
    model = OnnxModel(session, layout, channels or 3, fixed, batch, dtype).eval()
    model.size_multiple = multiple
    height, width = fixed or _PROBE
    probe = np.random.default_rng(0).random((1, model.in_channels, height, width), np.float32)
    try:
        out = model.raw(probe)
    except Exception as error:  # noqa: BLE001
        raise InputError(f"The ONNX model in {path.name} failed on a test input of "
                         f"{height} x {width} px ({type(error).__name__}: "
                         f"{str(error)[:200]}).") from error
    if out.ndim != 4:
        raise InputError(f"The ONNX model in {path.name} returns shape {out.shape}; expected "
                         "per-pixel class scores (N, classes, H, W) or (N, H, W, classes).")
    if out.shape[2:] == (height, width):
        model.output_layout, classes, axis = "NCHW", out.shape[1], 1
    elif out.shape[1:3] == (height, width):
        model.output_layout, classes, axis = "NHWC", out.shape[3], 3
    else:
        raise InputError(f"The ONNX model in {path.name} returns shape {out.shape} for a "
                         f"{height} x {width} input; expected scores at the input's size.")
    in_range = out.min() >= 0 and out.max() <= 1
    model.probabilities = bool(in_range and (classes == 1 or np.allclose(
        out.sum(axis=axis), 1.0, atol=1e-3)))
    num_classes = max(2, int(classes))
    config = ModelConfig("onnx", num_classes=num_classes, in_channels=model.in_channels,
                         mean=[0.0] * model.in_channels, std=[1.0] * model.in_channels,
                         intensity="dtype", input_size=list(fixed) if fixed else [])
    if stored is not None and stored.num_classes == num_classes:
        config = replace(stored, architecture="onnx", input_size=config.input_size)
    # Models published for Deepness say their classes, resolution and standardisation.
    config, published = apply_deepness(
        config, session.get_modelmeta().custom_metadata_map, path.name)
    shape = "x".join(str(d) if _fixed(d) else "?" for d in spec.shape)
    size = f"fixed {fixed[0]} x {fixed[1]}" if fixed else "dynamic size"
    details = {"input": f"{layout} {spec.type} [{shape}] ({size})",
               "output": f"{'probabilities' if model.probabilities else 'logits'}, "
                         f"{model.output_layout}" + (", one channel: binary" if classes == 1
                                                     else "")}
    if stored is not None:
        details["exported"] = f"from {stored.architecture} by this plugin (classes and " \
                              "normalisation restored)"
    details.update(published)
    if multiple > 1:
        details["padding"] = f"tiles padded to a multiple of {multiple}"
    return LoadedModel(model, config, str(path), "onnx", sha256 or file_sha256(path), details)
