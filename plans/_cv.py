"""Cyclic voltammetry with photons throughout: one scan, or many cycles for reversibility."""

from collections.abc import Sequence
from typing import Any

import bluesky.preprocessors as bpp
from bluesky.protocols import Flyable, Movable, Readable
from bluesky.utils import CustomPlanMetadata, FailedStatus, MsgGenerator, short_uid

from . import _validate as check
from ._md import qd_block, read_photon_mode, start_md
from ._run import photon_run
from ._stubs import (
    collect_until_done,
    mark_segment,
    quietly,
    restoring_bias,
    run_cv,
    set_bias,
    stop_cv,
)


def _check_waveform(
    potentiostat: Any, start: Any, vertex: Any, end: Any, rate: Any, cycles: Any, plan: str
) -> tuple[float, float, float, float, int]:
    start, vertex, end = (
        check.bias(potentiostat, value, name, plan)
        for name, value in (("start", start), ("vertex", vertex), ("end", end))
    )
    if start == vertex == end:
        raise ValueError(f"{plan}: start, vertex and end are all {start:g} V: nothing to sweep")
    rate = check.positive(rate, "rate", plan, "V/s")
    cycles = check.whole(cycles, "cycles", plan)
    return start, vertex, end, rate, cycles


def _sweep(
    tcspc: Flyable,
    potentiostat: Movable,
    waveform: tuple[float, float, float, float, int],
    collect_period: float,
) -> MsgGenerator[None]:
    """Run the IOC's waveform, collecting photons until it is over; stop it if interrupted."""
    group = short_uid("cv")
    status = yield from run_cv(potentiostat, *waveform, group=group, wait=False)

    def stop(exc: Exception) -> MsgGenerator[None]:
        # Without the stop the IOC would go on sweeping the bias after the run. If the scan's
        # own failure is what arrived here, there is no second failure left to absorb.
        own = isinstance(exc, FailedStatus) and bool(exc.args) and exc.args[0] is status
        yield from quietly(stop_cv(potentiostat, None if own else status), "stopping the CV scan")

    yield from bpp.contingency_wrapper(
        collect_until_done(tcspc, group, collect_period), except_plan=stop
    )


def _cv_md(
    plan: str,
    tcspc: Any,
    potentiostat: Any,
    waveform: tuple[float, float, float, float, int],
    extra: list[Any],
    collect_period: float,
    monitor_bias: bool,
    user_md: dict[str, Any],
    *,
    num_points: int,
    mode: str | None,
) -> dict[str, Any]:
    start, vertex, end, rate, cycles = waveform
    sweep_s = cycles * (abs(vertex - start) + abs(end - vertex)) / rate
    return start_md(
        plan,
        {
            "tcspc": repr(tcspc),
            "potentiostat": repr(potentiostat),
            "start": start,
            "vertex": vertex,
            "end": end,
            "rate": rate,
            "cycles": cycles,
            "readables": list(map(repr, extra)),
            "collect_period": collect_period,
            "monitor_bias": monitor_bias,
        },
        detectors=[tcspc, *extra],
        num_points=num_points,
        user_md=user_md,
        qd=qd_block(tcspc, potentiostat, segments="continuous", mode=mode),
        sweep_duration_s=sweep_s,
    )


@check.checks_at_call
def cv_scan(
    tcspc: Flyable,
    potentiostat: Movable,
    start: float,
    vertex: float,
    end: float,
    rate: float,
    cycles: int = 1,
    *,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    monitor_bias: bool = True,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Cyclic voltammetry run by the potentiostat, with photons recorded throughout.

    One run, one photon file. The acquisition starts, the bias goes to ``start`` and settles,
    one marker event is recorded in ``primary`` (photon index, bias, current, rate meters),
    then the potentiostat IOC sweeps start -> vertex -> end ``cycles`` times at ``rate``
    while new photon rows are announced every ``collect_period`` seconds. The bias of every
    photon is in the photon file (``/user/bias``: bias and current markers written by the
    TCSPC IOC at every bias change); the potentiostat's readback and current are also
    monitored into the streams ``<pot>_monitor`` and ``<pot>_current_monitor``. Afterwards
    the bias returns to where it was before the plan; a failed or aborted run stops the
    sweep first.

    The paper: 0 -> -2 -> 0 V in 20 s::

        RE(cv_scan(tcspc, pot, 0, -2, 0, rate=0.2, cycles=1))

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`).
    start, vertex, end : float
        Biases (V) of the waveform; each must lie in the safe window.
    rate : float
        Sweep rate (V/s), > 0.
    cycles : int, optional
        Number of start -> vertex -> end sweeps, >= 1.
    readables : sequence of Readable, optional
        Extra devices read in the marker event.
    collect_period : float, optional
        Seconds between announcements of new photon rows.
    monitor_bias : bool, optional
        Monitor the bias readback and the current (a few events per second per signal
        while idle, 50 per second while sweeping).
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    str
        The run's uid.

    Raises
    ------
    UnsafeBiasError
        A waveform bias outside the client-side safe window, at the call; outside the IOC's
        limits (read first in the plan), before the run opens and anything moves.
    ValueError
        Non-positive ``rate``, ``cycles`` < 1, an empty waveform, ..., at the call.
    """
    return _cv_plan(
        "cv_scan",
        tcspc,
        potentiostat,
        (start, vertex, end, rate, cycles),
        readables,
        collect_period,
        monitor_bias,
        md,
        marker_per_cycle=False,
    )


@check.checks_at_call
def bias_cycling(
    tcspc: Flyable,
    potentiostat: Movable,
    cycles: int,
    *,
    start: float = 0.0,
    vertex: float = -2.0,
    end: float = 0.0,
    rate: float = 0.2,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    monitor_bias: bool = True,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Many CV cycles in one run, one marker per cycle: is the charging reversible?

    Like :func:`cv_scan`, but each cycle is its own sweep of the potentiostat IOC, preceded
    by settling at ``start`` and a marker event in ``primary``, so segment k holds the
    photons of cycle k (``segments: "continuous"``: the bias of each photon is in the photon
    file). Between cycles the bias rests at ``start`` for the time the markers take (about
    0.1 s). Afterwards the bias returns to where it was before the plan.

    The paper: 540 cycles of 0 -> -2 -> 0 V at 0.2 V/s (3 h)::

        RE(bias_cycling(tcspc, pot, 540))

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`).
    cycles : int
        Number of cycles, >= 1.
    start, vertex, end : float, optional
        Biases (V) of each cycle; each must lie in the safe window.
    rate : float, optional
        Sweep rate (V/s), > 0.
    readables : sequence of Readable, optional
        Extra devices read in every marker event.
    collect_period : float, optional
        Seconds between announcements of new photon rows.
    monitor_bias : bool, optional
        Monitor the bias readback and the current (for 3 h of cycling that is ~10^6 events;
        the photon file has the bias of every photon anyway).
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    str
        The run's uid.

    Raises
    ------
    UnsafeBiasError, ValueError
        As :func:`cv_scan`.
    """
    return _cv_plan(
        "bias_cycling",
        tcspc,
        potentiostat,
        (start, vertex, end, rate, cycles),
        readables,
        collect_period,
        monitor_bias,
        md,
        marker_per_cycle=True,
    )


def _cv_plan(
    plan: str,
    tcspc: Any,
    potentiostat: Any,
    sweep: tuple[float, float, float, float, int],
    readables: Sequence[Any],
    collect_period: float,
    monitor_bias: bool,
    md: CustomPlanMetadata | None,
    *,
    marker_per_cycle: bool,
) -> MsgGenerator[str]:
    """The run of :func:`cv_scan` and :func:`bias_cycling`: checks now, the sweeps later.

    One marker before the whole waveform, or (``marker_per_cycle``) one before each cycle,
    the IOC then sweeping that cycle alone.
    """
    check.photon_card(tcspc, plan)
    check.potentiostat(potentiostat, plan, cv=True)
    waveform = _check_waveform(potentiostat, *sweep, plan)
    collect_period = check.positive(collect_period, "collect_period", plan, "s")
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, potentiostat))
    user_md = check.metadata(md, plan)
    n_cycles = waveform[4]
    segments = [(*waveform[:4], 1)] * n_cycles if marker_per_cycle else [waveform]

    def sweeps() -> MsgGenerator[None]:
        for segment in segments:
            yield from set_bias(potentiostat, segment[0])
            yield from mark_segment(tcspc, potentiostat, extra)
            yield from _sweep(tcspc, potentiostat, segment, collect_period)

    def run() -> MsgGenerator[str]:
        named = [("start", waveform[0]), ("vertex", waveform[1]), ("end", waveform[2])]
        yield from check.bias_window(potentiostat, named, plan)
        mode = yield from read_photon_mode(tcspc)
        _md = _cv_md(
            plan,
            tcspc,
            potentiostat,
            waveform,
            extra,
            collect_period,
            bool(monitor_bias),
            user_md,
            num_points=n_cycles if marker_per_cycle else 1,
            mode=mode,
        )
        monitors = (potentiostat.readback, potentiostat.current) if monitor_bias else ()
        body = photon_run(tcspc, sweeps(), _md, monitors=monitors)
        return (yield from restoring_bias(potentiostat, body))

    return run()
