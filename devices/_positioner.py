"""A put-completion positioner that never hangs: finite timeouts, fast failure on a lost IOC."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from ophyd import Component, EpicsSignal, EpicsSignalRO, PVPositionerPC, Signal
from ophyd.positioner import PositionerBase
from ophyd.status import MoveStatus, StatusBase
from ophyd.utils.epics_pvs import AlarmSeverity, AlarmStatus

from ._errors import IocLostError, RefusedByAlarmError, StoppedError
from ._status import (
    bounded_timeout,
    fail_on_disconnect,
    fail_status,
    follow,
    lost_on_timeout,
)

#: Longest wait for the last readback monitor after a put completion (s).
READBACK_SYNC_S = 1.0
#: Budget of the fresh read of a record's alarm after a put completion (s).
ALARM_READ_S = 2.0


def record_alarm(signal: Signal) -> tuple[int, int, Any]:
    """(SEVR, STAT, value) of the record behind ``signal``, read fresh from the IOC."""
    # ophyd's public get() drops the alarm fields; the PV's own read keeps them.
    pv = getattr(signal, "_write_pv", None) or signal._read_pv  # pyright: ignore
    info = pv.get_with_metadata(form="time", timeout=ALARM_READ_S, use_monitor=False)
    if info is None:
        raise TimeoutError(f"no answer from {getattr(signal, 'pvname', signal.name)}")
    return int(info.get("severity", 0)), int(info.get("status", 0)), info.get("value")


def alarm_refusal(name: str, request: str, signals: Iterable[Signal]) -> BaseException | None:
    """The error if a put of ``request`` completed with a MAJOR/INVALID alarm on ``signals``.

    An EPICS-base record that refuses a value keeps its old value, raises an alarm (e.g.
    SEVR=INVALID STAT=WRITE) and still completes the put callback. A MINOR alarm is a
    warning, not a refusal. A failed read returns None: a lost IOC is reported by the
    operation itself.
    """
    for signal in signals:
        try:
            severity, status, value = record_alarm(signal)
        except Exception:  # noqa: BLE001 - see above
            return None
        if severity >= AlarmSeverity.MAJOR:
            sevr = _name(AlarmSeverity, severity)
            stat = _name(AlarmStatus, status)
            if hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 1:
                value = value[0]
            return RefusedByAlarmError(
                f"{name}: the IOC refused {request}: {getattr(signal, 'pvname', signal.name)} "
                "completed the put "
                f"with a {sevr} alarm (STAT {stat}), its value is {value!r}"
            )
    return None


def checked_move(positioner: Any, position: Any, timeout: float | None) -> tuple[float, float]:
    """The position and a finite timeout of a move, after the checks that put nothing.

    :meth:`check_value` (a clear error for a bad or out-of-range position) and
    :meth:`pre_move_checks`; ``timeout=None`` becomes a bound from :meth:`expected_move_time`.
    A check that cannot reach the IOC fails as a lost IOC.
    """
    with lost_on_timeout(lambda: positioner.lost(f"the request to move to {position}")):
        positioner.check_value(position)
        position = float(position)
        positioner.pre_move_checks(position)
        if timeout is None:
            timeout = bounded_timeout(positioner.expected_move_time(position))
    return position, timeout


def _same(value: Any, target: float) -> bool:
    try:
        return math.isclose(float(value), float(target), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _name(enum_type, code: int) -> str:
    try:
        return enum_type(code).name
    except ValueError:
        return str(code)


class GuardedPositioner(PVPositionerPC):
    """:class:`ophyd.PVPositionerPC` whose moves always end in bounded time.

    - the default timeout of a move comes from its expected duration
      (:meth:`expected_move_time`), never ``None``;
    - a move fails with :class:`IocLostError` as soon as the IOC's circuit drops (a dead IOC
      never sends the put completion);
    - a move asked of an IOC that is not connected fails before anything is put.

    The readback carries the device's own name, so its data key is e.g. ``pot`` or
    ``stage_x`` (like ``EpicsMotor``).
    """

    #: What the device is, for messages ("potentiostat", "stage").
    what = "positioner"
    # Subclasses give both as components (PVPositioner declares them None).
    setpoint: Component[EpicsSignal]
    readback: Component[EpicsSignalRO]

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.readback.name = self.name
        self._pending: StatusBase | None = None
        self._pending_target: float | None = None

    def expected_move_time(self, position: float) -> float:
        """Seconds the IOC should need to reach ``position`` (subclasses know their speed)."""
        return 0.0

    def lost(self, during: str) -> IocLostError:
        """The one-line error for this IOC lost during ``during`` (with the last readback)."""
        last = self.position
        last = f"{float(last):.6g} {self.egu}" if last is not None else "unknown"
        return IocLostError(
            f"{self.name}: the {self.what} IOC ({self.prefix}) was lost during {during}; "
            f"last readback {last}"
        )

    def alarm_signals(self) -> tuple[Signal, ...]:
        """Signals whose record alarm at a put completion means the IOC refused the move."""
        return (self.setpoint,)

    def _done_moving(self, success: bool = True, **kwargs: Any) -> None:
        pending = self._pending
        if success:
            final = self._sync_readback()
            target = self._pending_target
            # A move that arrived needs no second look; one that did not may have been
            # refused the EPICS-base way (alarm, old value, completed put callback).
            arrived = final is not None and target is not None and _same(final, target)
            if isinstance(pending, MoveStatus) and not pending.done and not arrived:
                request = f"the move to {target:g} {self.egu}".strip()
                refusal = alarm_refusal(self.name, request, self.alarm_signals())
                if refusal is not None:
                    self.fail_move(pending, refusal)
                    success = False
        super()._done_moving(success=success, **kwargs)

    def _sync_readback(self, timeout: float = READBACK_SYNC_S) -> Any:
        """Wait until the cached readback holds the final value before the move finishes;
        return that value (None if it cannot be read).

        CA may deliver the put completion before the last readback monitor, and ``read()``
        right after ``bps.mv`` must see where the device ended, not where it was a tick ago.
        """
        try:
            final = self.readback.get(use_monitor=False)
            deadline = time.monotonic() + timeout
            # The cached readback first, then `position` (set by a callback of the readback).
            while (self.readback.get() != final or self.position != final) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.002)
        except Exception:  # noqa: BLE001 - a lost IOC is reported by the move itself
            return None
        return final

    def fail_move(self, status: StatusBase, exc: BaseException) -> None:
        """End the pending move ``status`` with ``exc``.

        The move's one-shot "done" subscription is dropped first: otherwise the stop() that
        ophyd runs on a failed move would try to finish the status a second time.
        """
        if status.done:
            return
        self._reset_sub(self._SUB_REQ_DONE)
        fail_status(status, exc)

    def stop(self, *, success: bool = False) -> None:
        # A stop request to a dead IOC would wait for the connection timeout.
        if self.stop_signal is not None and self.stop_signal.connected:
            self.stop_signal.put(self.stop_value, wait=False)
        pending = self._pending
        if not success and isinstance(pending, MoveStatus) and not pending.done:
            last = self.position
            self.fail_move(
                pending,
                StoppedError(
                    f"{self.name}: the move to {self._pending_target:g} {self.egu} was stopped"
                    + (f" at {float(last):.6g} {self.egu}" if last is not None else "")
                ),
            )
        PositionerBase.stop(self, success=success)

    def _require_connection(self) -> None:
        missing = [s.pvname for s in (self.setpoint, self.readback) if not s.connected]
        if missing:
            raise IocLostError(
                f"{self.name}: the {self.what} IOC ({self.prefix}) is not connected "
                f"(no answer from {', '.join(missing)}); nothing was sent"
            )

    def move(
        self, position: float, wait: bool = True, timeout: float | None = None, moved_cb=None
    ) -> MoveStatus:
        """Move to ``position``; the status finishes at the IOC's put completion.

        Checks come first and put nothing: :meth:`check_value` (a clear error for a bad or
        out-of-range position) and :meth:`pre_move_checks`. ``timeout=None`` means a finite
        timeout from :meth:`expected_move_time`.
        """
        position, timeout = checked_move(self, position, timeout)
        # What PVPositioner.move does, with the pending move registered *before* the put, so
        # that a refusal or a lost IOC can fail it however fast it comes.
        status = PositionerBase.move(self, position, timeout=timeout, moved_cb=moved_cb)
        self._move_changed(value=self.done_value)
        self._move_changed(value=1 - self.done_value)
        self.register_pending(status, position)
        fail_on_disconnect(
            status,
            (self.setpoint, self.readback),
            lambda: self.lost(f"the move to {position:g} {self.egu}"),
            fail=self.fail_move,
        )
        if not status.done:
            try:
                self._setup_move(position)
            except IocLostError as exc:
                self.fail_move(status, exc)
                raise
            except KeyboardInterrupt:
                self.stop()
                raise
        if wait:
            status.wait()
        return status

    def pre_move_checks(self, position: float) -> None:
        """Raise before any put if the move cannot be done (default: IOC connected)."""
        self._require_connection()

    def register_pending(self, status: StatusBase, position: float) -> None:
        """Remember the move in progress (subclasses watch the IOC's refusals for it)."""
        self._pending, self._pending_target = status, position

    def follow_operation(
        self,
        status: StatusBase,
        put: Callable[[], StatusBase],
        *,
        during: str,
        target: float,
        watch: Iterable[Signal] = (),
        verify: Callable[[], BaseException | None] | None = None,
        alarm_of: Iterable[Signal] = (),
    ) -> StatusBase:
        """Tie ``status`` to an operation this IOC runs by put completion (e.g. a CV scan).

        The status fails with :class:`IocLostError` as soon as the circuit of the readback
        or of a ``watch`` signal drops, with the IOC's refusal (see :meth:`register_pending`),
        or with a timeout naming ``during``; it finishes at the put completion once the
        readback holds its final value and ``verify`` (if given) returns no error.

        Parameters
        ----------
        status
            The operation's status, owned by the caller.
        put
            Sends the request; called once, after the watches are in place.
        during
            What the operation is, for messages ("the CV scan (2 cycle(s))").
        target
            Where the operation leaves the positioner.
        watch
            Further signals whose disconnection means the IOC is gone.
        verify
            Called at the put completion; an error it returns fails the status.
        alarm_of
            Signals whose MAJOR/INVALID record alarm at the put completion fails the status
            (the refusal of an EPICS-base record, see :func:`alarm_refusal`).

        Returns
        -------
        StatusBase
            ``status``.
        """
        fail_on_disconnect(status, (*watch, self.readback), lambda: self.lost(during))
        if status.done:  # the IOC is already gone
            return status
        self.register_pending(status, target)
        alarm_of = tuple(alarm_of)

        def check() -> BaseException | None:
            refusal = alarm_refusal(self.name, during, alarm_of)
            if refusal is None and verify is not None:
                return verify()
            return refusal

        follow(
            status,
            put(),
            lambda exc: self._translate(exc, during),
            before=self._sync_readback,
            verify=check,
        )
        return status

    def _translate(self, exc: BaseException, during: str) -> BaseException:
        if isinstance(exc, TimeoutError):
            return TimeoutError(f"{self.name}: {during} did not finish in time ({exc})")
        return exc

    def _setup_move(self, position: float) -> None:
        try:
            super()._setup_move(position)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            # ophyd/caproto raise these when the circuit is gone between check and put.
            raise self.lost(f"the request to move to {position:g} {self.egu}") from exc
