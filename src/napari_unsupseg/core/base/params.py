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
:func:`nested`: :func:`specs` shows the inner fields it names as flat parameters
(``prefix`` + the inner field's name unless :class:`Shown` renames it), so the command
line and the forms offer them with no code of their own, :func:`from_mapping` builds the
inner object back from them, and :func:`validate` checks the inner values too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
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
    file: bool = False,
) -> Any:
    """A dataclass field with the metadata the drivers need.

    ``advanced`` fields are folded away in the widgets (still on the command line).
    ``file``: a ``str`` field naming a file to read (the widgets offer a file chooser).
    """
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "label": label,
        "advanced": advanced,
        "file": file,
    }
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Shown:
    """How the drivers show one field of a nested parameter object; what is left as None
    keeps the inner field's own (the label then comes from the flat name)."""

    name: str | None = None  #: the flat name; default: the prefix + the field's name
    label: str | None = None
    help: str | None = None
    choices: tuple[Any, ...] | None = None
    advanced: bool | None = None
    aliases: tuple[str, ...] = ()  #: older flat names that keep working


@dataclass(frozen=True)
class _Nest:
    prefix: str
    shown: dict[str, Shown]


def nested(default_factory: Callable[[], Any], *, prefix: str, shown: dict[str, Shown]) -> Any:
    """A field holding another parameter dataclass (its defaults from ``default_factory``).

    ``shown``: the inner fields the drivers offer, in their order; the others keep the
    factory's values (and are still validated).
    """
    return dataclasses.field(default_factory=default_factory,
                             metadata={"nested": _Nest(prefix, shown)})


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
    file: bool = False  #: a file to read, chosen with a file dialog in the widgets

    def key_in(self, values: Mapping[str, Any]) -> str | None:
        """The name (or alias) under which ``values`` holds this parameter, if any."""
        return next((k for k in (self.name, *self.aliases) if k in values), None)


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


#: Short words of field names, spelt out where a form shows them as labels.
_WORDS = {"con": "continuity", "conv": "convolutions", "dist": "distance",
          "iter": "iterations", "lr": "learning rate", "mb": "(MB)", "sim": "similarity",
          "tol": "tolerance"}


def readable(name: str) -> str:
    """A field's label when it declares none: ``w_con`` -> "continuity weight",
    ``n_segments`` -> "number of segments", ``max_iter`` -> "max iterations"."""
    words = name.split("_")
    if len(words) > 1 and words[0] == "w":
        words = [*words[1:], "weight"]
    elif len(words) > 1 and words[0] == "n":
        words = ["number of", *words[1:]]
    return " ".join(_WORDS.get(word, word) for word in words)


def specs(params_type: type) -> list[ParamSpec]:
    """The parameters the drivers offer, in declaration order (nested ones flat)."""
    return _specs(params_type, every=False)


def _specs(params_type: type, every: bool) -> list[ParamSpec]:
    """``every``: nested fields the drivers do not offer too (for validation)."""
    hints = typing.get_type_hints(params_type)
    out = []
    for f in dataclasses.fields(params_type):
        meta = f.metadata
        if "nested" in meta:
            out += _nested_specs(f, hints[f.name], meta["nested"], every)
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
                label=meta.get("label") or readable(f.name),
                advanced=bool(meta.get("advanced", False)),
                file=bool(meta.get("file", False)),
            )
        )
    return out


def _nested_specs(f: dataclasses.Field, inner_type: type, nest: _Nest, every: bool
                  ) -> list[ParamSpec]:
    inner = {spec.name: spec for spec in _specs(inner_type, every=True)}
    unknown = set(nest.shown) - set(inner)
    if unknown:
        raise TypeError(f"{inner_type.__name__} has no field {sorted(unknown)}")
    defaults = f.default_factory()  # type: ignore[misc]
    hidden = [n for n in inner if n not in nest.shown] if every else []
    out = []
    for inner_name in [*nest.shown, *hidden]:
        spec, view = inner[inner_name], nest.shown.get(inner_name, Shown())
        name = view.name or nest.prefix + inner_name
        steps = spec.path or (spec.name,)
        out.append(dataclasses.replace(
            spec, name=name, path=(f.name, *steps), default=_follow(defaults, steps),
            help=view.help or spec.help,
            choices=view.choices or spec.choices,
            label=view.label or readable(name),
            advanced=spec.advanced if view.advanced is None else view.advanced,
            aliases=view.aliases,
        ))
    return out


def _follow(params: Any, steps: tuple[str, ...]) -> Any:
    for step in steps:
        params = getattr(params, step)
    return params


def _replaced(params: Any, steps: tuple[str, ...], value: Any) -> Any:
    """A copy of ``params`` with the value at ``steps`` (through nested objects) replaced."""
    head, *rest = steps
    inner = _replaced(getattr(params, head), tuple(rest), value) if rest else value
    return dataclasses.replace(params, **{head: inner})


def value_of(params: Any, spec: ParamSpec) -> Any:
    """The value ``spec`` stands for in ``params`` (through a nested object if need be)."""
    return _follow(params, spec.path or (spec.name,))


def flat_values(params: Any) -> dict[str, Any]:
    """Every parameter of ``params`` by its flat name (what drivers show)."""
    return {spec.name: value_of(params, spec) for spec in specs(type(params))}


def validate(params: Any) -> None:
    """Check every declared bound and choice, nested values included (with the choices the
    outer object allows); raise :class:`InputError` in plain words."""
    for spec in _specs(type(params), every=True):
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


def from_mapping(params_type: type[P], values: Mapping[str, Any]) -> P:
    """Build and validate a parameter object from flat names (or their aliases), ignoring
    keys it does not have; a nested object starts from its defaults (or from the object
    given under the field's own name) and takes the flat values meant for it."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(params_type):  # type: ignore[arg-type]
        if "nested" in f.metadata:
            start = f.default_factory()  # type: ignore[misc]
            given = values.get(f.name)
            kwargs[f.name] = given if isinstance(given, type(start)) else start
    for spec in specs(params_type):
        key = spec.key_in(values)
        if key is None:
            continue
        if spec.path:
            head, steps = spec.path[0], spec.path[1:]
            kwargs[head] = _replaced(kwargs[head], steps, values[key])
        else:
            kwargs[spec.name] = values[key]
    params = params_type(**kwargs)
    validate(params)
    return params
