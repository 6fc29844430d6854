"""The PV conformance suite: the device-level checks a lab runs against its own IOCs.

``qd-bluesky check-instrument --prefix P`` calls :func:`run_checks`. Each check gives one
:class:`CheckResult` (PASS, FAIL or SKIP with a one-line reason); every wait is finite. The
checks drive the IOCs through the same devices the plans use (``make_instrument``), and reach
past them only where the IOC itself must be tested (a raw put of an unsafe bias, which the
device would refuse before sending).

What is changed is put back: the bias, the stage position and velocity, the card's
``acquire_time``, the laser's interlock and emission.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from caproto import ChannelType, ErrorResponseReceived, native_type
from caproto.sync.client import write as ca_write
from caproto.threading.client import Context

from ._errors import UnsafeBiasError
from ._instrument import PARTS, Instrument, make_instrument
from ._pvs import DocumentedPv, documented_pvs

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
#: The IOCs in the order they are checked.
IOCS = ("pot", "tcspc", "laser", "stage")
#: Seconds one PV read or put may take.
PV_TIMEOUT_S = 3.0
#: Stage moves: the small step (um), how close counts as arrived (um), the stop test's length.
STEP_UM, ARRIVED_UM, STOP_MOVE_S = 1.0, 0.05, 2.0

_KINDS = {
    "DOUBLE": {ChannelType.DOUBLE, ChannelType.FLOAT},
    "LONG": {ChannelType.LONG, ChannelType.INT},
    "ENUM": {ChannelType.ENUM},
    "CHAR": {ChannelType.CHAR},
}


class CheckResult(NamedTuple):
    """The outcome of one check: ``PASS``, ``FAIL`` or ``SKIP`` and why."""

    check: str
    outcome: str
    reason: str = ""

    def line(self) -> str:
        return f"{self.outcome}  {self.check}" + (f": {self.reason}" if self.reason else "")


class _Failed(Exception):
    """A check failed; the message is the reason."""


class _Skipped(Exception):
    """A check does not apply; the message is the reason."""


def run_checks(
    prefix: str, *, timeout: float = 10.0, only: Sequence[str] | None = None
) -> Iterator[CheckResult]:
    """Run the conformance checks against the IOCs of ``prefix``, yielding each result.

    Parameters
    ----------
    prefix
        The instrument's PV prefix (the IOCs serve ``{prefix}pot:`` etc.).
    timeout
        Seconds each IOC may take to connect, and each action (a move, a file) to finish.
    only
        Check only these IOCs (``pot``, ``tcspc``, ``laser``, ``stage``); default all.

    Raises
    ------
    ValueError
        An unknown IOC name in ``only``, or a timeout <= 0.
    """
    wanted = tuple(only) if only else IOCS
    unknown = sorted(set(wanted) - set(IOCS))
    if unknown:
        raise ValueError(f"unknown IOC {unknown[0]!r}: choose from {', '.join(IOCS)}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 s, not {timeout}")
    inst = make_instrument(prefix)
    checks = _Checks(inst, timeout)
    try:
        for ioc in wanted:
            connected = checks.result(f"{ioc}: connect", lambda ioc=ioc: checks.connect(ioc))
            yield connected
            for name, check in checks.of(ioc):
                if connected.outcome != PASS:
                    yield CheckResult(f"{ioc}: {name}", SKIP, "not connected")
                else:
                    yield checks.result(f"{ioc}: {name}", check)
    finally:
        checks.close()
        for device in inst:
            device.destroy()


class _Checks:
    def __init__(self, inst: Instrument, timeout: float) -> None:
        self.inst, self.timeout = inst, timeout
        self._context: Context | None = None

    @staticmethod
    def result(name: str, check: Callable[[], str]) -> CheckResult:
        try:
            return CheckResult(name, PASS, check())
        except _Skipped as exc:
            return CheckResult(name, SKIP, str(exc))
        except _Failed as exc:
            return CheckResult(name, FAIL, str(exc))
        except Exception as exc:  # noqa: BLE001 - one line per check, never a traceback
            text = " ".join(str(exc).split()) or type(exc).__name__
            return CheckResult(name, FAIL, f"{type(exc).__name__}: {text}")

    def of(self, ioc: str) -> list[tuple[str, Callable[[], str]]]:
        pvs = ("documented PVs", lambda: self.read_pvs(ioc))
        return {
            "pot": [
                pvs,
                ("device refuses an unsafe bias", self.device_refuses_bias),
                ("IOC refuses an unsafe bias", self.ioc_refuses_bias),
            ],
            "tcspc": [pvs, ("short acquisition", self.acquisition)],
            "laser": [
                pvs,
                ("rep_rate off the list refused", self.rep_rate_refused),
                ("emission refused with the interlock open", self.emission_refused),
            ],
            "stage": [pvs, ("move and come back", self.move), ("stop a move", self.stop)],
        }[ioc]

    def pv(self, ioc: str, name: str) -> str:
        return f"{self.inst.prefix}{PARTS[ioc][0]}{name}"

    # -- every IOC ----------------------------------------------------------------------------

    def connect(self, ioc: str) -> str:
        device = getattr(self.inst, ioc)
        try:
            device.wait_for_connection(timeout=self.timeout)
        except TimeoutError:
            missing = [
                sig.pvname
                for sig in _signals(device)
                if not sig.connected and getattr(sig, "pvname", None)
            ]
            example = missing[0] if missing else f"{device.prefix}*"
            raise _Failed(
                f"{len(missing)} PV(s) did not connect in {self.timeout:g} s, e.g. {example}"
            ) from None
        return ""

    def read_pvs(self, ioc: str) -> str:
        rows = documented_pvs(ioc)
        pvs = self.context.get_pvs(*(self.pv(ioc, row.name) for row in rows))
        problems = [
            problem for row, pv in zip(rows, pvs, strict=True) if (problem := _check(row, pv))
        ]
        if problems:
            raise _Failed(f"{len(problems)} of {len(rows)}: " + "; ".join(problems[:4]))
        return f"{len(rows)} PVs read, types as documented"

    @property
    def context(self) -> Context:
        """One CA client context for the raw reads (channels searched and kept together)."""
        if self._context is None:
            self._context = Context()
        return self._context

    def close(self) -> None:
        if self._context is not None:
            self._context.disconnect()

    # -- potentiostat -------------------------------------------------------------------------

    def _ioc_window(self) -> tuple[float, float]:
        pot = self.inst.pot
        return (
            float(pot.bias_low_limit.get(use_monitor=False)),
            float(pot.bias_high_limit.get(use_monitor=False)),
        )

    def device_refuses_bias(self) -> str:
        pot = self.inst.pot
        low, high = pot.window(self._ioc_window())
        target = high + 0.5
        before = float(pot.setpoint.get(use_monitor=False))
        try:
            pot.set(target)
        except UnsafeBiasError:
            after = float(pot.setpoint.get(use_monitor=False))
            if after != before:
                raise _Failed(f"the bias setpoint moved to {after:+.3f} V") from None
            return f"{target:+.2f} V refused before any put (window {low:+.2f}..{high:+.2f} V)"
        pot.stop()
        raise _Failed(f"the device sent bias {target:+.2f} V outside {low:+.2f}..{high:+.2f} V")

    def ioc_refuses_bias(self) -> str:
        low, high = self._ioc_window()
        target = high + 0.1  # just outside the IOC's own window
        name = self.pv("pot", "bias")
        before = float(self.inst.pot.setpoint.get(use_monitor=False))
        try:
            ca_write(name, target, notify=True, timeout=self.timeout, repeater=False)
        except ErrorResponseReceived:
            return f"{target:+.2f} V refused with a failed put"
        except TimeoutError:
            raise _Failed(f"a put of {target:+.2f} V to {name} did not complete") from None
        (pv,) = self.context.get_pvs(name)
        pv.wait_for_connection(timeout=PV_TIMEOUT_S)
        reading = pv.read(data_type="time", timeout=PV_TIMEOUT_S)
        violation = int(self.inst.pot.limit_violation.get(use_monitor=False))
        severity = int(getattr(reading.metadata, "severity", 0))
        if severity or violation:
            return (
                f"{target:+.2f} V refused after the put completed "
                f"(severity {severity}, limit_violation {violation})"
            )
        # Accepted: put the old bias back at once, then say so.
        ca_write(name, before, notify=True, timeout=self.timeout, repeater=False)
        raise _Failed(
            f"the IOC accepted bias {target:+.2f} V outside its window {low:+.2f}..{high:+.2f} V"
        )

    # -- TCSPC card ---------------------------------------------------------------------------

    def acquisition(self) -> str:
        tcspc, laser = self.inst.tcspc, self.inst.laser
        if not laser.connected:
            raise _Skipped("the laser IOC is not connected: the interlock is unknown")
        if laser.interlock_open:
            raise _Skipped("the laser interlock is open")
        if laser.emission.get(use_monitor=False) != "on":
            raise _Skipped("laser emission is off: switch it on to check an acquisition")
        acquire_time = tcspc.acquire_time.get(use_monitor=False)
        tcspc.acquire_time.set(0).wait(PV_TIMEOUT_S)
        try:
            tcspc.kickoff().wait(self.timeout)
            path = tcspc.file_path.get(use_monitor=False)
            try:
                start = int(tcspc.num_photons.get(use_monitor=False))
                if not _wait_for(
                    lambda: int(tcspc.num_photons.get(use_monitor=False)) > start, self.timeout
                ):
                    raise _Failed(f"num_photons stayed at {start} for {self.timeout:g} s")
            finally:
                tcspc.complete().wait(self.timeout)
            if int(tcspc.acquiring.get(use_monitor=False)):
                raise _Failed("acquiring stayed 1 after the stop completed")
            count = int(tcspc.num_photons.get(use_monitor=False))
        finally:
            tcspc.acquire_time.set(acquire_time).wait(PV_TIMEOUT_S)
        return f"{count} photons in {path}"

    # -- laser --------------------------------------------------------------------------------

    def rep_rate_refused(self) -> str:
        laser = self.inst.laser
        before = float(laser.rep_rate.get(use_monitor=False))
        odd = 3.14159e6  # no pulsed diode driver's list holds it
        name = self.pv("laser", "rep_rate")
        try:
            ca_write(name, odd, notify=True, timeout=self.timeout, repeater=False)
        except ErrorResponseReceived:
            return f"{odd:g} Hz refused"
        after = float(laser.rep_rate.get(use_monitor=False))
        if math.isclose(after, odd):
            laser.rep_rate.set(before).wait(self.timeout)
            raise _Failed(f"the IOC took rep_rate {odd:g} Hz, not one of its frequencies")
        return f"{odd:g} Hz not taken (rep_rate stays {after:g} Hz)"

    def emission_refused(self) -> str:
        laser = self.inst.laser
        if laser.interlock_open:
            raise _Skipped("the interlock is open already; close it to run this check")
        emission = laser.emission.get(use_monitor=False)
        try:
            ca_write(
                self.pv("laser", "interlock"), 1, notify=True, timeout=PV_TIMEOUT_S, repeater=False
            )
        except ErrorResponseReceived:
            raise _Skipped("the interlock is an input of this laser: it cannot be opened") from None
        try:
            if not _wait_for(lambda: laser.interlock_open, self.timeout):
                raise _Skipped("the interlock put completed but it did not open")
            name = self.pv("laser", "emission")
            try:
                ca_write(name, 1, notify=True, timeout=PV_TIMEOUT_S, repeater=False)
            except ErrorResponseReceived:
                if laser.emission.get(use_monitor=False) != "off":
                    raise _Failed("the put was refused but emission reads on") from None
                return "switching emission on was refused"
            raise _Failed("the IOC switched emission on with the interlock open")
        finally:
            laser.interlock.set("closed").wait(self.timeout)
            if emission == "on":
                laser.emission.set("on").wait(self.timeout)

    # -- stage --------------------------------------------------------------------------------

    def _step(self, axis: Any, start: float, distance: float) -> float:
        low, high = axis.limits
        if low == high:  # no soft limits
            return start + distance
        if start + distance <= high:
            return start + distance
        if start - distance >= low:
            return start - distance
        raise _Skipped(f"{axis.name} has no room for a {distance:g} um move within its limits")

    def move(self) -> str:
        axis = self.inst.stage.x
        start = _position(axis)
        target = self._step(axis, start, STEP_UM)
        try:
            axis.set(target).wait(self.timeout)
            there = _position(axis)
            if abs(there - target) > ARRIVED_UM:
                raise _Failed(f"the move to {target:.3f} um completed at {there:.3f} um")
        finally:
            axis.set(start).wait(self.timeout)
        back = _position(axis)
        if abs(back - start) > ARRIVED_UM:
            raise _Failed(f"the return to {start:.3f} um completed at {back:.3f} um")
        return f"x {start:.3f} -> {target:.3f} -> {back:.3f} um"

    def stop(self) -> str:
        stage, axis = self.inst.stage, self.inst.stage.x
        velocity = getattr(axis, "velocity", None) or getattr(stage, "velocity", None)
        if velocity is None:
            raise _Skipped("the stage has no velocity to slow a move down with")
        start = _position(axis)
        distance = 10 * STEP_UM
        target = self._step(axis, start, distance)
        speed = float(velocity.get(use_monitor=False))
        velocity.set(distance / STOP_MOVE_S).wait(PV_TIMEOUT_S)
        try:
            status = axis.set(target)
            time.sleep(0.2 * STOP_MOVE_S)
            stage.stop()
            if not _wait_for(lambda: status.done, self.timeout):
                raise _Failed(f"the move had not ended {self.timeout:g} s after the stop")
            if not _wait_for(lambda: _at_rest(axis), self.timeout, period=0.0):
                raise _Failed(f"the axis kept moving {self.timeout:g} s after the stop")
            halted = _position(axis)
            if abs(halted - target) < 0.1 * distance:
                raise _Failed(f"the axis reached {target:.3f} um despite the stop")
        finally:
            velocity.set(speed).wait(PV_TIMEOUT_S)
            with contextlib.suppress(Exception):  # the check's result says what failed
                axis.set(start).wait(self.timeout)
        return f"stopped at {halted:.3f} um on the way {start:.3f} -> {target:.3f} um"


def _check(row: DocumentedPv, pv: Any) -> str:
    """What is wrong with one documented PV ("" if nothing)."""
    try:
        pv.wait_for_connection(timeout=PV_TIMEOUT_S)
        reading = pv.read(data_type="control", timeout=PV_TIMEOUT_S)
    except TimeoutError:
        return f"{row.name} does not answer"
    native = native_type(reading.data_type)
    if native not in _KINDS[row.kind]:
        return f"{row.name} is {native.name}, not {row.kind}"
    if row.enum_strings:
        strings = tuple(s.decode() for s in getattr(reading.metadata, "enum_strings", ()))
        if strings != row.enum_strings:
            return f"{row.name} offers {'/'.join(strings)}, not {'/'.join(row.enum_strings)}"
    return ""


def _position(axis: Any) -> float:
    position = axis.position
    if position is None:
        raise _Failed(f"{axis.name} has no position")
    return float(position)


def _at_rest(axis: Any, over_s: float = 0.2) -> bool:
    """True if the axis moves less than :data:`ARRIVED_UM` over ``over_s``."""
    before = _position(axis)
    time.sleep(over_s)
    return abs(_position(axis) - before) <= ARRIVED_UM


def _signals(device: Any) -> list[Any]:
    return [walk.item for walk in device.walk_signals()]


def _wait_for(predicate: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(period)
    return True
