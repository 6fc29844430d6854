"""A put-completion positioner that never hangs: finite timeouts, fast failure on a lost IOC."""

from __future__ import annotations

import math
import time
from typing import Any

from ophyd import PVPositionerPC
from ophyd.positioner import PositionerBase
from ophyd.status import MoveStatus

from ._errors import IocLostError
from ._status import bounded_timeout, fail_on_disconnect, fail_status


#: Longest wait for the last readback monitor after a put completion (s).
READBACK_SYNC_S = 1.0


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

    #: What the device is, for messages ("potentiostat", "stage axis").
    what = "positioner"

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.readback.name = self.name

    def expected_move_time(self, position: float) -> float:
        """Seconds the IOC should need to reach ``position`` (subclasses know their speed)."""
        return 0.0

    def _lost(self, during: str) -> IocLostError:
        last = self.position
        last = f"{float(last):.6g} {self.egu}" if last is not None else "unknown"
        return IocLostError(
            f"{self.name}: the {self.what} IOC ({self.prefix}) was lost during {during}; "
            f"last readback {last}"
        )

    def _done_moving(self, success: bool = True, **kwargs: Any) -> None:
        if success:
            self._sync_readback()
        super()._done_moving(success=success, **kwargs)

    def _sync_readback(self, timeout: float = READBACK_SYNC_S) -> None:
        """Wait until the cached readback holds the final value before the move finishes.

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
            return

    def fail_move(self, status: MoveStatus, exc: BaseException) -> None:
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
        try:
            position = float(position)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: position must be a number, not {position!r}") from None
        if not math.isfinite(position):
            raise ValueError(f"{self.name}: position must be finite, not {position}")
        self.check_value(position)  # before any put (PositionerBase.move checks it again)
        self._require_connection()
        if timeout is None:
            timeout = bounded_timeout(self.expected_move_time(position))
        status = super().move(position, wait=False, timeout=timeout, moved_cb=moved_cb)
        fail_on_disconnect(
            status,
            (self.setpoint, self.readback),
            lambda: self._lost(f"the move to {position:g} {self.egu}"),
            fail=self.fail_move,
        )
        if wait:
            status.wait()
        return status

    def _setup_move(self, position: float) -> None:
        try:
            super()._setup_move(position)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            # ophyd/caproto raise these when the circuit is gone between check and put.
            raise self._lost(f"the request to move to {position:g} {self.egu}") from exc
