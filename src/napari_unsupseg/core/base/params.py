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

An engine that uses another engine's settings holds them whole (composition) with
:func:`nested`: the drivers show the fields it names as flat options (``prefix`` + the
inner field's name), and :func:`from_mapping` builds the inner object back from them.
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


def nested(
    default_factory: Any,
    *,
    prefix: str,
    shown: dict[str, dict[str, Any]],
) -> Any:
    """A field holding another parameter dataclass (its defaults from ``default_factory``).

    ``shown``: the inner fields the drivers offer, in order, each with overrides of its
    ``label``, ``advanced`` flag and ``aliases`` (older flat names that keep working);
    the others keep the factory's values.
    """
    return dataclasses.field(default_factory=default_factory,
                             metadata={"nested": {"prefix": prefix, "shown": shown}})


@dataclass(frozen=True)
class ParamSpec:
    """What a driver needs to know about one parameter.

    ``name`` is the flat name drivers use (an option, a form field); ``path`` locates the
    value inside a nested parameter object (empty for a top-level field)."""

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
    path: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


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
    """The parameters of an engine's dataclass, in declaration order (nested ones flat)."""
    hints = typing.get_type_hints(params_type)
    out = []
    for f in dataclasses.fields(params_type):
        meta = f.metadata
        if "nested" in meta:
            out += _nested_specs(f, hints[f.name], meta["nested"])
            continue
        kind, optional = _base_type(hints[f.name])
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


def _nested_specs(f: dataclasses.Field, inner_type: type, nest: dict[str, Any]
                  ) -> list[ParamSpec]:
    inner = {spec.name: spec for spec in specs(inner_type)}
    defaults = f.default_factory()  # type: ignore[misc]
    out = []
    for field_name, view in nest["shown"].items():
        spec, name = inner[field_name], nest["prefix"] + field_name
        out.append(dataclasses.replace(
            spec, name=name, path=(f.name, field_name),
            default=getattr(defaults, field_name),
            label=view.get("label") or name.replace("_", " "),
            advanced=bool(view.get("advanced", spec.advanced)),
            aliases=tuple(view.get("aliases", ())),
        ))
    return out


def value_of(params: Any, spec: ParamSpec) -> Any:
    """The value ``spec`` stands for in ``params`` (through a nested object if need be)."""
    for step in spec.path or (spec.name,):
        params = getattr(params, step)
    return params


def flat_values(params: Any) -> dict[str, Any]:
    """Every parameter of ``params`` by its flat name (what drivers show)."""
    return {spec.name: value_of(params, spec) for spec in specs(type(params))}


def validate(params: Any) -> None:
    """Check every declared bound and choice; raise :class:`InputError` in plain words."""
    for f in dataclasses.fields(params):
        if "nested" in f.metadata:
            validate(getattr(params, f.name))
    for spec in specs(type(params)):
        value = value_of(params, spec)
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
    """Build and validate a parameter object from flat names (or their aliases), ignoring
    keys it does not have; nested objects start from their defaults (or the object given
    under the field's own name) and take the flat values meant for them."""
    kwargs: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for spec in specs(params_type):
        key = next((k for k in (spec.name, *spec.aliases) if k in values), None)
        if key is None:
            continue
        if spec.path:
            inner.setdefault(spec.path[0], {})[spec.path[1]] = values[key]
        else:
            kwargs[spec.name] = values[key]
    for f in dataclasses.fields(params_type):  # type: ignore[arg-type]
        if "nested" in f.metadata:
            start = values.get(f.name) or f.default_factory()  # type: ignore[misc]
            kwargs[f.name] = dataclasses.replace(start, **inner.get(f.name, {}))
    params = params_type(**kwargs)
    validate(params)
    return params
