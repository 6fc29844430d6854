"""The three-axis piezo stage: three EPICS motor records, each an ophyd ``EpicsMotor``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ophyd import Device, EpicsMotor, Kind
from ophyd import FormattedComponent as FCpt
from ophyd.positioner import PositionerBase
from ophyd.status import MoveStatus, StatusBase
from ophyd.utils import LimitError
from ophyd.utils.epics_pvs import AlarmSeverity, AlarmStatus

from ._errors import InstrumentError, IocLostError, StoppedError
from ._positioner import checked_move
from ._signals import ro, rw
from ._status import fail_on_disconnect, fail_status

#: Where the axes of ``PiezoStage(prefix)`` are unless a lab names its own motor records.
DEFAULT_AXES = ("x", "y", "z")


class PiezoAxis(EpicsMotor):
    """One stage axis: an EPICS motor record (``{P}stage:x``, or a lab's own, e.g. ``IOC:m1``).

    ophyd's :class:`~ophyd.EpicsMotor` (its components, data keys and ``DMOV`` handling), with
    the guarantees of the qd devices:

    - a position outside the soft limits (``.HLM``/``.LLM``, served as the control limits of
      ``.VAL``) raises ``LimitError`` before anything is put; so does a servo that is off
      (``.CNEN``) or a record not in ``Go``/``Move`` (``.SPMG``), as :class:`InstrumentError`;
    - a move has a finite timeout from its distance and ``.VELO``, and fails with
      :class:`IocLostError` as soon as the IOC's circuit drops (``EpicsMotor`` would wait for
      ``.DMOV`` forever);
    - a move that ends short of its target (``.STOP``, ``.SPMG`` or ``stop()``) fails with
      :class:`StoppedError`; one that ends in a record alarm or on a limit switch fails with a
      line naming it.
    """

    what = "stage"

    servo = rw(".CNEN", kind=Kind.omitted, string=True, auto_monitor=True)
    stop_pause_move_go = rw(".SPMG", kind=Kind.omitted, string=True, auto_monitor=True)
    limit_violation = ro(".LVIO", kind=Kind.omitted, auto_monitor=True)
    retry_deadband = ro(".RDBD", kind=Kind.omitted, auto_monitor=True)

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self._pending: StatusBase | None = None
        self._pending_target: float | None = None
        self._units = "um"  # the stage's unit until the record's .EGU says otherwise
        self.motor_egu.subscribe(self._units_changed, run=False)

    def _units_changed(self, *, value: Any, **kwargs: Any) -> None:
        self._units = str(value or "") or self._units

    def _at(self, value: float | None) -> str:
        """``value`` with the record's units, for messages."""
        return "unknown" if value is None else f"{float(value):.6g} {self._units}".rstrip()

    @property
    def position(self) -> float | None:
        """The last readback (kept when the IOC is lost, for the messages of a failed move)."""
        return self._position

    def check_value(self, value: Any) -> None:
        """Raise ``LimitError`` (a ValueError) outside the soft limits, before any put."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: position must be a number, not {value!r}") from None
        low, high = self.user_setpoint.limits  # .LLM, .HLM (0, 0: no limits)
        if not math.isfinite(value) or (low != high and not low <= value <= high):
            units = f" {self._units}" if self._units else ""
            raise LimitError(
                f"{self.name}: {value:g}{units} is outside the soft limits "
                f"[{low:g}, {high:g}]{units}; nothing was sent to the stage"
            )

    def lost(self, during: str) -> IocLostError:
        """The one-line error for this IOC lost during ``during`` (with the last readback)."""
        return IocLostError(
            f"{self.name}: the {self.what} IOC ({self.prefix}) was lost during {during}; "
            f"last readback {self._at(self._position)}"
        )

    def expected_move_time(self, position: float) -> float:
        """Seconds the record should need to reach ``position`` at ``.VELO``."""
        distance = abs(position - (self._position or 0.0))
        return distance / max(float(self.velocity.get()), 1e-9) + float(self.acceleration.get())

    def pre_move_checks(self, position: float) -> None:
        """Raise before any put if the record cannot move: not connected, servo off, paused."""
        signals = (self.user_setpoint, self.user_readback, self.motor_done_move)
        missing = [s.pvname for s in signals if not s.connected]
        if missing:
            raise IocLostError(
                f"{self.name}: the {self.what} IOC ({self.prefix}) is not connected "
                f"(no answer from {', '.join(missing)}); nothing was sent"
            )
        if self.servo.get() != "Enable":
            raise InstrumentError(
                f"{self.name}: the servo is off ({self.prefix}.CNEN Disable); nothing was sent"
            )
        mode = self.stop_pause_move_go.get()
        if mode not in ("Go", "Move"):
            raise InstrumentError(
                f"{self.name}: the motor record is in {mode} mode ({self.prefix}.SPMG); put Go "
                "to move; nothing was sent"
            )

    def move(
        self, position: float, wait: bool = True, timeout: float | None = None, moved_cb=None
    ) -> MoveStatus:
        """Move to ``position``; the status finishes when ``.DMOV`` returns to 1 there.

        Checks come first and put nothing (:meth:`check_value`, :meth:`pre_move_checks`).
        ``timeout=None`` means a finite timeout from :meth:`expected_move_time`.
        """
        position, timeout = checked_move(self, position, timeout)
        during = f"the move to {self._at(position)}"
        # What EpicsMotor.move does, with the move registered and watched before the put.
        self._started_moving = False
        status = PositionerBase.move(self, position, timeout=timeout, moved_cb=moved_cb)
        self._pending, self._pending_target = status, position
        signals = (self.user_setpoint, self.user_readback, self.motor_done_move)
        fail_on_disconnect(status, signals, lambda: self.lost(during), fail=self.fail_move)
        if not status.done:
            try:
                self.user_setpoint.put(position, wait=False)
            except (TimeoutError, ConnectionError, RuntimeError) as exc:
                error = self.lost(f"the request to move to {self._at(position)}")
                self.fail_move(status, error)
                raise error from exc
        if wait:
            try:
                status.wait()
            except KeyboardInterrupt:
                self.stop()
                raise
        return status

    def fail_move(self, status: StatusBase, exc: BaseException) -> None:
        """End the pending move ``status`` with ``exc`` (once; ophyd's done-callback dropped)."""
        if status is self._pending:
            self._pending = self._pending_target = None
        if status.done:
            return
        self._reset_sub(self._SUB_REQ_DONE)
        fail_status(status, exc)

    def _done_moving(self, success: bool = True, **kwargs: Any) -> None:
        pending, target = self._pending, self._pending_target
        if pending is not None and not pending.done and target is not None:
            error = self._why_not_there(success, target)
            if error is not None:
                self.fail_move(pending, error)
        self._pending = self._pending_target = None
        super()._done_moving(success=success, **kwargs)

    def _why_not_there(self, success: bool, target: float) -> BaseException | None:
        """Why a move the record reports done did not reach ``target`` (None: it did)."""
        where = self._at(self._position)
        if not success:
            severity = self.user_readback.alarm_severity
            if severity:
                status = AlarmStatus(int(self.user_readback.alarm_status))
                alarm = f"{AlarmSeverity(int(severity)).name} {status.name} alarm"
                return InstrumentError(
                    f"{self.name}: the move to {self._at(target)} ended with a {alarm} on the "
                    f"motor record {self.prefix}, at {where}"
                )
            return InstrumentError(
                f"{self.name}: the move to {self._at(target)} ended on a limit switch at {where}"
            )
        deadband = abs(float(self.retry_deadband.get() or 0.0))
        tolerance = max(deadband, 10.0 ** -(self.precision or 6))
        if self._position is None or abs(self._position - target) > tolerance:
            return StoppedError(
                f"{self.name}: the move to {self._at(target)} was stopped at {where}"
            )
        return None

    def stop(self, *, success: bool = False) -> None:
        """Put ``.STOP`` (if the IOC is there) and end the move in progress."""
        if self.motor_stop.connected:
            try:
                self.motor_stop.put(1, wait=False)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass  # the circuit dropped meanwhile; the move fails as lost
        pending, target = self._pending, self._pending_target
        if not success and isinstance(pending, MoveStatus) and not pending.done:
            self.fail_move(
                pending,
                StoppedError(
                    f"{self.name}: the move to {self._at(target)} was stopped "
                    f"at {self._at(self._position)}"
                ),
            )
        PositionerBase.stop(self, success=success)


class PiezoStage(Device):
    """A three-axis stage of EPICS motor records, positions in um.

    ``stage.x``, ``stage.y``, ``stage.z`` are :class:`PiezoAxis` (``EpicsMotor``) positioners
    (``bps.mv(stage.x, 1.5)``); their velocity, acceleration and units are configuration.

    Parameters
    ----------
    prefix
        The axes are the motor records ``{prefix}x``, ``{prefix}y``, ``{prefix}z`` (the
        simulated stage serves ``qd:stage:x`` ...) unless ``motors`` names them.
    motors
        The three motor records (x, y, z) in full, e.g. ``("PI:m1", "PI:m2", "PI:m3")`` for a
        PI controller under motorPIGCS2.
    """

    x = FCpt(PiezoAxis, "{_motor_x}")
    y = FCpt(PiezoAxis, "{_motor_y}")
    z = FCpt(PiezoAxis, "{_motor_z}")

    def __init__(
        self, prefix: str = "", *, name: str, motors: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        self.motors = stage_motors(prefix, motors)
        self._motor_x, self._motor_y, self._motor_z = self.motors
        super().__init__(prefix, name=name, **kwargs)

    def stop(self, *, success: bool = False) -> None:
        """Stop every axis."""
        for axis in (self.x, self.y, self.z):
            axis.stop(success=success)


def stage_motors(prefix: str, motors: Sequence[str] | None = None) -> tuple[str, str, str]:
    """The three motor records (x, y, z) of a stage: ``motors`` checked, or ``{prefix}x`` ...

    Raises
    ------
    ValueError
        ``motors`` is not three non-empty record names.
    """
    if motors is None:
        return tuple(f"{prefix}{axis}" for axis in DEFAULT_AXES)  # type: ignore[return-value]
    if (
        isinstance(motors, str)
        or len(motors) != 3
        or not all(isinstance(m, str) and m.strip() for m in motors)
    ):
        raise ValueError(f"stage motors must be three motor record names (x, y, z), not {motors!r}")
    x, y, z = (m.strip().removesuffix(".VAL") for m in motors)
    return x, y, z
