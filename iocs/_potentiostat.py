"""The potentiostat IOC: static bias and cyclic voltammetry on a three-electrode cell."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from ._backends import NotSupportedError
from ._common import (
    BACKEND_FAULTS,
    RefusedError,
    clear_alarm,
    logger,
    raise_alarm,
    status_pv,
    text_pv,
)

if TYPE_CHECKING:
    from ._backends import PotentiostatBackend

#: Default safe window: below -2 V the ITO working electrode degrades (PHYSICS.md).
DEFAULT_SAFE_WINDOW_V = (-2.0, 1.0)
#: Period of the ramp loop; the applied bias follows the wall clock, not the tick count.
TICK_S = 0.02
#: Period of the progress PVs of a CV scan (fewer monitor events than the bias readback).
PROGRESS_PERIOD_S = 0.1
#: The reference electrode the bias is reported against unless the user names another.
DEFAULT_REFERENCE = "Pt quasi-reference"
#: What ``current_range`` offers when the backend has no current ranges.
NO_RANGES = ("not supported",)


def format_current(amps: float) -> str:
    """A current range as an ENUM string: ``1e-7`` -> ``"100 nA"``."""
    for factor, unit in ((1.0, "A"), (1e-3, "mA"), (1e-6, "uA"), (1e-9, "nA"), (1e-12, "pA")):
        if abs(amps) >= factor * 0.999:
            return f"{amps / factor:.3g} {unit}"
    return f"{amps:.3g} A"


#: Shortest square-wave period of the switching mode (a potentiostat's fast pulse mode).
MIN_SWITCH_PERIOD_S = 10e-6


class CyclicVoltammetryIOC(PVGroup):
    """The cyclic-voltammetry waveform of the potentiostat (PV names ``{P}pot:cv_*``).

    start, vertex, end
        Bias (V) where the sweep starts, turns (polarity reversal) and ends; each must lie in
        the safe window.
    rate
        Sweep rate (V/s).
    cycles
        Number of start -> vertex -> end sweeps.
    run
        Put 1 to run the waveform (needs ``mode`` = CV); the put completes when the scan is
        over (or aborted), so ``caput -c`` and ophyd put-completion wait for it. Reads 0 again
        once the scan is over.
    running, progress, elapsed, duration, cycle
        Read-only progress: busy flag, fraction done (0..1), seconds since the sweep started,
        total sweep time (s), current cycle (1-based).
    """

    start = pvproperty(value=0.0, units="V", precision=4, doc="CV start bias (V)")
    vertex = pvproperty(value=-2.0, units="V", precision=4, doc="CV vertex bias (V)")
    end = pvproperty(value=0.0, units="V", precision=4, doc="CV end bias (V)")
    rate = pvproperty(
        value=0.2,
        units="V/s",
        precision=4,
        lower_ctrl_limit=1e-4,
        upper_ctrl_limit=100.0,
        doc="CV sweep rate (V/s)",
    )
    cycles = pvproperty(
        value=1, lower_ctrl_limit=1, upper_ctrl_limit=100_000, doc="number of CV cycles"
    )
    run = pvproperty(value=0, doc="put 1 to run the CV; completes when the scan is over")
    running = pvproperty(value=0, read_only=True, doc="1 while a CV scan runs")
    progress = pvproperty(value=0.0, read_only=True, precision=4, doc="fraction of the scan done")
    elapsed = pvproperty(value=0.0, read_only=True, units="s", precision=3)
    duration = pvproperty(value=0.0, read_only=True, units="s", precision=3)
    cycle = pvproperty(value=0, read_only=True, doc="current cycle, counted from 1")

    @start.putter
    async def start(self, instance, value):
        await self.parent.check_safe(value, what="CV start")
        return value

    @vertex.putter
    async def vertex(self, instance, value):
        await self.parent.check_safe(value, what="CV vertex")
        return value

    @end.putter
    async def end(self, instance, value):
        await self.parent.check_safe(value, what="CV end")
        return value

    @run.putter
    async def run(self, instance, value):
        if not value:
            return 0
        await self.parent.run_cv()
        return 0


class SwitchingIOC(PVGroup):
    """The square-wave switching mode of the potentiostat (PV names ``{P}pot:sw_*``).

    low, high
        The two biases (V), each in the safe window.
    period
        Seconds of one low -> high -> low cycle (``MIN_SWITCH_PERIOD_S`` .. 10 s).
    cycles
        Number of cycles; the wave starts with the step to ``high`` and ends at ``low``.
    run
        Put 1 to run it (needs ``mode`` = static); completes when it is over (or aborted).
        The instrument plays the wave itself (no per-step Channel Access) and its trigger
        output fires at every step.
    running, progress, elapsed, duration
        Read-only progress, as the CV's.
    """

    low = pvproperty(value=-1.0, units="V", precision=4, doc="switching low bias (V)")
    high = pvproperty(value=0.0, units="V", precision=4, doc="switching high bias (V)")
    period = pvproperty(
        value=1e-3,
        units="s",
        precision=7,
        lower_ctrl_limit=MIN_SWITCH_PERIOD_S,
        upper_ctrl_limit=10.0,
        doc="period of one low -> high -> low cycle (s)",
    )
    cycles = pvproperty(
        value=1000, lower_ctrl_limit=1, upper_ctrl_limit=100_000_000, doc="number of cycles"
    )
    run = pvproperty(value=0, doc="put 1 to switch; completes when the square wave is over")
    running = pvproperty(value=0, read_only=True, doc="1 while switching")
    progress = pvproperty(value=0.0, read_only=True, precision=4, doc="fraction done")
    elapsed = pvproperty(value=0.0, read_only=True, units="s", precision=3)
    duration = pvproperty(value=0.0, read_only=True, units="s", precision=3)

    @low.putter
    async def low(self, instance, value):
        await self.parent.check_safe(value, what="switching low")
        return value

    @high.putter
    async def high(self, instance, value):
        await self.parent.check_safe(value, what="switching high")
        return value

    @run.putter
    async def run(self, instance, value):
        if value:
            await self.parent.run_switching()
        return 0


class PotentiostatIOC(PVGroup):
    """A potentiostat driving an ITO / Pt quasi-reference / Pt counter cell (``{P}pot:``).

    Bias is reported against the Pt quasi-reference. The ``backend``
    (:class:`~qd_bluesky.iocs.PotentiostatBackend`) applies it and measures the current; the
    simulated one applies it to the shared sample, which charges the dot.

    PVs
    ---
    bias
        Bias setpoint (V). The put ramps the bias at ``slew_rate``, waits ``settle_time`` and
        only then completes, so ophyd's put completion waits for the settled bias. A bias
        outside [``bias_low_limit``, ``bias_high_limit``] is refused: the put fails, the
        readback stays where it was, ``limit_violation`` becomes 1 and ``status`` says why.
    bias_rbv
        Bias applied to the cell (V), updated while ramping.
    current
        Cell current (A): double-layer charging plus faradaic current plus noise.
    mode
        ``static`` (``bias`` puts allowed) or ``CV`` (``cv_run`` allowed).
    cell_on
        ``on``/``off``: with the cell off the working electrode is open circuit (0 V).
    slew_rate, settle_time
        Ramp speed of static bias changes (V/s) and the wait after a ramp (s).
    bias_low_limit, bias_high_limit
        The safe window (V), default -2.0 / +1.0 V. It must lie inside the hardware range.
    abort
        Put 1 to stop a ramp or a CV scan where it is.
    busy
        1 while a ramp or a CV scan is in progress.
    status
        Human-readable state or the reason of the last refusal (long string). A fault of the
        instrument (e.g. a compliance trip) is written here with a MAJOR alarm, which the next
        request clears.
    limit_violation
        1 when the last bias (or CV) request was refused for leaving the safe window, else 0;
        every request first resets it to 0, so a refusal is always a 0 -> 1 transition.
    current_range, autorange
        Full scale of the current range (ENUM of the instrument's ranges) and ``off``/``on``
        for automatic ranging; with autorange on, ``current_range`` shows the range in use.
    compliance
        Largest |bias| (V) the instrument applies; the safe window must lie inside it.
    ir_comp, ir_comp_resistance
        iR compensation ``off``/``on`` and the compensated resistance (ohm).
    reference, reference_offset
        Name of the reference electrode the biases are reported against (default
        ``Pt quasi-reference``) and the potential (V) of the cell's reference electrode
        against it: the instrument applies ``bias - reference_offset``. A change of the
        offset shifts the safe window with it, so the electrode sees the same window.
    trigger_output, trigger_count
        ``off``/``on``: the trigger output pulses at every bias step (start of a static bias
        change) and at every leg of a CV (its start and each vertex); the number of pulses.
    cv_start, cv_vertex, cv_end, cv_rate, cv_cycles, cv_run, cv_running, cv_progress,
    cv_elapsed, cv_duration, cv_cycle
        The cyclic-voltammetry waveform, see :class:`CyclicVoltammetryIOC`.

    A put to a setting the backend lacks fails, and ``status`` says
    ``refused: <setting> is not supported by this potentiostat``.
    sw_low, sw_high, sw_period, sw_cycles, sw_run, sw_running, sw_progress, sw_elapsed,
    sw_duration
        The square-wave switching mode, see :class:`SwitchingIOC`.
    """

    def __init__(self, *args, backend: PotentiostatBackend, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        self._current_fault = False
        self._abort_requested = False
        self._busy = False
        self._init_settings()

    bias = pvproperty(value=0.0, units="V", precision=4, doc="bias setpoint (V)")
    bias_rbv = pvproperty(value=0.0, units="V", precision=4, read_only=True, doc="applied bias")
    current = pvproperty(value=0.0, units="A", precision=12, read_only=True, doc="cell current")
    mode = pvproperty(
        value="static",
        dtype=ChannelType.ENUM,
        enum_strings=("static", "CV"),
        doc="static bias or cyclic voltammetry",
    )
    cell_on = pvproperty(
        value="on", dtype=ChannelType.ENUM, enum_strings=("off", "on"), doc="cell connected"
    )
    slew_rate = pvproperty(
        value=10.0,
        units="V/s",
        precision=3,
        lower_ctrl_limit=1e-3,
        upper_ctrl_limit=1e4,
        doc="ramp speed of static bias changes",
    )
    settle_time = pvproperty(
        value=0.05,
        units="s",
        precision=3,
        lower_ctrl_limit=0.0,
        upper_ctrl_limit=60.0,
        doc="wait after a ramp before the put completes",
    )
    bias_low_limit = pvproperty(value=DEFAULT_SAFE_WINDOW_V[0], units="V", precision=3)
    bias_high_limit = pvproperty(value=DEFAULT_SAFE_WINDOW_V[1], units="V", precision=3)
    abort = pvproperty(value=0, doc="put 1 to stop a ramp or CV scan")
    busy = pvproperty(value=0, read_only=True, doc="1 while ramping or scanning")
    status = status_pv("idle", doc="state, or the reason of the last refusal")
    limit_violation = pvproperty(value=0, read_only=True, doc="last request left the window")

    current_range = pvproperty(
        value=NO_RANGES[0],
        dtype=ChannelType.ENUM,
        enum_strings=NO_RANGES,
        doc="full scale of the current range",
    )
    autorange = pvproperty(
        value="on", dtype=ChannelType.ENUM, enum_strings=("off", "on"), doc="current autorange"
    )
    compliance = pvproperty(
        value=5.0, units="V", precision=3, doc="largest |bias| the instrument applies"
    )
    ir_comp = pvproperty(
        value="off", dtype=ChannelType.ENUM, enum_strings=("off", "on"), doc="iR compensation"
    )
    ir_comp_resistance = pvproperty(
        value=0.0, units="Ohm", precision=2, doc="compensated resistance (ohm)"
    )
    reference = text_pv(DEFAULT_REFERENCE, read_only=False, doc="reference electrode name")
    reference_offset = pvproperty(
        value=0.0, units="V", precision=4, doc="cell reference electrode vs the named one (V)"
    )
    trigger_output = pvproperty(
        value="off",
        dtype=ChannelType.ENUM,
        enum_strings=("off", "on"),
        doc="pulse at every bias step and CV vertex",
    )
    trigger_count = pvproperty(value=0, read_only=True, doc="trigger pulses emitted")

    cv = SubGroup(CyclicVoltammetryIOC, prefix="cv_")
    sw = SubGroup(SwitchingIOC, prefix="sw_")

    # -- optional settings of the backend -------------------------------------------------

    def _init_settings(self) -> None:
        """Start the settings PVs from the backend's state (before the server runs)."""
        backend = self.backend
        ranges = tuple(getattr(backend, "current_ranges_a", ()) or ())
        if ranges:
            names = tuple(format_current(r) for r in ranges)
            self.current_range._data["enum_strings"] = names
            self.current_range._data["value"] = format_current(backend.current_range_a)
        initial = {
            "autorange": ("autorange", lambda v: "on" if v else "off"),
            "compliance": ("compliance_v", float),
            "ir_comp": ("ir_compensation_on", lambda v: "on" if v else "off"),
            "ir_comp_resistance": ("ir_compensation_ohm", float),
            "trigger_output": ("trigger_output_enabled", lambda v: "on" if v else "off"),
        }
        initial["cell_on"] = ("cell_is_on", lambda v: "on" if v else "off")
        for pv, (attr, convert) in initial.items():
            if hasattr(backend, attr):
                getattr(self, pv)._data["value"] = convert(getattr(backend, attr))

    def close(self) -> None:
        """Release the instrument (the server calls it on shutdown)."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    async def _set_backend(self, attr: str, value, what: str) -> None:
        """Set the backend's ``attr``; a lacking feature or a fault refuses the put."""
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        await clear_alarm(self.status)
        if not hasattr(self.backend, attr):
            await self.refuse(f"{what} is not supported by this potentiostat")
        try:
            setattr(self.backend, attr, value)
        except NotSupportedError as exc:
            await self.refuse(f"{what} is not supported by this potentiostat ({exc})")
        except (*BACKEND_FAULTS, ValueError) as exc:
            await self.refuse(f"{what} {value!r} refused: {exc}")
        await self.status.write(f"{what} set to {value}")

    @current_range.putter
    async def current_range(self, instance, value):
        names = instance.enum_strings
        ranges = tuple(getattr(self.backend, "current_ranges_a", ()) or ())
        if not ranges:
            await self.refuse("the current range is not supported by this potentiostat")
        await self._set_backend("current_range_a", ranges[names.index(value)], "current range")
        return value

    @autorange.putter
    async def autorange(self, instance, value):
        await self._set_backend("autorange", value == "on", "current autorange")
        return value

    @compliance.putter
    async def compliance(self, instance, value):
        value = float(value)
        low, high = self.window
        offset = float(self.reference_offset.value)
        if not value > 0 or max(abs(low - offset), abs(high - offset)) > value:
            await self.refuse(
                f"compliance {value:g} V must be > 0 and hold the safe window "
                f"[{low:+.3f}, {high:+.3f}] V"
            )
        await self._set_backend("compliance_v", value, "compliance")
        return value

    @ir_comp.putter
    async def ir_comp(self, instance, value):
        await self._set_backend("ir_compensation_on", value == "on", "iR compensation")
        return value

    @ir_comp_resistance.putter
    async def ir_comp_resistance(self, instance, value):
        if not float(value) >= 0:
            await self.refuse(f"iR compensation resistance {value} must be >= 0 ohm")
        await self._set_backend("ir_compensation_ohm", float(value), "iR compensation")
        return value

    @trigger_output.putter
    async def trigger_output(self, instance, value):
        await self._set_backend("trigger_output_enabled", value == "on", "the trigger output")
        return value

    @reference_offset.putter
    async def reference_offset(self, instance, value):
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        shift = float(value) - float(instance.value)
        # The electrode must see the same window: the window moves with the reference.
        low, high = self.window
        await self.bias_low_limit.write(low + shift, verify_value=False)
        await self.bias_high_limit.write(high + shift, verify_value=False)
        await self.bias.write(float(self.bias.value) + shift, verify_value=False)
        await self.bias_rbv.write(self.backend.bias_v + float(value))
        return value

    async def _trigger(self) -> None:
        """Pulse the trigger output (if on) and count the pulses the backend reports."""
        if self.trigger_output.value != "on" or not hasattr(self.backend, "emit_trigger"):
            return
        try:
            self.backend.emit_trigger()
            pulses = len(self.backend.drain_trigger_times())
        except BACKEND_FAULTS as exc:
            await self.fault("the trigger pulse", exc)
        if pulses:
            await self.trigger_count.write(int(self.trigger_count.value) + pulses)

    # -- checks ---------------------------------------------------------------------------

    @property
    def applied_v(self) -> float:
        """The bias applied now, against the named reference electrode."""
        return self.backend.bias_v + float(self.reference_offset.value)

    @property
    def window(self) -> tuple[float, float]:
        return float(self.bias_low_limit.value), float(self.bias_high_limit.value)

    async def refuse(self, reason: str, *, limit: bool = False) -> None:
        """Record why a request is refused, then refuse it (the put fails)."""
        await self.status.write(f"refused: {reason}")
        if limit:
            await self.limit_violation.write(1)
        raise RefusedError(reason, source=self.prefix)

    async def fault(self, what: str, exc: BaseException) -> None:
        """The instrument failed ``what``: alarm on ``status``, then refuse the request."""
        reason = f"{what} failed: {exc}"
        await raise_alarm(self.status, f"fault: {reason}")
        raise RefusedError(reason, source=self.prefix) from None

    async def check_safe(self, bias_v: float, *, what: str = "bias") -> None:
        low, high = self.window
        if not low <= bias_v <= high:
            await self.refuse(
                f"{what} {bias_v:+.3f} V is outside the safe window [{low:+.3f}, {high:+.3f}] V",
                limit=True,
            )

    # -- static bias ----------------------------------------------------------------------

    @bias.putter
    async def bias(self, instance, value):
        value = float(value)
        # Every request starts from "no violation", so a refusal is a fresh 0 -> 1 transition
        # for clients watching limit_violation.
        await self.limit_violation.write(0)
        await clear_alarm(self.status)
        await self.check_safe(value)
        if self.cell_on.value != "on":
            await self.refuse("the cell is off (cell_on = off)")
        if self.mode.value != "static":
            await self.refuse("mode is CV: set mode to static for a static bias")
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        async with self._busy_flag():
            await self.status.write(f"ramping to {value:+.4f} V")
            if value != self.applied_v:
                await self._trigger()
            reached = await self._ramp(value, float(self.slew_rate.value))
            if not reached:
                await self.status.write(f"aborted at {self.applied_v:+.4f} V")
                return self.applied_v
            await asyncio.sleep(float(self.settle_time.value))
            await self.status.write(f"settled at {value:+.4f} V")
        return value

    @abort.putter
    async def abort(self, instance, value):
        if value:
            self._abort_requested = True
        return 0

    @cell_on.putter
    async def cell_on(self, instance, value):
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        # Open circuit: the working electrode floats back to 0 V vs the quasi-reference.
        await self._apply(float(self.reference_offset.value), 0.0)
        set_cell = getattr(self.backend, "set_cell", None)
        if set_cell is not None:
            try:
                set_cell(value == "on")
            except BACKEND_FAULTS as exc:
                await self.fault(f"switching the cell {value}", exc)
        await self.bias.write(self.applied_v, verify_value=False)
        await self.status.write(f"cell {value}")
        return value

    @mode.putter
    async def mode(self, instance, value):
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        return value

    @bias_low_limit.putter
    async def bias_low_limit(self, instance, value):
        await self._check_window(float(value), float(self.bias_high_limit.value))
        return value

    @bias_high_limit.putter
    async def bias_high_limit(self, instance, value):
        await self._check_window(float(self.bias_low_limit.value), float(value))
        return value

    async def _check_window(self, low: float, high: float) -> None:
        offset = float(self.reference_offset.value)
        hw_low, hw_high = (v + offset for v in self.backend.hardware_range_v)
        if not hw_low <= low < high <= hw_high:
            await self.refuse(
                f"safe window [{low:+.3f}, {high:+.3f}] V must be increasing and inside the "
                f"hardware range [{hw_low:+.1f}, {hw_high:+.1f}] V"
            )

    @current.scan(period=0.1)
    async def current(self, instance, async_lib):
        # While idle the current still moves (faradaic leakage, noise); ramps update it
        # themselves on every tick.
        if self._busy:
            return
        try:
            current = self.backend.read_current()
        except BACKEND_FAULTS as exc:
            if not self._current_fault:  # one line per fault, not one per scan
                self._current_fault = True
                logger.warning("%s current reading failed: %s", self.prefix, exc)
                await raise_alarm(self.status, f"fault: current reading failed: {exc}")
            return
        self._current_fault = False
        await self.current.write(current)
        await self._publish_range()

    async def _publish_range(self) -> None:
        """Show the range the instrument uses (it changes under autorange)."""
        if getattr(self.backend, "current_ranges_a", None):
            name = format_current(self.backend.current_range_a)
            if name != self.current_range.value:
                await self.current_range.write(name, verify_value=False)

    # -- cyclic voltammetry ---------------------------------------------------------------

    async def run_cv(self) -> None:
        """Run the CV waveform described by the ``cv_*`` PVs (the put of ``cv_run``)."""
        cv = self.cv
        await self.limit_violation.write(0)
        await clear_alarm(self.status)
        if self.mode.value != "CV":
            await self.refuse("mode is static: set mode to CV before cv_run")
        if self.cell_on.value != "on":
            await self.refuse("the cell is off (cell_on = off)")
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        start, vertex, end = (float(cv.start.value), float(cv.vertex.value), float(cv.end.value))
        for what, v in (("CV start", start), ("CV vertex", vertex), ("CV end", end)):
            await self.check_safe(v, what=what)
        rate, cycles = float(cv.rate.value), int(cv.cycles.value)
        duration = cycles * (abs(vertex - start) + abs(end - vertex)) / rate
        if duration <= 0:
            await self.refuse("the CV waveform is empty: start, vertex and end are equal")
        async with self._busy_flag():
            await cv.running.write(1)
            await cv.duration.write(duration)
            await cv.progress.write(0.0)
            await cv.elapsed.write(0.0)
            try:
                await self.status.write(f"CV: going to the start bias {start:+.3f} V")
                if not await self._ramp(start, float(self.slew_rate.value)):
                    await self.status.write(f"CV aborted at {self.applied_v:+.4f} V")
                    return
                t0 = time.monotonic()
                last_report = -1.0

                async def report(_bias_v: float) -> None:
                    nonlocal last_report
                    now = time.monotonic()
                    if now - last_report >= PROGRESS_PERIOD_S:
                        last_report = now
                        await cv.elapsed.write(now - t0)
                        await cv.progress.write(min(1.0, (now - t0) / duration))

                if hasattr(self.backend, "start_cv"):
                    done = await self._stream_cv(start, vertex, end, rate, cycles, report)
                else:
                    done = await self._sweep_cv(vertex, end, rate, cycles, report)
                if not done:
                    await self.status.write(f"CV aborted at {self.applied_v:+.4f} V")
                    return
                await cv.elapsed.write(time.monotonic() - t0)
                await cv.progress.write(1.0)
                await self.bias.write(end, verify_value=False)
                await self.status.write(f"CV done: {cycles} cycle(s), holding {end:+.4f} V")
            finally:
                await cv.running.write(0)

    async def _sweep_cv(self, vertex, end, rate, cycles, report) -> bool:
        """The CV swept by this IOC, one :meth:`_ramp` per leg; False if aborted."""
        for k in range(cycles):
            await self.cv.cycle.write(k + 1)
            await self.status.write(f"CV: cycle {k + 1} of {cycles}")
            for target in (vertex, end):
                await self._trigger()
                if not await self._ramp(target, rate, on_tick=report):
                    return False
        return True

    async def _stream_cv(self, start, vertex, end, rate, cycles, report) -> bool:
        """The CV run by the instrument (:class:`StreamingCv`): publish each streamed point.

        Every (E, I) point goes to ``bias_rbv`` and ``current``; False if aborted.
        """
        backend, offset = self.backend, float(self.reference_offset.value)
        await self.status.write(f"CV: {cycles} cycle(s) run by the instrument")
        await self.cv.cycle.write(1)
        try:
            backend.start_cv(start - offset, vertex - offset, end - offset, rate, cycles)
            while True:
                await asyncio.sleep(TICK_S)
                if self._abort_requested:
                    backend.abort()
                    points, _ = backend.read_cv()
                    await self._publish_points(points, offset)
                    return False
                points, finished = backend.read_cv()
                await self._publish_points(points, offset)
                if points:
                    await report(points[-1][0] + offset)
                pulses = len(getattr(backend, "drain_trigger_times", list)())
                if pulses:
                    await self.trigger_count.write(int(self.trigger_count.value) + pulses)
                if finished:
                    return True
        except BACKEND_FAULTS as exc:
            await self.fault("the CV scan", exc)
        return False  # unreachable: fault() raises

    async def _publish_points(self, points, offset: float) -> None:
        for bias_v, current_a in points:
            await self.bias_rbv.write(bias_v + offset)
            await self.current.write(current_a)

    # -- square-wave switching -------------------------------------------------------------

    async def run_switching(self) -> None:
        """Play the square wave of the ``sw_*`` PVs (the put of ``sw_run``)."""
        sw = self.sw
        await self.limit_violation.write(0)
        await clear_alarm(self.status)
        start = getattr(self.backend, "start_switching", None)
        if start is None:
            await self.refuse("this potentiostat has no switching mode")
        if self.mode.value != "static":
            await self.refuse("mode is CV: set mode to static before sw_run")
        if self.cell_on.value != "on":
            await self.refuse("the cell is off (cell_on = off)")
        if self._busy:
            await self.refuse("a ramp or CV scan is in progress (put abort first)")
        low, high = float(sw.low.value), float(sw.high.value)
        for what, v in (("switching low", low), ("switching high", high)):
            await self.check_safe(v, what=what)
        if low == high:
            await self.refuse("switching low and high are equal: nothing to switch")
        period, cycles = float(sw.period.value), int(sw.cycles.value)
        async with self._busy_flag():
            await sw.running.write(1)
            await sw.progress.write(0.0)
            await sw.elapsed.write(0.0)
            try:
                if not await self._ramp(low, float(self.slew_rate.value)):
                    await self.status.write(f"switching aborted at {self.backend.bias_v:+.4f} V")
                    return
                try:
                    duration = start(low, high, period, cycles)
                except BACKEND_FAULTS as exc:
                    await self.fault("switching", exc)
                await sw.duration.write(duration)
                await self.status.write(f"switching {low:+.3f} <-> {high:+.3f} V, {cycles} cycles")
                t0 = time.monotonic()
                while (elapsed := time.monotonic() - t0) < duration:
                    if self._abort_requested:
                        self.backend.stop_switching()
                        await self.status.write("switching aborted")
                        return
                    await sw.elapsed.write(elapsed)
                    await sw.progress.write(elapsed / duration)
                    await asyncio.sleep(min(PROGRESS_PERIOD_S, duration - elapsed))
                self.backend.stop_switching()
                await self._apply(low, 0.0)
                await sw.elapsed.write(duration)
                await sw.progress.write(1.0)
                await self.bias.write(low, verify_value=False)
                await self.status.write(f"switching done: {cycles} cycle(s), holding {low:+.4f} V")
            finally:
                await sw.running.write(0)

    # -- the ramp engine ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _busy_flag(self):
        """Mark a ramp or CV scan in progress (and forget an abort meant for an earlier one)."""
        self._busy = True
        self._abort_requested = False
        await self.busy.write(1)
        try:
            yield
        finally:
            self._busy = False
            await self.busy.write(0)

    async def _apply(self, bias_v: float, dbias_dt: float) -> None:
        """Apply ``bias_v`` now and publish readback and current (a fault refuses the put)."""
        try:
            self.backend.apply_bias(
                bias_v - float(self.reference_offset.value), dbias_dt_v_per_s=dbias_dt
            )
        except BACKEND_FAULTS as exc:
            await self.bias_rbv.write(self.applied_v)
            await self.fault(f"applying {bias_v:+.4f} V", exc)
        await self.bias_rbv.write(self.applied_v)
        await self.current.write(self.backend.current_a)

    async def _ramp(self, target: float, rate: float, *, on_tick=None) -> bool:
        """Sweep linearly from the applied bias to ``target`` at ``rate`` (V/s).

        Returns False if aborted. The bias follows the clock, so a late tick does not slow
        the sweep down.
        """
        v0 = self.applied_v
        span = target - v0
        if span == 0.0:
            await self._apply(target, 0.0)
            return True
        sign = 1.0 if span > 0 else -1.0
        duration = abs(span) / rate
        t0 = time.monotonic()
        while True:
            if self._abort_requested:
                await self._apply(self.applied_v, 0.0)
                return False
            elapsed = time.monotonic() - t0
            if elapsed >= duration:
                await self._apply(target, 0.0)
                return True
            await self._apply(v0 + sign * rate * elapsed, sign * rate)
            if on_tick is not None:
                await on_tick(self.applied_v)
            await asyncio.sleep(min(TICK_S, duration - elapsed))
