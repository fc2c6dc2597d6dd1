"""The machine's limits in an engine widget: the device and the run's estimated peak memory
under the Run button, and a Run refused in one sentence when it will not fit.

Only a formula is computed (the image's shape and the settings; no pixel is read), so the
line follows every change of the layer or the settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..core.base.errors import InputError
from ..core.registry import Engine, Planned, plan_run
from ._controls import RunControls
from ._setup import RunSetup


def engine_shape(setup: RunSetup) -> tuple[int, ...]:
    """The channels-last shape the engine will see, ``(Y, X, C)`` or ``(N, Y, X, C)``,
    from the setup's shapes alone."""
    if setup.channel_data:
        channels = 1 + len(setup.channel_data)
    elif setup.channel_axis is not None:
        channels = int(setup.data.shape[setup.channel_axis])
    else:
        channels = 1
    lead = (math.prod(setup.lead_shape),) if setup.stacked else ()
    return (*lead, *setup.spatial_shape, channels)


def plan_for(entry: Engine | None, setup: RunSetup, params: Any) -> Planned | None:
    """The run checked against the machine (``params``: what the estimate reads); None
    for an engine without an estimate."""
    if entry is None or entry.estimate is None:
        return None
    return plan_run(entry.name, engine_shape(setup), setup.data.dtype, params)


def checked(entry: Engine | None, setup: RunSetup, params: Any) -> RunSetup:
    """The setup to run: as it is, or (backprop) moved to crop training to fit; a run that
    will not fit raises :class:`InputError` with one sentence (shown as a notification)."""
    planned = plan_for(entry, setup, params)
    if planned is None:
        return setup
    if not planned.limits.fits:
        raise InputError(planned.limits.refusal)
    return setup if planned.params is params else replace(setup, params=planned.params)


class LimitsLine:
    """Keeps the run controls' limits line up to date with the widget's choices.

    ``setup`` reads the choices as Run does, ``params`` the parameters the estimate reads
    from it; ``sources``: the widgets whose ``changed`` signal means the choices changed
    (the inputs, the parameter forms); ``own_line``: the line of a run checked another
    way (a block-by-block run: one block's estimate), None for the usual one."""

    def __init__(self, controls: RunControls, entry: Engine | None,
                 setup: Callable[[], RunSetup], params: Callable[[RunSetup], Any],
                 sources: Sequence[Any],
                 own_line: Callable[[RunSetup], str | None] | None = None) -> None:
        self.controls, self.entry, self.setup, self.params = controls, entry, setup, params
        self.own_line = own_line
        for source in sources:
            source.changed.connect(self.update)
        self.update()

    def update(self, *_: Any) -> None:
        """Recompute the line; empty while the choices do not make a run."""
        try:
            setup = self.setup()
            own = self.own_line(setup) if self.own_line is not None else None
            if own is not None:
                self.controls.set_limits(own)
                return
            planned = plan_for(self.entry, setup, self.params(setup))
        except Exception:  # no layer yet, a value being typed: no line, no error
            planned = None
        if planned is None:
            self.controls.set_limits("")
            return
        text = planned.limits.line
        if planned.note:
            text += f"; {planned.note}"
        elif not planned.limits.fits:
            text += ": will not fit"
        self.controls.set_limits(text)
