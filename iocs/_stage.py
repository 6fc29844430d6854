"""The three-axis piezo stage IOC: x, y, z as EPICS motor records, in micrometres.

Each axis is a motor record (``{P}stage:x``, ``{P}stage:x.RBV``, ...) as motorPIGCS2 serves a
PI piezo controller, so ophyd's ``EpicsMotor`` drives it. What the record does here is the
part of the motor record a client sees: a put to ``.VAL`` completes on arrival (``.DMOV`` 1),
a target outside ``.LLM``/``.HLM`` sets ``.LVIO`` and does not move, ``.STOP`` and ``.SPMG``
stop the motion, ``.CNEN`` 0 (servo off) refuses moves, and a controller fault ends the move
with a MAJOR alarm on the record.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from caproto import AlarmSeverity, AlarmStatus, SkipWrite
from caproto.server import PVGroup, SubGroup, pvproperty
from caproto.server.server import PvpropertyDouble

from ._common import BACKEND_FAULTS, RefusedError, clear_alarm, raise_alarm, status_pv

if TYPE_CHECKING:
    from ._backends import StageBackend

#: Soft limits of every axis (um): a 200 um closed-loop piezo centred on the field of view.
TRAVEL_UM = (-100.0, 100.0)
#: Default speed of every axis (um/s) and the fastest the controller goes.
VELOCITY_UM_S = 200.0
MAX_VELOCITY_UM_S = 1e4
#: Sensor resolution (um), the record's MRES and RDBD.
RESOLUTION_UM = 1e-4
PRECISION = 4
TICK_S = 0.02
AXES = ("x", "y", "z")

# Motor record status bits (.MSTA) the simulation sets.
MSTA_DIRECTION = 1 << 0
MSTA_DONE = 1 << 1
MSTA_CLOSED_LOOP = 1 << 5
MSTA_ENCODER = 1 << 8
MSTA_PROBLEM = 1 << 9
MSTA_MOVING = 1 << 10
MSTA_HOMED = 1 << 14


class MotorValue(PvpropertyDouble):
    """``.VAL`` of a motor record: the record, not Channel Access, enforces the soft limits.

    Its control limits are ``.LLM``/``.HLM`` (what clients such as ``EpicsMotor`` check), but a
    put beyond them is accepted and refused by the record (``.LVIO`` 1, no motion), as the
    motor record does.
    """

    async def verify_value(self, value):
        # PvpropertyData's hook without ChannelNumeric's limit check: straight to the putter.
        return await self.putter(self, value)


class MotorAxis(PVGroup):
    """One axis: a motor record ``{P}stage:<axis>`` on the stage's backend (um)."""

    motor = pvproperty(
        value=0.0,
        name="",
        record="motor",
        dtype=MotorValue,
        precision=PRECISION,
        units="um",
        lower_ctrl_limit=TRAVEL_UM[0],
        upper_ctrl_limit=TRAVEL_UM[1],
        doc="setpoint (um); the put completes on arrival",
    )

    def __init__(self, *args, index: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.index = index
        self.axis = AXES[index]
        self._stop_requested = False
        self._generation = 0  # a new move supersedes the one in progress

    @property
    def fields(self):
        return self.motor.field_inst

    @property
    def backend(self) -> StageBackend:
        return self.parent.backend

    @property
    def position(self) -> float:
        return float(self.backend.position_um[self.index])

    @motor.startup
    async def motor(self, instance, async_lib):
        f = self.fields
        position = self.position
        await f.description.write(f"{self.axis} piezo axis")
        await f.engineering_units.write("um")
        await f.display_precision.write(PRECISION)
        await f.velocity.write(VELOCITY_UM_S)
        await f.max_velocity.write(MAX_VELOCITY_UM_S)
        await f.base_velocity.write(0.0)
        await f.seconds_to_velocity.write(0.0)  # a piezo reaches its speed at once
        await f.motor_step_size.write(RESOLUTION_UM)
        await f.encoder_step_size.write(RESOLUTION_UM)
        await f.retry_deadband.write(RESOLUTION_UM)
        await f.tweak_step_size.write(1.0)
        await f.dial_low_limit.write(TRAVEL_UM[0])
        await f.dial_high_limit.write(TRAVEL_UM[1])
        await f.user_low_limit.write(TRAVEL_UM[0])
        await f.user_high_limit.write(TRAVEL_UM[1])
        await f.enable_control.write("Enable")
        await _post(f.limit_violation, 0)
        await f.motor_is_moving.write(0)
        await f.done_moving_to_value.write(1)
        # Park where the simulation put the stage (on a charging dot).
        await instance.write(position, verify_value=False)
        await f.dial_desired_value.write(position)
        await self._publish(position, moving=False)

    @motor.putter
    async def motor(self, instance, value):
        return await self._move(float(value), previous=float(instance.value))

    @motor.fields.stop.putter
    async def _stop_put(fields, instance, value):
        if value:
            fields.parent.group.request_stop()
        return 0  # the record clears STOP once processed

    @motor.fields.stop_pause_move_go.putter
    async def _spmg_put(fields, instance, value):
        if value in ("Stop", "Pause"):
            fields.parent.group.request_stop()
        return value

    @motor.fields.user_high_limit.putter
    async def _hlm_put(fields, instance, value):
        await fields.parent.write_metadata(upper_ctrl_limit=float(value))
        await fields.dial_high_limit.write(float(value))
        return value

    @motor.fields.user_low_limit.putter
    async def _llm_put(fields, instance, value):
        await fields.parent.write_metadata(lower_ctrl_limit=float(value))
        await fields.dial_low_limit.write(float(value))
        return value

    @motor.fields.velocity.putter
    async def _velo_put(fields, instance, value):
        # The motor record keeps VELO within [VBAS, VMAX].
        high = fields.max_velocity.value or math.inf
        return min(max(float(value), fields.base_velocity.value, RESOLUTION_UM), high)

    @motor.fields.tweak_motor_forward.putter
    async def _twf_put(fields, instance, value):
        if value:
            await fields.parent.group.tweak(+1)
        return 0

    @motor.fields.tweak_motor_reverse.putter
    async def _twr_put(fields, instance, value):
        if value:
            await fields.parent.group.tweak(-1)
        return 0

    @motor.fields.home_forward.putter
    async def _homf_put(fields, instance, value):
        return 0  # absolute capacitive sensors: nothing to home

    @motor.fields.home_reverse.putter
    async def _homr_put(fields, instance, value):
        return 0

    @motor.fields.user_offset.putter
    async def _off_put(fields, instance, value):
        if float(value) != 0.0:
            raise _no_calibration(fields, "OFF")
        return 0.0

    @motor.fields.user_direction.putter
    async def _dir_put(fields, instance, value):
        if value != "Pos":
            raise _no_calibration(fields, "DIR")
        return value

    @motor.fields.set_use_switch.putter
    async def _set_put(fields, instance, value):
        if value != "Use":
            raise _no_calibration(fields, "SET")
        return value

    def request_stop(self) -> None:
        if not self.fields.done_moving_to_value.value:
            self._stop_requested = True

    async def tweak(self, sign: int) -> None:
        await self.motor.write(float(self.motor.value) + sign * self.fields.tweak_step_size.value)

    async def _publish(self, position: float, *, moving: bool, problem: bool = False) -> None:
        f = self.fields
        await _post(f.user_readback_value, position)
        await _post(f.dial_readback_value, position)
        await _post(f.raw_readback_value, round(position / RESOLUTION_UM))
        bits = MSTA_CLOSED_LOOP | MSTA_ENCODER | MSTA_HOMED
        bits |= MSTA_DIRECTION if f.direction_of_travel.value else 0
        bits |= MSTA_MOVING if moving else MSTA_DONE
        bits |= MSTA_PROBLEM if problem else 0
        await _post(f.motor_status, bits)

    async def _done(self, position: float, *, problem: bool = False) -> None:
        await self._publish(position, moving=False, problem=problem)
        await _post(self.fields.motor_is_moving, 0)
        await _post(self.fields.done_moving_to_value, 1)

    async def _refuse(self, previous: float) -> float:
        """End a put that moves nothing: DMOV goes 0 then 1, as the record does."""
        await _post(self.fields.done_moving_to_value, 0)
        await self._done(self.position)
        return previous

    async def _move(self, target: float, *, previous: float) -> float:
        """Move to ``target`` at ``.VELO``; return the final ``.VAL``."""
        f = self.fields
        status = self.parent.status
        low, high = f.user_low_limit.value, f.user_high_limit.value
        if not math.isfinite(target) or (low != high and not low <= target <= high):
            await _post(f.limit_violation, 1)
            return await self._refuse(previous)
        await _post(f.limit_violation, 0)
        if f.stop_pause_move_go.value in ("Stop", "Pause"):
            return await self._refuse(self.position)
        if f.enable_control.value != "Enable":
            await raise_alarm(status, f"{self.axis}: servo off (CNEN 0), move refused")
            return await self._refuse(self.position)
        self._generation += 1
        generation = self._generation
        self._stop_requested = False
        start = self.position
        span = target - start
        duration = abs(span) / max(float(f.velocity.value), RESOLUTION_UM)
        await clear_alarm(f.user_readback_value)
        await clear_alarm(status)
        await status.write(f"moving {self.axis} to {target:.4f} um")
        await self.motor.write(target, verify_value=False)  # VAL shows the target at once
        await f.dial_desired_value.write(target)
        await _post(f.direction_of_travel, int(span >= 0))
        await _post(f.done_moving_to_value, 0)
        await _post(f.motor_is_moving, 1)
        t0 = time.monotonic()
        position, problem = start, False
        try:
            while True:
                if generation != self._generation:
                    raise SkipWrite  # a newer target took over; VAL is the new one's
                if self._stop_requested:
                    await status.write(f"{self.axis} stopped at {position:.4f} um")
                    return position  # the record's VAL becomes where it stopped
                fraction = 1.0 if duration == 0 else min(1.0, (time.monotonic() - t0) / duration)
                position = start + span * fraction
                where = list(self.backend.position_um)
                where[self.index] = position
                try:
                    self.backend.move_to(*where)
                except BACKEND_FAULTS as exc:
                    problem = True
                    position = self.position
                    await _post(
                        f.user_readback_value,
                        position,
                        status=AlarmStatus.STATE,
                        severity=AlarmSeverity.MAJOR_ALARM,
                    )
                    await raise_alarm(status, f"fault: moving {self.axis} failed: {exc}")
                    return position
                if fraction >= 1.0:
                    return target
                await self._publish(position, moving=True)
                await asyncio.sleep(min(TICK_S, duration * (1.0 - fraction)))
        finally:
            if generation == self._generation:
                if f.stop_pause_move_go.value == "Move":
                    await f.stop_pause_move_go.write("Pause")  # Move is a single move
                await self._done(position if problem else self.position, problem=problem)
                if not problem and status.alarm.severity == AlarmSeverity.NO_ALARM:
                    await status.write("idle")


async def _post(field, value, **alarm) -> None:
    """Write a field the record computes; without caproto's value check, which would reset
    the record's alarm (shared by its fields) at every write."""
    await field.write(value, verify_value=False, **alarm)


def _no_calibration(fields, name: str) -> RefusedError:
    group = fields.parent.group
    return RefusedError(
        f"{group.axis}.{name}: the simulated stage keeps user = dial coordinates "
        "(OFF 0, DIR Pos, SET Use)",
        source=group.prefix,
    )


class StageIOC(PVGroup):
    """A closed-loop three-axis piezo stage (``{P}stage:``): three EPICS motor records.

    Positions are in the sample's frame (um); the ``backend``
    (:class:`~qd_bluesky.iocs.StageBackend`) moves the stage. The simulated stage starts parked
    on a charging dot of the shared sample.

    PVs
    ---
    x, y, z
        Motor records (``.VAL``, ``.RBV``, ``.DMOV``, ``.MOVN``, ``.VELO``, ``.HLM``,
        ``.LLM``, ``.LVIO``, ``.STOP``, ``.SPMG``, ``.CNEN``, ``.MSTA``, ``.TWV``/``.TWF``/
        ``.TWR`` and every other field of the record). A put to ``.VAL`` moves the axis at
        ``.VELO`` and completes on arrival; a target outside ``.LLM``..``.HLM``
        (-100..100 um) sets ``.LVIO`` and moves nothing; ``.STOP`` 1 or ``.SPMG`` Stop/Pause
        stop the axis where it is; ``.CNEN`` Disable refuses moves.
    status
        State (long string). A fault of the controller stops the move with a MAJOR alarm on
        the record (``.RBV``) and is written here with a MAJOR alarm; the next move clears it.
    """

    def __init__(self, *args, backend: StageBackend, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    x = SubGroup(MotorAxis, prefix="x", index=0)
    y = SubGroup(MotorAxis, prefix="y", index=1)
    z = SubGroup(MotorAxis, prefix="z", index=2)
    status = status_pv("idle")
