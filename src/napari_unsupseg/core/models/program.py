"""Reading back a ``torch.export`` archive (``.pt2``, :func:`.export.export_program`).

Only the archive's weights and this package's configuration are read, straight from the
files the PT2 archive format documents (``data/weights/model_weights_config.json`` and
the raw tensor files beside it, ``extra/napari_unsupseg.json``): the weights go into the
matching architecture built here, the exported graph is not run. ``torch.export.load``
is not used because it unpickles parts of an archive (``weights_only=False``), which runs
code of the file's choosing; an archive whose weights are pickled is refused.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from ..base.errors import InputError
from .loaded import LoadedModel, model_from_state, sidecar_config, strip_prefixes
from .presets import ModelConfig

__all__ = ["is_program", "load_program"]

_WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
_CONFIG_FILE = "extra/napari_unsupseg.json"  # export.CONFIG_FILE under the archive's extra/
#: The PT2 format's dtype codes (its ScalarType enum) for the dtypes weights come in.
_DTYPES = {1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64,
           6: torch.float16, 7: torch.float32, 8: torch.float64, 12: torch.bool,
           13: torch.bfloat16}


def _root(names: list[str]) -> str | None:
    """The archive's folder prefix (``name/``) when it holds an exported program."""
    for name in names:
        if name.endswith("/" + _WEIGHTS_CONFIG):
            return name[: -len(_WEIGHTS_CONFIG)]
    return None


def is_program(path: Path) -> bool:
    """Whether ``path`` is a PT2 archive written by ``torch.export.save``."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _root(archive.namelist()) is not None
    except (zipfile.BadZipFile, OSError):
        return False


def _ints(values: list[dict[str, int]]) -> list[int]:
    if not all(isinstance(v, dict) and "as_int" in v for v in values):
        raise InputError("its weights have symbolic sizes")
    return [int(v["as_int"]) for v in values]


def _weights(archive: zipfile.ZipFile, root: str) -> dict[str, torch.Tensor]:
    entries = json.loads(archive.read(root + _WEIGHTS_CONFIG))["config"]
    byteorder = root + "byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
        raise InputError("its weights are stored big-endian")
    files: dict[str, torch.Tensor] = {}
    state = {}
    for key, entry in entries.items():
        meta = entry.get("tensor_meta")
        if entry.get("use_pickle") or meta is None:
            raise InputError(f"its weight {key} is pickled, and pickles can run code")
        dtype = _DTYPES.get(int(meta["dtype"]))
        if dtype is None:
            raise InputError(f"its weight {key} has a dtype this plugin does not read")
        name = entry["path_name"]
        if name not in files:  # weights may share one file (aliases)
            raw = bytearray(archive.read(root + "data/weights/" + name))
            files[name] = torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(
                0, dtype=dtype)
        sizes, strides = _ints(meta["sizes"]), _ints(meta["strides"])
        offset = int(meta.get("storage_offset", {}).get("as_int", 0))
        state[key] = torch.as_strided(files[name], sizes, strides, offset).clone()
    return state


def _stored_config(archive: zipfile.ZipFile, root: str) -> ModelConfig | None:
    if root + _CONFIG_FILE not in archive.namelist():
        return None
    try:
        values = json.loads(archive.read(root + _CONFIG_FILE))
        return ModelConfig.from_mapping(values["config"])
    except (KeyError, TypeError, ValueError, InputError):
        return None


def load_program(path: Path, architecture: str, output_stride: int | None) -> LoadedModel:
    """A :class:`LoadedModel` from the weights of a ``torch.export`` archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            root = _root(archive.namelist()) or ""
            state = _weights(archive, root)
            config = _stored_config(archive, root)
    except InputError as error:
        raise InputError(f"{path.name} (a torch.export archive) was not read: {error}.") \
            from error
    except (KeyError, ValueError, RuntimeError, zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{path.name} could not be read as a torch.export archive "
                         f"({type(error).__name__}: {str(error)[:200]}).") from error
    return model_from_state(strip_prefixes(state), "torch.export", config or sidecar_config(
        path), architecture, output_stride, path)
