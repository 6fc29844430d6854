"""The three-axis piezo stage."""

from __future__ import annotations

import math
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Kind
from ophyd.utils import LimitError

from ._positioner import GuardedPositioner
from ._signals import operation, ro, rw, text


class PiezoAxis(GuardedPositioner):
    """One axis of the piezo stage: ``{P}stage:x`` (setpoint) and ``{P}stage:x_rbv``.

    The put completes on arrival; the soft limits are the setpoint's control limits, checked
    before anything is put.
    """

    what = "stage"

    setpoint = operation("", kind=Kind.normal)
    readback = ro("_rbv", kind=Kind.hinted)

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("egu", "um")
        super().__init__(prefix, name=name, **kwargs)

    def check_value(self, value: float) -> None:
        """Raise ``LimitError`` (a ValueError) outside the soft limits, before any put."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: position must be a number, not {value!r}") from None
        low, high = self.limits
        if not math.isfinite(value) or (low != high and not low <= value <= high):
            raise LimitError(
                f"{self.name}: {float(value):g} um is outside the soft limits "
                f"[{low:g}, {high:g}] um; nothing was sent to the stage"
            )

    def expected_move_time(self, position: float) -> float:
        velocity = self.parent.velocity.get() if self.parent is not None else 1.0
        return abs(position - (self.position or 0.0)) / max(velocity, 1e-9)

    def stop(self, *, success: bool = False) -> None:
        """Stop all axes (the stage has one stop for all) and end this axis' move."""
        stage = self.parent
        if stage is not None and stage.stop_all.connected:
            stage.stop_all.put(1, wait=False)
        super().stop(success=success)


class PiezoStage(Device):
    """A closed-loop three-axis piezo stage (``{P}stage:``), positions in um.

    ``stage.x``, ``stage.y``, ``stage.z`` are positioners (``bps.mv(stage.x, 1.5)``);
    ``velocity`` (um/s) is configuration.
    """

    x = Cpt(PiezoAxis, "x")
    y = Cpt(PiezoAxis, "y")
    z = Cpt(PiezoAxis, "z")
    velocity = rw("velocity", kind=Kind.config)
    stop_all = rw("stop", kind=Kind.omitted)
    moving = ro("moving", kind=Kind.omitted)
    status = text("status", kind=Kind.omitted)

    def stop(self, *, success: bool = False) -> None:
        """Stop every axis."""
        for axis in (self.x, self.y, self.z):
            axis.stop(success=success)
