"""Adaptive bias mapping: measure the dot where its lifetime and intensity change fastest."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Flyable, Movable, Readable, Reading
from bluesky.utils import CustomPlanMetadata, MsgGenerator
from bluesky_adaptive import optimize_step
from bluesky_adaptive.protocols import OptimizationProblem

from qd_bluesky.adaptive import BiasRecommender

from . import _validate as check
from ._md import PHOTON_STREAM, qd_block, read_photon_mode, start_md
from ._run import photon_run
from ._stubs import acquire_photons, mark_segment, restoring_bias, set_bias

#: Stream of the probe's reading after each dwell (one event per bias point).
ADAPTIVE_STREAM = "adaptive"


@check.checks_at_call
def adaptive_bias_map(
    tcspc: Flyable,
    potentiostat: Movable,
    probe: Readable,
    start: float,
    stop: float,
    dwell: float,
    *,
    tolerance: float = 0.05,
    initial_points: int = 11,
    max_points: int = 40,
    min_change: float = 0.2,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Map the dot's lifetime and intensity versus bias, measuring where they change fastest.

    One run, one photon file, like :func:`bias_steps`, but the biases are chosen as the run
    goes by :class:`qd_bluesky.adaptive.BiasRecommender` through bluesky-adaptive
    (``optimize_step``): first ``initial_points`` biases evenly from ``start`` to ``stop``,
    then, one at a time, the middle of the bias interval across which log-lifetime and
    log-intensity changed most, until every change is located within ``tolerance`` (or
    ``max_points`` biases are measured). At each bias: move and settle, a marker event in
    ``primary`` (a segment for the live analysis), photons for ``dwell`` seconds, then the
    ``probe`` is triggered and read into the ``adaptive`` stream: its intensity and lifetime
    of the photons since the marker are what the recommender sees. Afterwards the bias
    returns to where it was, also when the plan fails or is aborted.

    From 0 to -2 V in 1 s steps, transitions located within 50 mV::

        RE(adaptive_bias_map(tcspc, pot, dot_probe, 0.0, -2.0, 1.0))

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`).
    probe : Readable
        Intensity and lifetime since the last marker
        (:class:`qd_bluesky.callbacks.PhotonProbe`, ``dot_probe`` in a session).
    start, stop : float
        Ends of the bias range (V vs the quasi-reference); both must lie in the safe window.
    dwell : float
        Seconds of photons at each bias (after it has settled).
    tolerance : float, optional
        Width (V) to which a change is located (50 mV).
    initial_points : int, optional
        Biases of the first, uniform pass (>= 2).
    max_points : int, optional
        Most biases measured.
    min_change : float, optional
        Smallest change of log lifetime and log intensity (as a vector) worth locating;
        above what blinking does between two dwells (0.2).
    readables : sequence of Readable, optional
        Extra devices read in every marker event (e.g. the laser).
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
        ``start`` or ``stop`` outside the client-side safe window, at the call; outside the
        IOC's limits (read first in the plan), before the run opens and anything moves.
    ValueError
        Bad arguments (``dwell`` <= 0, ``start`` == ``stop``, ``max_points`` <
        ``initial_points``, a probe without ``trigger``, ...), at the call.
    """
    plan = "adaptive_bias_map"
    check.photon_card(tcspc, plan)
    check.potentiostat(potentiostat, plan)
    start = check.bias(potentiostat, start, "start", plan)
    stop = check.bias(potentiostat, stop, "stop", plan)
    if start == stop:
        raise ValueError(f"{plan}: start and stop are both {start:g} V; give a range")
    dwell = check.positive(dwell, "dwell", plan, "s")
    tolerance = check.positive(tolerance, "tolerance", plan, "V")
    initial_points = check.whole(initial_points, "initial_points", plan, minimum=2)
    max_points = check.whole(max_points, "max_points", plan, minimum=initial_points)
    min_change = check.positive(min_change, "min_change", plan)
    collect_period = check.positive(collect_period, "collect_period", plan, "s")
    _check_probe(probe, plan)
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, potentiostat, probe))
    user_md = check.metadata(md, plan)
    plan_args = {
        "tcspc": repr(tcspc),
        "potentiostat": repr(potentiostat),
        "probe": repr(probe),
        "start": start,
        "stop": stop,
        "dwell": dwell,
        "tolerance": tolerance,
        "initial_points": initial_points,
        "max_points": max_points,
        "min_change": min_change,
        "readables": list(map(repr, extra)),
        "collect_period": collect_period,
    }
    recommender = BiasRecommender(
        start,
        stop,
        tolerance_v=tolerance,
        initial_points=initial_points,
        max_points=max_points,
        min_change=min_change,
    )
    keys = {field: f"{probe.name}_{field}" for field in ("intensity_cps", "lifetime_ns", "photons")}

    def acquire(
        suggestions: Sequence[Mapping[str, Any]],
        actuators: Sequence[Any],
        sensors: Sequence[Any] | None = None,
        md: Mapping[str, Any] | None = None,
    ) -> MsgGenerator[list[dict[str, Any]]]:
        # bluesky-adaptive's AcquisitionPlan, inside the open run: its "uid" is the outcomes.
        outcomes = []
        for suggestion in suggestions:
            bias = float(suggestion["bias"])
            yield from set_bias(potentiostat, bias)
            marker = yield from mark_segment(tcspc, potentiostat, extra)
            yield from acquire_photons(tcspc, dwell, collect_period)
            # Announce the dwell's last rows: the probe reads up to the last announced row.
            yield from bps.collect(tcspc, name=PHOTON_STREAM, return_payload=False)
            reading = yield from bps.trigger_and_read([probe], name=ADAPTIVE_STREAM)
            outcomes.append(
                {
                    "_id": suggestion["_id"],
                    "bias_v": _value(marker, potentiostat.readback.name, bias),
                    **{field: _value(reading, key, math.nan) for field, key in keys.items()},
                }
            )
        return outcomes

    def evaluate(
        outcomes: list[dict[str, Any]], suggestions: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        return outcomes

    problem = OptimizationProblem(
        optimizer=recommender,
        actuators=[potentiostat],  # type: ignore[list-item]
        sensors=[probe],
        evaluation_function=evaluate,
        acquisition_plan=acquire,  # type: ignore[arg-type]
    )

    def steps() -> MsgGenerator[None]:
        while not recommender.should_stop()[0]:
            yield from optimize_step(problem, 1)

    def run() -> MsgGenerator[str]:
        yield from check.bias_window(potentiostat, [("start", start), ("stop", stop)], plan)
        mode = yield from read_photon_mode(tcspc)
        _md = start_md(
            plan,
            plan_args,
            detectors=[tcspc, probe, *extra],
            motors=[potentiostat],
            num_points=None,
            user_md=user_md,
            hints={"dimensions": [[[potentiostat.readback.name], "primary"]]},
            qd=qd_block(tcspc, potentiostat, segments="steps", mode=mode),
        )
        return (yield from restoring_bias(potentiostat, photon_run(tcspc, steps(), _md)))

    return run()


def _check_probe(probe: Any, plan: str) -> None:
    """``probe`` is a detector that can be triggered and read (a PhotonProbe)."""
    missing = [a for a in ("name", "trigger", "read", "describe") if not hasattr(probe, a)]
    if missing:
        raise ValueError(
            f"{plan}: probe {probe!r} is not a triggerable detector (no {', '.join(missing)}); "
            "pass the session's dot_probe (qd_bluesky.callbacks.PhotonProbe)"
        )


def _value(readings: Mapping[str, Reading] | None, key: str, default: float) -> float:
    """The value of ``key`` in a plan's readings (None without a RunEngine)."""
    if not readings or key not in readings:
        return default
    return float(readings[key]["value"])
