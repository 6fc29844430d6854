"""Adaptive versus uniform bias mapping: points and time to locate each charge-state transition.

The dot is the simulator's preset (``qd1`` by default), measured at static biases from 0 V to
the safe window's end (-2 V). Truth, from the model (``qd_bluesky.sim.steady_state``): transition
k (X(k-1)- -> Xk-, X0 -> X- first) lies at the bias V_k where the dot's mean charge crosses
-(k - 1/2); the dot's mean lifetime there, tau_k, marks it. A method *locates* transition k when
every crossing of tau_k by its measured log-lifetime curve (straight lines between its points)
lies within ``--tolerance`` (50 mV) of V_k.

Each bias point is measured as the instrument would after ``--dwell`` seconds: N ~ Poisson(rate x
dwell) photons, intensity N / dwell, lifetime the model's mean lifetime scattered by 1/sqrt(N)
in log (a mono-exponential fit's shot noise); ``--scatter`` adds a relative scatter to both for
blinking and flicker (the instrument's 1 s dwells near X0 -> X- scatter by ~5 %).

This runs the recommender against the sim physics directly, not over Channel Access: the
references and the repetitions (20 of each method, 79 uniform grids) would take hours of IOC
time. The plan itself runs on the simulated instrument in ``tests/plans/test_adaptive_plan.py``.

Methods:

* ``uniform``, two references: the grid one would choose without knowing the dot, spaced by
  twice the tolerance (a step anywhere between two points is placed at their midpoint, the
  standard the recommender's stop applies: 21 points for 0 to -2 V), and the sparsest grid
  that happens to work, chosen knowing the truth: the smallest n that locates every
  transition in at least 90 % of the repetitions, as does every larger n up to 81;
* ``adaptive``: :class:`qd_bluesky.adaptive.BiasRecommender` (``--initial`` uniform points,
  then refinement to ``--tolerance``), until its own stop criterion.

Time per method: points x (dwell + ``--overhead``), plus every move at the potentiostat IOC's
default slew rate (10 V/s) and its settle time (50 ms). The overhead per point (marker, last
collect, the probe's fit, Channel Access) measured with the plan on the simulated instrument
is 0.5-1 s under load; 0.7 s by default.

Run: ``python benchmarks/bench_adaptive.py [--preset qd1] [--dwell 1] [--scatter 0.05] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from qd_bluesky.adaptive import BiasRecommender, level_crossings
from qd_bluesky.sim import SAFE_BIAS_LOW_V, steady_state

#: The potentiostat IOC's defaults (iocs/_potentiostat.py).
SLEW_V_PER_S = 10.0
SETTLE_S = 0.05
SUCCESS_RATE = 0.9


class Model:
    """The preset's noiseless mean lifetime, rate and charge versus bias, on a 1 mV grid."""

    def __init__(self, preset: str, low_v: float, high_v: float) -> None:
        self.bias = np.linspace(low_v, high_v, int(round((high_v - low_v) * 1000)) + 1)
        states = [steady_state(preset, float(v)) for v in self.bias]
        self.tau_ns = np.array([s.mean_lifetime_s * 1e9 for s in states])
        self.rate_cps = np.array([s.rate_cps for s in states])
        self.charge = np.array([s.mean_charge for s in states])

    def at(self, v: float) -> tuple[float, float]:
        return (
            float(np.interp(v, self.bias, self.tau_ns)),
            float(np.interp(v, self.bias, self.rate_cps)),
        )

    def transitions(self, margin_v: float) -> list[tuple[int, float, float]]:
        """(k, V_k, tau_k) of every transition at least ``margin_v`` inside the range."""
        out = []
        for k in range(1, 30):
            target = -(k - 0.5)
            # The last crossing from above (X+ makes the charge wander near -1 V first).
            above = np.flatnonzero(self.charge > target)
            if len(above) == 0 or above[0] == 0 and len(above) == len(self.charge):
                break
            i = above[0]  # bias ascending: the first index still above is the crossing
            if i == 0:
                break
            v = float(
                np.interp(target, self.charge[i - 1 : i + 1][::-1], self.bias[i - 1 : i + 1][::-1])
            )
            if v - self.bias[0] < margin_v:
                break
            out.append((k, v, self.at(v)[0]))
        return out


def measure(
    model: Model, v: float, dwell: float, rng: np.random.Generator, scatter: float = 0.0
) -> dict[str, float]:
    """One dwell: shot noise, plus ``scatter`` (relative) on both quantities for blinking."""
    tau, rate = model.at(v)
    n = float(rng.poisson(rate * dwell))
    tau_meas = tau * math.exp(rng.normal(0.0, math.hypot(1.0 / math.sqrt(max(n, 1.0)), scatter)))
    rate_meas = n / dwell * math.exp(rng.normal(0.0, scatter)) if scatter else n / dwell
    return {"bias_v": v, "intensity_cps": rate_meas, "lifetime_ns": tau_meas, "photons": n}


def located(
    points: list[dict[str, float]], truth, tolerance: float, *, last: bool = False
) -> list[bool]:
    """Per transition: every crossing of its lifetime within ``tolerance`` of it (``last``:
    the crossing at the most negative bias, from where the dot only charges further; blinking
    on the instrument can dip a dwell's lifetime below tau_1 near -1 V)."""
    bias = [p["bias_v"] for p in points]
    log_tau = np.log([p["lifetime_ns"] for p in points])
    out = []
    for _, v_k, tau_k in truth:
        crossings = level_crossings(bias, log_tau, math.log(tau_k))
        if last and len(crossings):
            crossings = crossings[:1]  # ascending bias: the first is the most negative
        out.append(len(crossings) > 0 and bool(np.all(np.abs(crossings - v_k) <= tolerance)))
    return out


def instrument_time(biases: list[float], dwell: float, overhead: float) -> float:
    moves = np.abs(np.diff([0.0, *biases]))
    return float(len(biases) * (dwell + SETTLE_S + overhead) + moves.sum() / SLEW_V_PER_S)


def run_uniform(model, truth, n, args, rng):
    biases = [float(v) for v in np.linspace(args.high, args.low, n)]
    points = [measure(model, v, args.dwell, rng, args.scatter) for v in biases]
    return located(points, truth, args.tolerance), instrument_time(
        biases, args.dwell, args.overhead
    )


def run_adaptive(model, truth, args, rng):
    rec = BiasRecommender(
        args.high,
        args.low,
        tolerance_v=args.tolerance,
        initial_points=args.initial,
        min_change=args.min_change,
    )
    biases, points = [], []
    settled = 0  # points after which every transition stays located (an oracle's count)
    while not rec.should_stop()[0]:
        (s,) = rec.suggest(1)
        biases.append(s["bias"])
        points.append(measure(model, s["bias"], args.dwell, rng, args.scatter))
        rec.ingest([{"_id": s["_id"], **points[-1]}])
        if not all(located(points, truth, args.tolerance)):
            settled = len(points) + 1
    ok = located(points, truth, args.tolerance)
    return ok, instrument_time(biases, args.dwell, args.overhead), biases, min(settled, len(points))


def mono_levels(preset: str, truth) -> list[float]:
    """tau_k as the probe reads it: the mono-exponential fit of the model's expected decay at
    V_k (the probe fits one exponential to a mixture of states; the model's tau_k is their
    photon-weighted mean)."""
    from qd_bluesky.analysis import PhotonSettings, fit_decay
    from qd_bluesky.sim import REFERENCE_REP_RATE_HZ, Detection
    from qd_bluesky.sim._predict import expected_decay_histogram

    det = Detection()
    out = []
    for _, v, _ in truth:
        hist = expected_decay_histogram(preset, v, duration_s=100.0, detection=det)
        fit = fit_decay(
            hist,
            det.microtime_unit_s,
            period_s=1.0 / REFERENCE_REP_RATE_HZ,
            irf_fwhm_s=PhotonSettings().irf_fwhm_s,
        )
        out.append(float(fit.tau_s[0]) * 1e9)
    return out


def run_instrument(args, truth) -> dict:
    """Each method once, as the plan on the simulated instrument over Channel Access.

    The uniform reference is the same plan with its uniform pass only (``initial_points`` =
    ``max_points`` = n): the same moves, markers, dwells and probe per point.
    """
    import tempfile
    from pathlib import Path

    from bluesky import RunEngine

    from qd_bluesky.callbacks import PhotonProbe, subscribe_live_analysis
    from qd_bluesky.devices import connect_instrument
    from qd_bluesky.iocs import SimulatedInstrumentProcess
    from qd_bluesky.plans import adaptive_bias_map
    from qd_bluesky.sim import Sample

    levels = mono_levels(args.preset, truth)
    out: dict = {"probe_levels_ns": [round(t, 3) for t in levels]}
    with tempfile.TemporaryDirectory() as tmp:
        ioc = SimulatedInstrumentProcess(Path(tmp), seed=args.seed, preset=args.preset).start()
        try:
            inst = connect_instrument(ioc.prefix, timeout=20)
            home = Sample(preset=args.preset, seed=args.seed).home_um
            inst.stage.x.set(home[0]).wait(10)
            inst.stage.y.set(home[1]).wait(10)
            RE = RunEngine({})  # noqa: N806
            docs: list = []
            RE.subscribe(lambda name, doc: docs.append((name, doc)))
            probe = PhotonProbe()
            RE.subscribe(probe)
            # the live analyzer reads the same file, as in a session
            analyzer = subscribe_live_analysis(RE, lambda name, doc: None)
            n_uniform = int(math.ceil(round((args.high - args.low) / (2 * args.tolerance), 9))) + 1
            methods = {
                "uniform": {"initial_points": n_uniform, "max_points": n_uniform},
                "adaptive": {"initial_points": args.initial},
            }
            for method, kwargs in methods.items():
                docs.clear()
                inst.pot.set(args.high).wait(30)
                t0 = time.monotonic()
                RE(
                    adaptive_bias_map(
                        inst.tcspc,
                        inst.pot,
                        probe,
                        args.high,
                        args.low,
                        args.dwell,
                        tolerance=args.tolerance,
                        min_change=args.min_change,
                        **kwargs,
                    )
                )
                wall = time.monotonic() - t0
                names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
                events = [d for n, d in docs if n == "event"]
                biases = [e["data"]["pot"] for e in events if names[e["descriptor"]] == "primary"]
                taus = [
                    e["data"]["dot_probe_lifetime_ns"]
                    for e in events
                    if names[e["descriptor"]] == "adaptive"
                ]
                points = [
                    {"bias_v": v, "lifetime_ns": t} for v, t in zip(biases, taus, strict=True)
                ]
                probe_truth = [(k, v, lv) for (k, v, _), lv in zip(truth, levels, strict=True)]
                ok = located(points, probe_truth, args.tolerance, last=True)
                out[method] = {
                    "points": len(biases),
                    "wall_s": round(wall, 1),
                    "located": ok,
                    "biases": [round(v, 4) for v in biases],
                }
            analyzer.close(60)
            for device in inst:
                device.destroy()
        finally:
            ioc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qd1")
    parser.add_argument("--low", type=float, default=SAFE_BIAS_LOW_V)
    parser.add_argument("--high", type=float, default=0.0)
    parser.add_argument("--dwell", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--overhead", type=float, default=0.2, help="s per point besides dwell")
    parser.add_argument("--initial", type=int, default=11)
    parser.add_argument("--min-change", type=float, default=0.2, help="the recommender's")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--scatter",
        type=float,
        default=0.0,
        help="extra relative scatter of lifetime and intensity per dwell (blinking; the "
        "instrument's 1 s dwells near X0 -> X- show ~0.05)",
    )
    parser.add_argument("--max-uniform", type=int, default=81)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--instrument",
        action="store_true",
        help="also run each method once as the plan on the simulated IOCs (~2 min)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    model = Model(args.preset, args.low, args.high)
    truth = model.transitions(margin_v=args.tolerance)
    rng = np.random.default_rng(args.seed)

    uniform = {}
    for n in range(3, args.max_uniform + 1):
        runs = [run_uniform(model, truth, n, args, rng) for _ in range(args.repeats)]
        uniform[n] = {
            "success": float(np.mean([all(ok) for ok, _ in runs])),
            "time_s": float(np.mean([t for _, t in runs])),
        }
    good = [
        n
        for n in uniform
        if all(u["success"] >= SUCCESS_RATE for m, u in uniform.items() if m >= n)
    ]
    n_ref = min(good) if good else None
    # Without knowing the dot, a uniform grid places a transition only to half its spacing (a
    # step may sit anywhere between two points; its midpoint is the estimate): spacing = twice
    # the tolerance, the standard the recommender's own stop applies.
    n_bracket = int(math.ceil(round((args.high - args.low) / (2 * args.tolerance), 9))) + 1
    bracket_biases = [float(v) for v in np.linspace(args.high, args.low, n_bracket)]

    runs = [run_adaptive(model, truth, args, rng) for _ in range(args.repeats)]
    adaptive = {
        "points_mean": float(np.mean([len(r[2]) for r in runs])),
        "points_max": int(max(len(r[2]) for r in runs)),
        "time_s": float(np.mean([r[1] for r in runs])),
        "success": float(np.mean([all(r[0]) for r in runs])),
        "per_transition_success": [float(x) for x in np.mean([r[0] for r in runs], axis=0)],
        "points_until_located_mean": float(np.mean([r[3] for r in runs])),
        "example_biases": [round(v, 4) for v in sorted(runs[0][2], reverse=True)],
    }
    result = {
        "preset": args.preset,
        "range_v": [args.high, args.low],
        "dwell_s": args.dwell,
        "overhead_s": args.overhead,
        "scatter": args.scatter,
        "min_change": args.min_change,
        "tolerance_v": args.tolerance,
        "repeats": args.repeats,
        "transitions": [
            {"k": k, "bias_v": round(v, 4), "lifetime_ns": round(tau, 3)} for k, v, tau in truth
        ],
        "uniform": {
            "points": n_ref,
            "time_s": uniform[n_ref]["time_s"] if n_ref else None,
            "success": uniform[n_ref]["success"] if n_ref else None,
            "success_by_points": {n: round(u["success"], 2) for n, u in uniform.items()},
            "bracketing_points": n_bracket,
            "bracketing_time_s": instrument_time(bracket_biases, args.dwell, args.overhead),
        },
        "adaptive": adaptive,
        # adaptive over uniform: against the grid one would choose without knowing the dot,
        # and against the sparsest grid that happens to work (chosen knowing the truth)
        "points_ratio": adaptive["points_mean"] / n_bracket,
        "time_ratio": adaptive["time_s"]
        / instrument_time(bracket_biases, args.dwell, args.overhead),
        "points_ratio_vs_fewest": adaptive["points_mean"] / n_ref if n_ref else None,
        "time_ratio_vs_fewest": adaptive["time_s"] / uniform[n_ref]["time_s"] if n_ref else None,
        "wall_s": time.perf_counter() - t0,
    }
    if args.instrument:
        result["instrument"] = run_instrument(args, truth)
    if not args.json:
        print(f"transitions of {args.preset} in {args.high:g}..{args.low:g} V:")
        for k, v, tau in truth:
            print(f"  k={k}: {v:+.3f} V (tau {tau:.2f} ns)")
        u, a = result["uniform"], adaptive
        print(
            f"uniform, spaced by twice the tolerance (no prior knowledge): {n_bracket} points, "
            f"{u['bracketing_time_s']:.1f} s"
        )
        if n_ref:
            print(
                f"uniform, fewest points that work (chosen knowing the truth): {n_ref} points, "
                f"{u['time_s']:.1f} s, all located in {u['success']:.0%} of {args.repeats}"
            )
        print(
            f"adaptive, own stop: {a['points_mean']:.1f} points (max {a['points_max']}), "
            f"{a['time_s']:.1f} s, all located in {a['success']:.0%}; all located (and staying "
            f"so) after {a['points_until_located_mean']:.1f} points"
        )
        if args.instrument:
            for method in ("uniform", "adaptive"):
                r = result["instrument"][method]
                print(
                    f"instrument, {method}: {r['points']} points, {r['wall_s']} s of plan "
                    f"(under load), transitions located: {r['located']}"
                )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
