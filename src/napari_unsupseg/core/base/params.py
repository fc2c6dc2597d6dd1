"""Engine parameters: one dataclass per engine, read by both drivers.

Declare each field with :func:`param` so that the command line and the widgets
build their options from the same place (help text, choices, bounds), and a
parameter cannot exist in one driver and not the other::

    @dataclass
    class MyParams:
        n_segments: int = param(1000, "How many superpixels to aim for.", min=2)
        method: str = param("slic", "Which method.", choices=("slic", "felzenszwalb"))

:func:`validate` checks the declared bounds and choices and raises
:class:`InputError` in plain words.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import InputError

P = TypeVar("P")


def param(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    label: str | None = None,
    advanced: bool = False,
) -> Any:
    """A dataclass field with the metadata the drivers need.

    ``advanced`` fields are folded away in the widgets (still on the command line).
    """
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "label": label,
        "advanced": advanced,
    }
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """What a driver needs to know about one parameter."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    min: float | None
    max: float | None
    label: str
    advanced: bool


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(type, optional) from an annotation such as ``int | None``."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return _base_type(kinds[0])[0], True
        raise TypeError(f"unsupported parameter type {annotation!r}")
    if origin is typing.Literal:
        return type(args[0]), False
    if isinstance(annotation, type):
        return annotation, False
    raise TypeError(f"unsupported parameter type {annotation!r}")


def specs(params_type: type) -> list[ParamSpec]:
    """The parameters of an engine's dataclass, in declaration order."""
    hints = typing.get_type_hints(params_type)
    out = []
    for f in dataclasses.fields(params_type):
        kind, optional = _base_type(hints[f.name])
        meta = f.metadata
        out.append(
            ParamSpec(
                name=f.name,
                type=kind,
                optional=optional,
                default=f.default,
                help=meta.get("help", ""),
                choices=meta.get("choices"),
                min=meta.get("min"),
                max=meta.get("max"),
                label=meta.get("label") or f.name.replace("_", " "),
                advanced=bool(meta.get("advanced", False)),
            )
        )
    return out


def validate(params: Any) -> None:
    """Check every declared bound and choice; raise :class:`InputError` in plain words."""
    for spec in specs(type(params)):
        value = getattr(params, spec.name)
        if value is None:
            if not spec.optional:
                raise InputError(f"The parameter '{spec.name}' needs a value.")
            continue
        if spec.choices is not None and value not in spec.choices:
            options = ", ".join(str(c) for c in spec.choices)
            raise InputError(f"'{spec.name}' must be one of {options}; got {value!r}.")
        if spec.min is not None and value < spec.min:
            raise InputError(f"'{spec.name}' must be at least {spec.min}; got {value}.")
        if spec.max is not None and value > spec.max:
            raise InputError(f"'{spec.name}' must be at most {spec.max}; got {value}.")


def from_mapping(params_type: type[P], values: dict[str, Any]) -> P:
    """Build and validate a parameter object, ignoring keys it does not have."""
    names = {f.name for f in dataclasses.fields(params_type)}  # type: ignore[arg-type]
    params = params_type(**{k: v for k, v in values.items() if k in names})
    validate(params)
    return params
