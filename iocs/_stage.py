"""The three-axis piezo stage IOC: x, y, z in micrometres, moving at a finite speed."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from caproto import AlarmSeverity
from caproto.server import PVGroup, pvproperty

from ._common import BACKEND_FAULTS, RefusedError, clear_alarm, raise_alarm, status_pv

if TYPE_CHECKING:
    from ._backends import StageBackend

#: Soft limits of every axis (um): a 200 um closed-loop piezo centred on the field of view.
TRAVEL_UM = (-100.0, 100.0)
TICK_S = 0.02
AXES = ("x", "y", "z")


def _setpoint(axis: str) -> pvproperty:
    return pvproperty(
        value=0.0,
        name=axis,
        units="um",
        precision=4,
        lower_ctrl_limit=TRAVEL_UM[0],
        upper_ctrl_limit=TRAVEL_UM[1],
        doc=f"{axis} setpoint (um); the put completes on arrival",
    )


def _readback(axis: str) -> pvproperty:
    return pvproperty(
        value=0.0,
        name=f"{axis}_rbv",
        units="um",
        precision=4,
        read_only=True,
        doc=f"{axis} position (um)",
    )


class StageIOC(PVGroup):
    """A closed-loop three-axis piezo stage (``{P}stage:``).

    Positions are in the sample's frame (um); the ``backend``
    (:class:`~qd_bluesky.iocs.StageBackend`) moves the stage. The simulated stage starts parked
    on a charging dot of the shared sample.

    PVs
    ---
    x, y, z
        Setpoints (um). The put moves the axis at ``velocity`` and completes on arrival.
        Positions outside the soft limits (the control limits, -100..100 um) are refused.
    x_rbv, y_rbv, z_rbv
        Positions (um), updated while moving.
    velocity
        Speed of every axis (um/s).
    stop
        Put 1 to stop all axes where they are.
    moving
        Number of axes in motion.
    status
        State (long string). A fault of the controller stops the move, fails its put and is
        written here with a MAJOR alarm, which the next move clears.
    """

    def __init__(self, *args, backend: StageBackend, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        self._stop_requested = False
        self._moving: set[str] = set()

    x = _setpoint("x")
    y = _setpoint("y")
    z = _setpoint("z")
    x_rbv = _readback("x")
    y_rbv = _readback("y")
    z_rbv = _readback("z")
    velocity = pvproperty(
        value=200.0,
        units="um/s",
        precision=2,
        lower_ctrl_limit=0.01,
        upper_ctrl_limit=1e4,
        doc="speed of every axis",
    )
    stop = pvproperty(value=0, doc="put 1 to stop all axes")
    moving = pvproperty(value=0, read_only=True, doc="number of axes in motion")
    status = status_pv("idle")

    @x.startup
    async def x(self, instance, async_lib):
        # Park where the simulation put the stage (on a charging dot).
        for axis, value in zip(AXES, self.backend.position_um, strict=True):
            await getattr(self, axis).write(value, verify_value=False)
            await getattr(self, f"{axis}_rbv").write(value)

    @x.putter
    async def x(self, instance, value):
        return await self._move("x", float(value))

    @y.putter
    async def y(self, instance, value):
        return await self._move("y", float(value))

    @z.putter
    async def z(self, instance, value):
        return await self._move("z", float(value))

    @stop.putter
    async def stop(self, instance, value):
        if value and self._moving:
            self._stop_requested = True
        return 0

    async def _move(self, axis: str, target: float) -> float:
        """Move one axis at ``velocity``; return where it ended (the target unless stopped)."""
        index = AXES.index(axis)
        readback = getattr(self, f"{axis}_rbv")
        if not self._moving:
            self._stop_requested = False
        self._moving.add(axis)
        await self.moving.write(len(self._moving))
        await clear_alarm(self.status)
        await self.status.write(f"moving {axis} to {target:.4f} um")
        start = self.backend.position_um[index]
        span = target - start
        speed = float(self.velocity.value)
        duration = abs(span) / speed
        t0 = time.monotonic()
        try:
            while True:
                if self._stop_requested:
                    await self.status.write(f"stopped at {self.backend.position_um}")
                    return self.backend.position_um[index]
                fraction = 1.0 if duration == 0 else min(1.0, (time.monotonic() - t0) / duration)
                position = list(self.backend.position_um)
                position[index] = start + span * fraction
                try:
                    self.backend.move_to(*position)
                except BACKEND_FAULTS as exc:
                    reason = f"moving {axis} failed: {exc}"
                    await raise_alarm(self.status, f"fault: {reason}")
                    raise RefusedError(reason, source=self.prefix) from None
                await readback.write(position[index])
                if fraction >= 1.0:
                    return target
                await asyncio.sleep(min(TICK_S, duration * (1.0 - fraction)))
        finally:
            self._moving.discard(axis)
            await self.moving.write(len(self._moving))
            if not self._moving and self.status.alarm.severity == AlarmSeverity.NO_ALARM:
                await self.status.write("idle")
