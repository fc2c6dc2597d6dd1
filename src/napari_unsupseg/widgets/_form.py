"""The one place that builds a form from an engine's parameter dataclass.

:func:`widget_for` turns one :class:`~napari_unsupseg.core.base.params.ParamSpec` into a
magicgui widget (check box, spin box, drop-down, text field) with the parameter's
label, help (as tool tip), bounds and default. :class:`ParamForm` lays out every
parameter of a dataclass (the fields of a nested parameter object flat, as
:func:`~napari_unsupseg.core.base.params.specs` lists them): the everyday ones in
:attr:`ParamForm.basic`, the ``advanced=True`` ones in :attr:`ParamForm.advanced`, which
the widgets fold away in a collapsible "Advanced settings" section.
:meth:`ParamForm.params` reads the values back and builds (and validates) the dataclass
with :func:`~napari_unsupseg.core.base.params.from_mapping`, so a bad value comes back as an
:class:`~napari_unsupseg.core.base.errors.InputError` in plain words.

No Qt code here beyond magicgui widgets; the collapsible is added by the caller.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from magicgui import widgets

from ..core.base.errors import InputError
from ..core.base.params import ParamSpec, from_mapping, specs

# Qt spin boxes need finite bounds; these are "unbounded" for any sensible parameter.
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e12


def chosen_path(value: Any, *, file: bool = False) -> Path | None:
    """The path a magicgui ``FileEdit`` holds, or None when nothing is chosen (its empty
    value reads as ".") or, with ``file``, when the choice is a folder."""
    text = "" if value is None else str(value)
    if text in ("", "."):
        return None
    path = Path(text)
    return None if file and path.is_dir() else path


def _float_step(spec: ParamSpec) -> float:
    """A spin-box step that shows the default exactly and moves it by about a tenth."""
    default = spec.default if isinstance(spec.default, int | float) else 0.0
    if default and math.isfinite(default):
        return 10.0 ** (math.floor(math.log10(abs(default))) - 1)
    if spec.min is not None and spec.max is not None and spec.max > spec.min:
        return 10.0 ** (math.floor(math.log10(spec.max - spec.min)) - 2)
    return 0.01


class OptionalValue(widgets.Container):
    """A value that may be left unset (``None``): a check box and the value's widget.

    Unticked, the value is ``None`` and the inner widget is greyed out.
    """

    def __init__(self, inner: widgets.ValueWidget, *, enabled: bool, **kwargs: Any) -> None:
        self.toggle = widgets.CheckBox(value=enabled, text="", tooltip="Untick to leave unset")
        self.inner = inner
        super().__init__(widgets=[self.toggle, inner], layout="horizontal", labels=False, **kwargs)
        self.margins = (0, 0, 0, 0)
        inner.enabled = enabled
        self.toggle.changed.connect(self._on_toggle)

    def _on_toggle(self, on: bool) -> None:
        self.inner.enabled = on
        self.changed.emit(self.value)

    @property
    def value(self) -> Any:
        return self.inner.value if self.toggle.value else None

    @value.setter
    def value(self, value: Any) -> None:
        if value is None:
            self.toggle.value = False
        else:
            self.inner.value = value
            self.toggle.value = True


class LiteralEdit(widgets.LineEdit):
    """A text field for any other type: the text is read as a Python literal."""

    @property
    def parsed(self) -> Any:
        text = self.value.strip()
        if text == "":
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


def widget_for(spec: ParamSpec) -> widgets.Widget:
    """The magicgui widget for one parameter, set to its default.

    bool: check box; a field with ``choices``: drop-down; int / float: spin box with
    the declared bounds; a ``file`` field: a file chooser; str: text field; anything
    else: a text field read as a Python literal. An optional field (``int | None``) gets
    a tick box to leave it unset.
    """
    common = {"name": spec.name, "label": spec.label, "tooltip": spec.help}
    default = spec.default
    inner: widgets.Widget
    if spec.choices is not None:
        choices: list[tuple[str, Any]] = [(str(c), c) for c in spec.choices]
        if spec.optional and None not in spec.choices:
            choices.insert(0, ("none", None))
        value = default if default in [c for _, c in choices] else choices[0][1]
        inner = widgets.ComboBox(choices=choices, value=value, **common)
    elif spec.type is bool:
        inner = widgets.CheckBox(value=bool(default), text="", **common)
    elif spec.type is int:
        lo = int(spec.min) if spec.min is not None else -_INT_LIMIT
        hi = int(spec.max) if spec.max is not None else _INT_LIMIT
        value = int(default) if default is not None else max(lo, min(hi, 0))
        inner = widgets.SpinBox(value=value, min=lo, max=hi, step=1, **common)
    elif spec.type is float:
        lo = float(spec.min) if spec.min is not None else -_FLOAT_LIMIT
        hi = float(spec.max) if spec.max is not None else _FLOAT_LIMIT
        value = float(default) if default is not None else max(lo, min(hi, 0.0))
        inner = widgets.FloatSpinBox(value=value, min=lo, max=hi, step=_float_step(spec), **common)
    elif spec.file:
        inner = widgets.FileEdit(mode="r", value=default or "", **common)
    elif spec.type is str:
        inner = widgets.LineEdit(value="" if default is None else str(default), **common)
    else:
        inner = LiteralEdit(value="" if default is None else repr(default), **common)
    if spec.optional and spec.choices is None and spec.type is not str:
        inner.label = ""
        return OptionalValue(inner, enabled=default is not None, **common)
    return inner


def read_value(spec: ParamSpec, widget: widgets.Widget) -> Any:
    """The value a widget made by :func:`widget_for` holds, as the dataclass expects it."""
    if isinstance(widget, OptionalValue):
        if not widget.toggle.value:
            return None
        return read_value(spec, widget.inner)
    if isinstance(widget, LiteralEdit):
        return widget.parsed
    if isinstance(widget, widgets.FileEdit):
        path = chosen_path(widget.value, file=True)
        return "" if path is None else str(path)
    value = widget.value
    if spec.type is str and spec.choices is None and spec.optional and value == "":
        return None
    return value


class ParamForm:
    """Widgets for every parameter of an engine's dataclass.

    Parameters
    ----------
    params_type:
        The engine's parameter dataclass (fields declared with ``param(...)``).
    hidden:
        Field names the form leaves out because the caller sets them itself (for
        example ``stack_mode``, set from the widget's plane-mode choice).
    overrides:
        Defaults that differ from the dataclass's for this driver.
    """

    def __init__(
        self,
        params_type: type,
        *,
        hidden: Iterable[str] = (),
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.params_type = params_type
        hidden = set(hidden)
        self.specs = [s for s in specs(params_type) if s.name not in hidden]
        self.widgets: dict[str, widgets.Widget] = {}
        self.basic = widgets.Container(labels=True)
        self.advanced = widgets.Container(labels=True)
        for spec in self.specs:
            widget = widget_for(spec)
            self.widgets[spec.name] = widget
            (self.advanced if spec.advanced else self.basic).append(widget)
        for container in (self.basic, self.advanced):
            container.margins = (0, 0, 0, 0)
        if overrides:
            self.set_values(overrides)

    def __getitem__(self, name: str) -> widgets.Widget:
        return self.widgets[name]

    @property
    def has_advanced(self) -> bool:
        return len(self.advanced) > 0

    def values(self) -> dict[str, Any]:
        """The raw values of the form, keyed by field name."""
        return {s.name: read_value(s, self.widgets[s.name]) for s in self.specs}

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Set the fields named in ``values`` by their flat names or aliases (other keys
        are ignored)."""
        for spec in self.specs:
            key = spec.key_in(values)
            if key is None:
                continue
            widget = self.widgets[spec.name]
            value = values[key]
            if isinstance(widget, LiteralEdit):
                widget.value = "" if value is None else repr(value)
            elif isinstance(widget, (widgets.LineEdit, widgets.FileEdit)):
                widget.value = "" if value is None else str(value)
            else:
                widget.value = value

    def reset(self) -> None:
        """Back to the dataclass's defaults."""
        self.set_values({s.name: s.default for s in self.specs})

    def params(self, **fixed: Any) -> Any:
        """The parameter object from the form plus ``fixed`` values; validated.

        Raises :class:`InputError` (plain words) for a value out of bounds or a
        field that cannot be built.
        """
        values = {**self.values(), **fixed}
        try:
            return from_mapping(self.params_type, values)
        except InputError:
            raise
        except (TypeError, ValueError) as exc:
            raise InputError(f"The settings are not valid: {exc}") from exc
