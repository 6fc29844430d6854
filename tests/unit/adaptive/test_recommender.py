"""The bias recommender against a synthetic dot whose transitions are known exactly.

The response: log lifetime and log intensity fall by fixed steps at known biases, each a
logistic of width ``WIDTH_V`` (as thermal charging smooths a transition), measured with the
shot noise of ``PHOTONS`` photons per point. Transitions are read back as the midpoints of the
intervals that hold a change.
"""

import math

import numpy as np
import pytest

from qd_bluesky.adaptive import BiasRecommender, level_crossings

TRANSITIONS_V = (-0.62, -1.27, -1.41)
STEPS = ((0.9, 0.3), (0.5, 0.4), (0.5, 0.4))  # (log tau, log I) drop at each transition
WIDTH_V = 0.008
PHOTONS = 20_000
TOLERANCE_V = 0.05


def response(v: float) -> tuple[float, float]:
    """Noiseless (lifetime ns, intensity cps) of the synthetic dot at bias ``v``."""
    log_tau, log_rate = math.log(100.0), math.log(30_000.0)
    for v0, (d_tau, d_rate) in zip(TRANSITIONS_V, STEPS, strict=True):
        filled = 1.0 / (1.0 + math.exp((v - v0) / WIDTH_V))  # 1 below v0 (more negative)
        log_tau -= d_tau * filled
        log_rate -= d_rate * filled
    return math.exp(log_tau), math.exp(log_rate)


def measured(v: float, rng: np.random.Generator) -> dict[str, float]:
    tau, rate = response(v)
    noise = 1 / math.sqrt(PHOTONS)
    return {
        "bias_v": v,
        "lifetime_ns": tau * math.exp(rng.normal(0, noise)),
        "intensity_cps": rate * math.exp(rng.normal(0, noise)),
        "photons": PHOTONS,
    }


def run(rec: BiasRecommender, rng: np.random.Generator) -> int:
    n = 0
    while not rec.should_stop()[0]:
        suggestions = rec.suggest(1)
        assert len(suggestions) == 1
        (s,) = suggestions
        rec.ingest([{"_id": s["_id"], **measured(s["bias"], rng)}])
        n += 1
    return n


@pytest.mark.parametrize("seed", range(5))
def test_transitions_located_within_tolerance_with_fewer_points_than_uniform(seed):
    rng = np.random.default_rng(seed)
    rec = BiasRecommender(0.0, -2.0, tolerance_v=TOLERANCE_V, initial_points=9)
    n = run(rec, rng)
    assert rec.should_stop() == (True, "every change located within 50 mV")

    changes = rec.changes()
    for v0 in TRANSITIONS_V:
        # The change that holds the transition places it (its midpoint) within the tolerance.
        (holder,) = [c for c in changes if c.low_v <= v0 <= c.high_v]
        assert holder.uncertainty_v <= TOLERANCE_V
        assert abs(holder.midpoint_v - v0) <= TOLERANCE_V
    # No change where the dot does not change (shot noise is 40 times below the steps).
    for c in changes:
        assert min(abs(c.midpoint_v - v0) for v0 in TRANSITIONS_V) <= c.width_v
    # A step is sharper than any grid here: to place it at an interval's midpoint within the
    # tolerance a uniform grid must space its points by twice the tolerance, 21 points from
    # 0 to -2 V.
    assert n < 21


def test_a_uniform_grid_of_as_many_points_does_not_place_the_steps():
    """The comparison above is fair: with as many uniform points as the recommender used,
    the intervals that hold the sharp steps are too wide to place them to the tolerance."""
    rng = np.random.default_rng(0)
    n = run(BiasRecommender(0.0, -2.0, tolerance_v=TOLERANCE_V, initial_points=9), rng)
    uniform = BiasRecommender(0.0, -2.0, tolerance_v=TOLERANCE_V, initial_points=n, max_points=n)
    run(uniform, rng)
    holders = [c for c in uniform.changes() if any(c.low_v <= v <= c.high_v for v in TRANSITIONS_V)]
    assert len(holders) >= len(TRANSITIONS_V)
    assert min(c.width_v for c in holders) / 2 > TOLERANCE_V


def test_a_straight_ramp_is_not_refined():
    """Where log lifetime falls linearly, straight lines between the points already place
    every level: the uniform pass is enough."""
    rec = BiasRecommender(0.0, -1.0, tolerance_v=TOLERANCE_V, initial_points=5)
    while not rec.should_stop()[0]:
        (s,) = rec.suggest(1)
        v = s["bias"]
        rec.ingest(
            [
                {
                    "_id": s["_id"],
                    "lifetime_ns": 100 * math.exp(2 * v),
                    "intensity_cps": 1e4,
                    "photons": 1e6,
                }
            ]
        )
    assert len(rec.points) == 5
    bias = [p.bias_v for p in rec.points]
    log_tau = [math.log(p.lifetime_ns) for p in rec.points]
    assert level_crossings(bias, log_tau, math.log(100) - 1.3) == pytest.approx([-0.65])


def test_flat_noise_is_not_a_change():
    rng = np.random.default_rng(3)
    rec = BiasRecommender(0.0, -1.0, initial_points=6)
    while not rec.should_stop()[0]:
        (s,) = rec.suggest(1)
        n = 2000
        rec.ingest(
            [
                {
                    "_id": s["_id"],
                    "lifetime_ns": 100 * math.exp(rng.normal(0, n**-0.5)),
                    "intensity_cps": 1e4 * math.exp(rng.normal(0, n**-0.5)),
                    "photons": n,
                }
            ]
        )
    assert len(rec.points) == 6 and rec.changes() == []


def test_max_points_stops_and_failures_count():
    rec = BiasRecommender(0.0, -1.0, initial_points=3, max_points=4)
    suggestions = rec.suggest(2)
    assert [s["bias"] for s in suggestions] == [0.0, -0.5]
    rec.register_failures(suggestions[:1])
    rec.ingest(
        [{"_id": suggestions[1]["_id"], "lifetime_ns": 10, "intensity_cps": 1e3, "photons": 1e4}]
    )
    (last,) = rec.suggest(5)  # what is left of the uniform pass
    assert last["bias"] == -1.0
    rec.ingest([{"_id": last["_id"], "lifetime_ns": 1, "intensity_cps": 1e2, "photons": 1e4}])
    assert rec.should_stop() == (False, None)
    (mid,) = rec.suggest(5)  # 4 - 2 measured - 1 failed: room for one
    assert mid["bias"] == -0.75
    rec.ingest([{"_id": mid["_id"], "lifetime_ns": 3, "intensity_cps": 3e2, "photons": 1e4}])
    assert rec.should_stop() == (True, "4 biases measured (max_points)")


def test_a_lifetime_that_failed_counts_by_intensity():
    rec = BiasRecommender(0.0, -1.0, initial_points=2)
    for s, rate in zip(rec.suggest(2), (1e4, 2e3), strict=True):
        rec.ingest(
            [{"_id": s["_id"], "lifetime_ns": math.nan, "intensity_cps": rate, "photons": 1e4}]
        )
    (change,) = rec.changes()
    assert change.change == pytest.approx(math.log(5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_v": 0.0, "stop_v": 0.0}, "start_v and stop_v are both 0.0 V"),
        ({"start_v": math.nan, "stop_v": -1.0}, "start_v must be finite"),
        ({"start_v": 0, "stop_v": -1, "tolerance_v": 0}, "tolerance_v must be > 0"),
        ({"start_v": 0, "stop_v": -1, "initial_points": 1}, "initial_points must be"),
        ({"start_v": 0, "stop_v": -1, "max_points": 3}, r"max_points must be .* \(11\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BiasRecommender(**kwargs)


def test_level_crossings_interpolates_and_sorts():
    assert level_crossings([-1.0, 0.0, -0.5], [0.0, 2.0, 1.0], 0.5) == pytest.approx([-0.75])
    assert level_crossings([0, 1, 2], [0, 1, 0], 0.5) == pytest.approx([0.5, 1.5])


def test_a_bias_measured_again_counts_by_its_last_measurement():
    rec = BiasRecommender(0.0, -1.0, initial_points=2)
    for s in rec.suggest(2):
        rec.ingest([{"_id": s["_id"], "lifetime_ns": 100, "intensity_cps": 1e4, "photons": 1e4}])
    rec.ingest([{"bias_v": -1.0, "lifetime_ns": 10, "intensity_cps": 1e4, "photons": 1e4}])
    (interval,) = rec.intervals()
    assert interval.change == pytest.approx(math.log(10))
