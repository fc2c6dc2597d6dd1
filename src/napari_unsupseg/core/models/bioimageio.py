"""bioimage.io model packages: reading them, and writing one for any model held here.

A package is a folder (or a ``.zip`` of one) with an ``rdf.yaml`` (or ``bioimageio.yaml``)
describing the inputs, outputs, preprocessing and weights. Reading accepts weights of
type ``pytorch_state_dict`` (a state dict of an architecture known here - no code of the
package is run), ``onnx`` and ``torchscript`` (in that order of preference), the
class names of the output's channel axis, the input's fixed size, and the preprocessing
steps ``scale_linear`` (read as scaling by the image type), ``scale_range`` (percentiles),
``fixed_zero_mean_unit_variance`` (the mean and std) and ``clip``.

Writing (:func:`export_package`) follows the model description format 0.5 written as
plain YAML (the documented fields; ``bioimageio.spec``, optional extra ``bioimageio``,
validates it): inputs ``bcyx`` float32 with the preprocessing that reproduces this
package's (``scale_linear`` 1/255 for 8-bit images, or ``scale_range`` 1st-99th
percentile then ``clip``; then ``fixed_zero_mean_unit_variance``), outputs ``bcyx``
logits with the class names, weights as ONNX (when the ``onnx`` extra is installed) and
a ``pytorch_state_dict`` rebuilt by :func:`napari_unsupseg.core.models.build_from_config`,
test tensors (``.npy``) computed by this package, and the full configuration under
``config.napari_unsupseg`` so that reading it back restores classes and palette exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import InputError
from .architectures import input_geometry
from .presets import ModelConfig, resolve_classes

__all__ = ["is_package", "load_package", "export_package", "RDF_NAMES"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
FORMAT_VERSION = "0.5.4"
WEIGHT_ORDER = ("pytorch_state_dict", "onnx", "torchscript")


def _zip_rdf(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    return next((n for n in names if n.rsplit("/", 1)[-1] in RDF_NAMES), None)


def is_package(path: Path) -> bool:
    """A folder holding ``rdf.yaml``, such a YAML file itself, or a zip of a package."""
    if path.is_dir():
        return any((path / name).is_file() for name in RDF_NAMES)
    if path.suffix.lower() in (".yaml", ".yml"):
        return path.is_file()
    return path.is_file() and zipfile.is_zipfile(path) and _zip_rdf(path) is not None


def _read_rdf(path: Path) -> dict[str, Any]:
    import yaml

    try:
        rdf = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path.name} could not be read as YAML ({error}).") from error
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        kind = rdf.get("type") if isinstance(rdf, dict) else type(rdf).__name__
        raise InputError(f"{path.name} describes a bioimage.io '{kind}', not a model.")
    return rdf


def load_package(path: str | Path, architecture: str = "auto",
                 output_stride: int | None = None) -> Any:
    """A :class:`~.checkpoints.LoadedModel` from a package folder, its YAML or a zip."""
    from .loaded import file_sha256

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            rdf_path = next(path / n for n in RDF_NAMES if (path / n).is_file())
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
            rdf_path = Path(tmp) / _zip_rdf(path)
        else:
            rdf_path = path
        rdf = _read_rdf(rdf_path)
        loaded = _load_weights(rdf, rdf_path.parent, architecture, output_stride)
    loaded.config = _config_from_rdf(rdf, loaded.config)
    loaded.source = str(path)
    loaded.sha256 = file_sha256(rdf_path if path.is_dir() else path)
    loaded.details["package"] = f"bioimage.io '{rdf.get('name', path.stem)}'"
    return loaded


def _load_weights(rdf: dict[str, Any], root: Path, architecture: str,
                  output_stride: int | None) -> Any:
    from .loaded import load_torchscript, model_from_state, unwrap_state_dict
    from .onnx_model import load_onnx
    from .safe_load import torch_load

    weights = rdf.get("weights") or {}
    problems = []
    for kind in WEIGHT_ORDER:
        entry = weights.get(kind)
        if not isinstance(entry, dict) or "source" not in entry:
            continue
        source = root / str(entry["source"])
        if not source.is_file():
            problems.append(f"{kind}: {entry['source']} is missing")
            continue
        try:
            if kind == "pytorch_state_dict":
                state, _, embedded = unwrap_state_dict(torch_load(source))
                config = embedded or _napari_config(rdf)
                loaded = model_from_state(state, "state_dict", config, architecture,
                                          output_stride, source)
            elif kind == "onnx":
                loaded = load_onnx(source)
            else:
                loaded = load_torchscript(source, architecture, output_stride)
        except InputError as error:
            problems.append(f"{kind}: {error}")
            continue
        loaded.format = f"bioimage.io ({kind})"
        return loaded
    found = ", ".join(weights) or "none"
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise InputError(
        f"The bioimage.io package '{rdf.get('name', '?')}' has weights of type {found}; this "
        f"plugin reads {', '.join(WEIGHT_ORDER)} (a state dict of a known architecture)"
        f"{detail}.")


def _napari_config(rdf: dict[str, Any]) -> ModelConfig | None:
    stored = (rdf.get("config") or {}).get("napari_unsupseg")
    return ModelConfig.from_mapping(stored) if isinstance(stored, dict) else None


def _as_list(value: Any, n: int) -> list[float]:
    values = value if isinstance(value, list | tuple) else [value] * n
    return [float(v) for v in values]


def _config_from_rdf(rdf: dict[str, Any], config: ModelConfig) -> ModelConfig:
    """Classes, preprocessing and size from the description (the stored configuration of
    a package written here wins)."""
    stored = _napari_config(rdf)
    if stored is not None:
        return replace(stored, input_size=config.input_size or stored.input_size)
    n = config.in_channels
    changes: dict[str, Any] = {"mean": [0.0] * n, "std": [1.0] * n, "intensity": "dtype"}
    inp = (rdf.get("inputs") or [{}])[0]
    for step in inp.get("preprocessing") or []:
        op, kwargs = step.get("id") or step.get("name"), step.get("kwargs") or {}
        if op == "scale_range":
            changes["intensity"] = "percentile"
        elif op == "fixed_zero_mean_unit_variance" or (
                op == "zero_mean_unit_variance" and kwargs.get("mode") == "fixed"):
            changes["mean"] = _as_list(kwargs.get("mean", 0.0), n)
            changes["std"] = _as_list(kwargs.get("std", 1.0), n)
        elif op == "zero_mean_unit_variance":
            changes["intensity"] = "percentile"  # per-image statistics: nearest available
    axes = {a.get("type"): a for a in inp.get("axes") or [] if isinstance(a, dict)}
    names = [str(c).lower() for c in (axes.get("channel") or {}).get("channel_names") or []]
    changes["bgr"] = names[:1] in (["b"], ["blue"]) and n == 3
    out = (rdf.get("outputs") or [{}])[0]
    out_axes = {a.get("type"): a for a in out.get("axes") or [] if isinstance(a, dict)}
    classes = (out_axes.get("channel") or {}).get("channel_names") or []
    if len(classes) == config.num_classes:
        changes["class_names"] = [str(c) for c in classes]
        changes["background"] = str(classes[0]).lower() in ("background", "bg")
    return replace(config, **changes)


# --------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _test_input(config: ModelConfig) -> np.ndarray:
    """A smooth 8-bit-valued test image (1, C, H, W) of a size the model takes."""
    from scipy import ndimage as ndi

    h, w = config.input_size or (64, 64)
    noise = np.random.default_rng(0).random((config.in_channels, h, w))
    smooth = ndi.gaussian_filter(noise, (0, 4, 4))
    smooth = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-6)
    return np.round(smooth * 255).astype(np.float32)[None]


def _preprocess(x: np.ndarray, config: ModelConfig) -> np.ndarray:
    """What the written preprocessing does to a (1, C, H, W) float32 input."""
    if config.intensity == "percentile":
        low, high = np.percentile(x, [1, 99], axis=(2, 3), keepdims=True)
        x = np.clip((x - low) / (high - low + 1e-6), 0, 1)
    else:
        x = x / 255.0
    mean = np.asarray(config.mean, np.float32)[None, :, None, None]
    std = np.asarray(config.std, np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


def _preprocessing(config: ModelConfig) -> list[dict[str, Any]]:
    if config.intensity == "percentile":
        steps: list[dict[str, Any]] = [
            {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0,
                                             "max_percentile": 99.0}},
            {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}]
    else:
        steps = [{"id": "scale_linear", "kwargs": {"gain": 1.0 / 255.0, "offset": 0.0}}]
    steps.append({"id": "fixed_zero_mean_unit_variance",
                  "kwargs": {"mean": [float(m) for m in config.mean],
                             "std": [float(s) for s in config.std], "axis": "channel"}})
    return steps


def _space_axes(config: ModelConfig, multiple: int) -> list[dict[str, Any]]:
    if config.input_size:
        return [{"type": "space", "id": a, "size": int(s)}
                for a, s in zip("yx", config.input_size, strict=True)]
    return [{"type": "space", "id": a, "size": {"min": max(multiple, 32), "step": multiple}}
            for a in "yx"]


def export_package(loaded: Any, path: str | Path, *, name: str = "", description: str = "",
                   authors: tuple[str, ...] = ("napari-unsupseg user",),
                   license: str = "MIT") -> Path:
    """Write ``loaded`` (a :class:`~.checkpoints.LoadedModel`) as a bioimage.io package:
    a folder, or a zip when ``path`` ends in ``.zip``. Returns the rdf.yaml or the zip."""
    import torch
    import yaml

    from .onnx_model import OnnxModel

    path = Path(path)
    as_zip = path.suffix.lower() == ".zip"
    folder = Path(tempfile.mkdtemp()) if as_zip else path
    folder.mkdir(parents=True, exist_ok=True)
    config, model = loaded.config, loaded.model.eval()
    multiple = max(input_geometry(config, model)[:2])
    x = _test_input(config)
    with torch.inference_mode():
        y = model(torch.from_numpy(_preprocess(x, config))).float().numpy()
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    weights = _write_weights(loaded, folder, isinstance(model, OnnxModel))
    names, _, _ = resolve_classes("auto", config.num_classes, config)
    channel_names = (["blue", "green", "red"] if config.bgr else
                     ["red", "green", "blue"] if config.in_channels == 3 else
                     [f"channel{i}" for i in range(config.in_channels)])
    (folder / "README.md").write_text(
        f"# {name or config.architecture}\n\n{description or 'Exported by napari-unsupseg.'}\n\n"
        "Input: intensities scaled to 0..1 (by 1/255 for 8-bit images, or the 1st-99th "
        "percentile), then the per-channel mean and std of the preprocessing. Output: "
        "per-pixel class logits (arg-max over the channel axis gives the class).\n\n"
        "# Validation\n\nThe test tensors were computed by napari-unsupseg with these "
        "weights; no accuracy figures come with this export.\n")
    rdf = {
        "format_version": FORMAT_VERSION, "type": "model",
        "name": name or f"napari-unsupseg {config.architecture}",
        "description": description or f"{config.architecture} segmentation model "
                                      f"({config.num_classes} classes)",
        "authors": [{"name": a} for a in authors],
        "cite": [{"text": "napari-unsupseg", "url": "https://github.com/napari/napari"}],
        "license": license, "documentation": "README.md",
        "tags": ["segmentation", "semantic-segmentation", "napari"],
        "inputs": [{
            "id": "input0", "description": "image, intensities as stored",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channel_names},
                     *_space_axes(config, multiple)],
            "test_tensor": {"source": "test_input.npy",
                            "sha256": _sha256(folder / "test_input.npy")},
            "data": {"type": "float32"}, "preprocessing": _preprocessing(config)}],
        "outputs": [{
            "id": "output0", "description": "class logits",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": list(names)},
                     *[{"type": "space", "id": a, "size": {"tensor_id": "input0",
                                                           "axis_id": a}} for a in "yx"]],
            "test_tensor": {"source": "test_output.npy",
                            "sha256": _sha256(folder / "test_output.npy")},
            "data": {"type": "float32"}}],
        "weights": weights,
        "config": {"napari_unsupseg": json.loads(json.dumps(asdict(config)))},
    }
    rdf_path = folder / "rdf.yaml"
    rdf_path.write_text(yaml.safe_dump(rdf, sort_keys=False))
    if not as_zip:
        return rdf_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(folder.iterdir()):
            archive.write(item, item.name)
    shutil.rmtree(folder, ignore_errors=True)
    return path


def _write_weights(loaded: Any, folder: Path, is_onnx: bool) -> dict[str, Any]:
    """Weight files and their rdf entries: the ONNX file itself for an ONNX model, else a
    state dict and (with the ``onnx`` extra) ONNX. No TorchScript: PyTorch deprecates
    writing it (packages that have TorchScript weights are still read)."""
    import torch

    from .export import export_onnx, onnx_export_available

    version = torch.__version__.split("+")[0]
    if is_onnx:
        shutil.copyfile(loaded.source, folder / "weights.onnx")
        return {"onnx": {"source": "weights.onnx", "sha256": _sha256(folder / "weights.onnx"),
                         "opset_version": _opset(folder / "weights.onnx")}}
    weights: dict[str, Any] = {}
    config = loaded.config
    torch.save(loaded.model.state_dict(), folder / "weights.pt")
    weights["pytorch_state_dict"] = {
        "source": "weights.pt", "sha256": _sha256(folder / "weights.pt"),
        "architecture": {"callable": "build_from_config",
                         "import_from": "napari_unsupseg.core.models",
                         "kwargs": json.loads(json.dumps(asdict(config)))},
        "pytorch_version": version}
    if not onnx_export_available():  # the onnx extra is not installed: state dict only
        return weights
    export_onnx(loaded, folder / "weights.onnx")
    weights["onnx"] = {"source": "weights.onnx", "sha256": _sha256(folder / "weights.onnx"),
                       "opset_version": _opset(folder / "weights.onnx"),
                       "parent": "pytorch_state_dict"}
    return weights


def _opset(path: Path) -> int:
    try:
        import onnx
    except ImportError:
        return 17
    opsets = [o.version for o in onnx.load(str(path), load_external_data=False).opset_import
              if o.domain in ("", "ai.onnx")]
    return int(opsets[0]) if opsets else 17
