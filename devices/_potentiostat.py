"""The potentiostat: a bias positioner with a safe window, and its cyclic-voltammetry waveform."""

from __future__ import annotations

import math
import threading
from typing import Any, cast

from ophyd import Component as Cpt
from ophyd import Device, Kind
from ophyd.status import MoveStatus, StatusBase

from ._errors import InstrumentBusyError, StoppedError, UnsafeBiasError
from ._positioner import GuardedPositioner
from ._signals import enum, operation, ro, rw, text
from ._status import ProgressStatus, bounded_timeout, fail_status, lost_on_timeout

#: Client-side safe window (V): below -2 V the ITO working electrode degrades.
DEFAULT_SAFE_WINDOW_V = (-2.0, 1.0)


def _run_on_ioc(
    op: Any, *, duration_s: float, start_v: float, mode: str, during: str, target: float
) -> ProgressStatus:
    """Start an operation the IOC runs by put completion (``op.run``), reporting
    ``op.progress``; the status allows the approach to ``start_v`` and the operation."""
    pot = op.potentiostat
    approach = abs(start_v - (pot.position or 0.0)) / max(pot.slew_rate.get(), 1e-9)
    status = ProgressStatus(
        op,
        progress=op.progress,
        duration_s=duration_s,
        timeout=bounded_timeout(duration_s + approach + 1.0),
    )
    if pot.mode.get(use_monitor=False) != mode:
        pot.mode.set(mode).wait(timeout=pot.mode.write_timeout)
    pot.follow_operation(
        status,
        lambda: op.run.set(1, timeout=None),
        during=during,
        target=target,
        watch=(op.run, op.progress),
        verify=op._check_finished,
        alarm_of=(op.run,),  # a run record refusing through its alarm (an EPICS-base IOC)
    )
    return status


def _finished(op: Any, what: str) -> BaseException | None:
    """None when ``op`` ran to its end (progress 1), else why not."""
    try:
        progress = op.progress.get(use_monitor=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read ends the operation's status
        return op.potentiostat.lost(f"the end of {what} ({exc})")
    if progress < 1.0:
        return StoppedError(
            f"{op.name}: {what} stopped at {100 * progress:.0f} % "
            f"({op.potentiostat.status.get(use_monitor=False)})"
        )
    return None


class CyclicVoltammetry(Device):
    """The cyclic-voltammetry waveform, run by the IOC (``{P}pot:cv_*``).

    Set ``start``, ``vertex``, ``end`` (V), ``rate`` (V/s) and ``cycles``, then
    ``trigger()`` (``bps.trigger(pot.cv, wait=True)``): the returned status finishes when the
    IOC has run the whole waveform and reports its progress to watchers, so bluesky's progress
    bars follow the scan. The biases are checked against the potentiostat's safe window before
    anything is put.
    """

    start = rw("start", kind=Kind.config)
    vertex = rw("vertex", kind=Kind.config)
    end = rw("end", kind=Kind.config)
    rate = rw("rate", kind=Kind.config)
    cycles = rw("cycles", kind=Kind.config)
    run = operation("run", kind=Kind.omitted, put_complete=True)
    running = ro("running", kind=Kind.omitted)
    progress = ro("progress", kind=Kind.omitted)
    elapsed = ro("elapsed", kind=Kind.omitted)
    duration = ro("duration", kind=Kind.omitted)
    cycle = ro("cycle", kind=Kind.omitted)

    def waveform_duration(self) -> float:
        """Seconds the configured waveform takes (cycles x both sweeps), from the setpoints."""
        start, vertex, end = self.start.get(), self.vertex.get(), self.end.get()
        return self.cycles.get() * (abs(vertex - start) + abs(end - vertex)) / self.rate.get()

    @property
    def potentiostat(self) -> Potentiostat:
        """The potentiostat that runs this waveform."""
        return cast("Potentiostat", self.parent)

    def trigger(self) -> ProgressStatus:
        """Run the waveform; the status finishes when the IOC is done (put completion)."""
        pot = self.potentiostat
        with lost_on_timeout(lambda: pot.lost("the request to run a CV scan")):
            return self._trigger(pot)

    def _trigger(self, pot: Potentiostat) -> ProgressStatus:
        start, vertex, end = self.start.get(), self.vertex.get(), self.end.get()
        for what, value in (("CV start", start), ("CV vertex", vertex), ("CV end", end)):
            pot.check_value(value, what=what)
        if not self.rate.get() > 0:
            raise ValueError(f"{self.name}: the sweep rate must be > 0 V/s, not {self.rate.get()}")
        if int(self.cycles.get()) < 1:
            raise ValueError(f"{self.name}: cycles must be >= 1, not {self.cycles.get()}")
        pot.require_ready()
        return _run_on_ioc(
            self,
            duration_s=self.waveform_duration(),
            start_v=start,
            mode="CV",
            during=f"the CV scan ({self.cycles.get()} cycle(s))",
            target=end,
        )

    def _check_finished(self) -> BaseException | None:
        # The IOC completes the put of an aborted scan too: only a full one is a success.
        return _finished(self, "the CV scan")

    def stop(self, *, success: bool = False) -> None:
        self.potentiostat.stop(success=success)


class Switching(Device):
    """The square-wave switching mode, run by the IOC (``{P}pot:sw_*``).

    Set ``low``, ``high`` (V), ``period`` (s) and ``cycles``, then ``trigger()``: the bias
    steps to ``high`` and back to ``low`` every period, played by the instrument itself (with a
    trigger edge at every step, for the TCSPC card's marker input); the status finishes when
    the wave is over.
    """

    low = rw("low", kind=Kind.config)
    high = rw("high", kind=Kind.config)
    period = rw("period", kind=Kind.config)
    cycles = rw("cycles", kind=Kind.config)
    run = operation("run", kind=Kind.omitted, put_complete=True)
    running = ro("running", kind=Kind.omitted)
    progress = ro("progress", kind=Kind.omitted)
    elapsed = ro("elapsed", kind=Kind.omitted)
    duration = ro("duration", kind=Kind.omitted)

    @property
    def potentiostat(self) -> Potentiostat:
        return cast("Potentiostat", self.parent)

    def trigger(self) -> ProgressStatus:
        """Run the square wave; the status finishes when the IOC is done (put completion)."""
        pot = self.potentiostat
        with lost_on_timeout(lambda: pot.lost("the request to run the square wave")):
            low, high = self.low.get(), self.high.get()
            for what, value in (("switching low", low), ("switching high", high)):
                pot.check_value(value, what=what)
            pot.require_ready()
            return _run_on_ioc(
                self,
                duration_s=float(self.period.get()) * int(self.cycles.get()),
                start_v=low,
                mode="static",
                during=f"the square wave ({self.cycles.get()} cycle(s))",
                target=low,
            )

    def _check_finished(self) -> BaseException | None:
        return _finished(self, "the square wave")

    def stop(self, *, success: bool = False) -> None:
        self.potentiostat.stop(success=success)


class Potentiostat(GuardedPositioner):
    """A potentiostat as a positioner on the bias (V vs ``reference``, by default the Pt
    quasi-reference).

    ``bps.mv(pot, -1.4)`` returns once the IOC reports the bias settled (put completion);
    its status reports progress to watchers. A bias outside the safe window raises
    :class:`UnsafeBiasError` before anything is put; the window is the intersection of the
    IOC's ``bias_low_limit`` / ``bias_high_limit`` and the client-side ``safe_window``.

    Parameters
    ----------
    prefix
        PV prefix of the potentiostat, e.g. ``"qd:pot:"``.
    name
        Device name (the data key of the bias readback).
    safe_window
        Client-side (low, high) window in V, default (-2.0, +1.0).

    The instrument's settings are configuration signals: ``current_range`` (ENUM of the
    instrument's ranges) and ``autorange``, ``compliance`` (V), ``ir_comp`` and
    ``ir_comp_resistance`` (ohm), ``reference`` (name) and ``reference_offset`` (V),
    ``trigger_output`` (pulses at bias steps and CV vertices, counted by ``trigger_count``).
    A put to a setting the instrument lacks fails with the IOC's reason in ``status``.
    """

    what = "potentiostat"

    setpoint = operation("bias", kind=Kind.normal)
    readback = ro("bias_rbv", kind=Kind.hinted)
    stop_signal = rw("abort", kind=Kind.omitted)
    current = ro("current", kind=Kind.normal)
    mode = enum("mode", kind=Kind.config)
    cell_on = enum("cell_on", kind=Kind.config)
    slew_rate = rw("slew_rate", kind=Kind.config)
    # The IOC's settle time shadows PositionerBase's (unused here: the IOC settles).
    settle_time = rw("settle_time", kind=Kind.config)  # pyright: ignore[reportAssignmentType]
    bias_low_limit = rw("bias_low_limit", kind=Kind.config)
    bias_high_limit = rw("bias_high_limit", kind=Kind.config)
    busy = ro("busy", kind=Kind.omitted)
    status = text("status", kind=Kind.omitted)
    limit_violation = ro("limit_violation", kind=Kind.omitted)
    current_range = enum("current_range", kind=Kind.config)
    autorange = enum("autorange", kind=Kind.config)
    compliance = rw("compliance", kind=Kind.config)
    ir_comp = enum("ir_comp", kind=Kind.config)
    ir_comp_resistance = rw("ir_comp_resistance", kind=Kind.config)
    reference = text("reference", kind=Kind.config, write=True)
    reference_offset = rw("reference_offset", kind=Kind.config)
    trigger_output = enum("trigger_output", kind=Kind.config)
    trigger_count = ro("trigger_count", kind=Kind.omitted)
    cv = Cpt(CyclicVoltammetry, "cv_", kind=Kind.config)
    switching = Cpt(Switching, "sw_", kind=Kind.config)

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        safe_window: tuple[float, float] = DEFAULT_SAFE_WINDOW_V,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("egu", "V")
        super().__init__(prefix, name=name, **kwargs)
        low, high = (float(v) for v in safe_window)
        if not low < high:
            raise ValueError(f"{name}: safe_window must be (low, high) with low < high")
        self._client_window = (low, high)
        self._armed = False
        self._pending_lock = threading.Lock()
        self.limit_violation.subscribe(self._on_limit_violation, run=False)

    # -- the safe window ------------------------------------------------------------------

    @property
    def limits(self) -> tuple[float, float]:
        """The safe window (V): the IOC's limits, narrowed by the client-side window."""
        if self.bias_low_limit.connected and self.bias_high_limit.connected:
            return self.window((self.bias_low_limit.get(), self.bias_high_limit.get()))
        return self.window()

    def window(self, ioc_limits: tuple[float, float] | None = None) -> tuple[float, float]:
        """The client-side safe window (V), narrowed by the IOC's ``(low, high)`` if given.

        Reads nothing: plans read the IOC's limits with ``bps.rd`` and pass them here.
        """
        low, high = self._client_window
        if ioc_limits is not None:
            low, high = max(low, float(ioc_limits[0])), min(high, float(ioc_limits[1]))
        return (low, high)

    def check_value(
        self, value: float, *, what: str = "bias", limits: tuple[float, float] | None = None
    ) -> None:
        """Raise :class:`UnsafeBiasError` if ``value`` is outside the safe window.

        ``limits``: the window to check against (default :attr:`limits`, read from the IOC).
        """
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UnsafeBiasError(f"{self.name}: {what} must be a number, not {value!r}") from None
        low, high = self.limits if limits is None else limits
        if not (math.isfinite(value) and low <= value <= high):
            raise UnsafeBiasError(
                f"{self.name}: {what} {value:+.3f} V is outside the safe window "
                f"[{low:+.3f}, {high:+.3f}] V; nothing was sent to the potentiostat"
            )

    def require_ready(self) -> None:
        """Raise if the cell is off or a ramp/CV runs (checked before any put)."""
        self._require_connection()
        # Fresh values: a monitor still in flight must not decide (the IOC would refuse).
        if self.cell_on.get(use_monitor=False) != "on":
            raise InstrumentBusyError(f"{self.name}: the cell is off (cell_on = off)")
        if self.busy.get(use_monitor=False):
            raise InstrumentBusyError(
                f"{self.name}: a ramp or CV scan is in progress ({self.status.get()}); "
                "stop it first (pot.stop())"
            )

    # -- moves ----------------------------------------------------------------------------

    def expected_move_time(self, position: float) -> float:
        return (
            abs(position - (self.position or 0.0)) / max(self.slew_rate.get(), 1e-9)
            + self.settle_time.get()  # pyright: ignore[reportAttributeAccessIssue]
        )

    def pre_move_checks(self, position: float) -> None:
        self.require_ready()

    def register_pending(self, status: StatusBase, position: float) -> None:
        """Watch the IOC's refusals for ``status`` (a move or a CV scan) from now on."""
        with self._pending_lock:
            # A refusal is a 0 -> 1 transition after the IOC received this request; a 1
            # still in flight from an earlier refusal must not fail it.
            self._armed = False
            self._pending = status
            if isinstance(status, MoveStatus):
                self._pending_target = position

    def _setup_move(self, position: float) -> None:
        if self.mode.get(use_monitor=False) != "static":
            self.mode.set("static").wait(timeout=self.mode.write_timeout)
        super()._setup_move(position)

    def _on_limit_violation(self, *, value: int, **kwargs: Any) -> None:
        # The IOC refused a put (e.g. its window was narrowed meanwhile): fail the move now
        # instead of at its timeout, with the IOC's reason.
        with self._pending_lock:
            if not value:
                self._armed = True
                return
            if not self._armed:
                return
            pending = self._pending
        if pending is not None and not pending.done:
            error = UnsafeBiasError(f"{self.name}: the potentiostat refused: {self.status.get()}")
            if isinstance(pending, MoveStatus):
                self.fail_move(pending, error)
            else:
                fail_status(pending, error)
