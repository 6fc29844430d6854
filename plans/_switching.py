"""Microsecond bias switching: a square wave of bias with photons throughout."""

from collections.abc import Hashable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Flyable, Movable, Readable, Status
from bluesky.utils import CustomPlanMetadata, FailedStatus, MsgGenerator, short_uid

from . import _validate as check
from ._md import qd_block, read_photon_mode, start_md
from ._run import photon_run
from ._stubs import (
    collect_until_done,
    mark_segment,
    quietly,
    restoring_bias,
    set_bias,
    stop_operation,
)

#: Shortest period the plan asks for (the potentiostat IOC's own lower limit).
MIN_PERIOD_S = 10e-6


def _run_wave(
    potentiostat: Any, low: float, high: float, period: float, cycles: int, group: Hashable
) -> MsgGenerator[Status | None]:
    sw = potentiostat.switching
    yield from bps.mv(sw.low, low, sw.high, high, sw.period, period, sw.cycles, cycles)
    return (yield from bps.trigger(sw, group=group))


@check.checks_at_call
def bias_switching(
    tcspc: Flyable,
    potentiostat: Movable,
    low: float,
    high: float,
    *,
    period: float,
    cycles: int | None = None,
    duration: float | None = None,
    bin_width: float = 0.0,
    trigger_channel: int = 1,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Switch the bias between ``low`` and ``high`` many times; the dot's response in us.

    One run, one photon file. The acquisition starts, the bias goes to ``low`` and settles,
    one marker event is recorded in ``primary``, then the potentiostat plays the square wave
    itself (``period`` per low -> high -> low cycle) while new photon rows are announced every
    ``collect_period`` seconds. Its trigger output, wired to the TCSPC card's marker input
    ``trigger_channel``, records a marker at every step (``/user/markers``); the live analysis
    files every photon by the time since the last step (``switching`` stream: intensity and
    lifetime against that time, in bins of ``bin_width``, per edge) and fits the response
    (``switching_response``: the 10-90 % rise time). Afterwards the bias returns to where it
    was before the plan; a failed or aborted run stops the wave first.

    The paper's 2 us rise time, seen in the charging of the dot (0 V <-> -1.8 V)::

        RE(bias_switching(tcspc, pot, -1.8, 0.0, period=200e-6, duration=10))

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`) with a switching mode.
    low, high : float
        The two biases (V), each in the safe window, ``low < high``.
    period : float
        Seconds of one cycle, >= 10 us; half of it after each step is analysed.
    cycles : int, optional
        Number of cycles (give this or ``duration``).
    duration : float, optional
        Seconds of switching (rounded to whole cycles; give this or ``cycles``).
    bin_width : float, optional
        Time bin of the ``switching`` stream (s); 0: one laser period (in T3).
    trigger_channel : int, optional
        The card's marker input (1-4) the potentiostat's trigger output is wired to.
    readables : sequence of Readable, optional
        Extra devices read in the marker event.
    collect_period : float, optional
        Seconds between announcements of new photon rows.
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    str
        The run's uid.

    Raises
    ------
    UnsafeBiasError
        ``low`` or ``high`` outside the client-side safe window, at the call; outside the
        IOC's limits (read first in the plan), before the run opens and anything moves.
    ValueError
        ``low >= high``, a period below 10 us, neither or both of ``cycles`` and
        ``duration``, a trigger channel not in 1-4, ..., at the call.
    """
    plan = "bias_switching"
    check.photon_card(tcspc, plan)
    check.potentiostat(potentiostat, plan, switching=True)
    low = check.bias(potentiostat, low, "low", plan)
    high = check.bias(potentiostat, high, "high", plan)
    if not low < high:
        raise ValueError(f"{plan}: low ({low:g} V) must be below high ({high:g} V)")
    period = check.positive(period, "period", plan, "s")
    if period < MIN_PERIOD_S:
        raise ValueError(f"{plan}: period must be at least {MIN_PERIOD_S:g} s, got {period:g}")
    if (cycles is None) == (duration is None):
        raise ValueError(f"{plan}: give either cycles or duration (not both, not neither)")
    if cycles is not None:
        n_cycles = check.whole(cycles, "cycles", plan)
    else:
        n_cycles = max(1, round(check.positive(duration, "duration", plan, "s") / period))
    bin_width = check.number(bin_width, "bin_width", plan, "s")
    if bin_width < 0:
        raise ValueError(f"{plan}: bin_width must be >= 0 s, got {bin_width:g}")
    if trigger_channel not in (1, 2, 3, 4):
        raise ValueError(f"{plan}: trigger_channel must be an input 1-4, not {trigger_channel!r}")
    collect_period = check.positive(collect_period, "collect_period", plan, "s")
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, potentiostat))
    user_md = check.metadata(md, plan)
    plan_args = {
        "tcspc": repr(tcspc),
        "potentiostat": repr(potentiostat),
        "low": low,
        "high": high,
        "period": period,
        "cycles": n_cycles,
        "bin_width": bin_width,
        "trigger_channel": trigger_channel,
        "readables": list(map(repr, extra)),
        "collect_period": collect_period,
    }

    def wave() -> MsgGenerator[None]:
        yield from set_bias(potentiostat, low)
        yield from mark_segment(tcspc, potentiostat, extra)
        group = short_uid("switching")
        status = yield from _run_wave(potentiostat, low, high, period, n_cycles, group)

        def stop(exc: Exception) -> MsgGenerator[None]:
            own = isinstance(exc, FailedStatus) and bool(exc.args) and exc.args[0] is status
            stop_wave = stop_operation(
                potentiostat, potentiostat.switching.progress, None if own else status
            )
            yield from quietly(stop_wave, "stopping the square wave")

        yield from bpp.contingency_wrapper(
            collect_until_done(tcspc, group, collect_period), except_plan=stop
        )

    def run() -> MsgGenerator[str]:
        yield from check.bias_window(potentiostat, [("low", low), ("high", high)], plan)
        mode = yield from read_photon_mode(tcspc)
        qd = qd_block(tcspc, potentiostat, segments="steps", bias_setpoints=[low], mode=mode)
        qd["switching"] = {
            "period_s": period,
            "bin_s": bin_width,
            "trigger_channel": trigger_channel,
        }
        _md = start_md(
            plan,
            plan_args,
            detectors=[tcspc, *extra],
            num_points=1,
            user_md=user_md,
            qd=qd,
            switching_duration_s=n_cycles * period,
        )
        return (yield from restoring_bias(potentiostat, photon_run(tcspc, wave(), _md)))

    return run()
