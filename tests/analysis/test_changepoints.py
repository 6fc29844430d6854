"""Watkins & Yang change points on photon streams with known switch times.

Tolerances. Misplacing a change by dt into the level of rate a (the other level having rate b)
costs, on average, ``dt * (a ln(a/b) - (a - b))`` in log-likelihood; the inverse of the smaller of
the two drifts, ``scale``, sets the localisation error (about 1/|a - b| for a large contrast,
2 r / (a - b)**2 for a small one). A log-likelihood ratio of 20 or more is never crossed by
chance (probability ~ e**-20), so a found change point matches a true one within 20 scales.

Counts of events (missed, spurious, covered, false alarms) are binomial; each bound is the
expected count plus 3 binomial standard deviations (a 1e-3 false-failure rate).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import _changepoints as cp
from qd_bluesky.analysis._changepoints import critical_value, find_change_points

sys.path.insert(0, str(Path(__file__).parent))
from blinking_truth import TICK_S, piecewise_poisson  # noqa: E402


def localisation_scale(a: float, b: float) -> float:
    """Seconds of misplacement per unit of expected log-likelihood loss (the smaller drift)."""
    drift = min(a * math.log(a / b) - (a - b), b * math.log(b / a) - (b - a))
    return 1.0 / drift


def blinking(rates: tuple[float, float], mean_dwell_s: float, duration_s: float, seed: int):
    rng = np.random.default_rng(seed)
    switch = np.cumsum(rng.exponential(mean_dwell_s, int(3 * duration_s / mean_dwell_s) + 10))
    switch = switch[switch < duration_s]
    level_rates = [rates[i % 2] for i in range(len(switch) + 1)]
    return switch, piecewise_poisson(level_rates, switch, duration_s, seed=seed + 1)


def match(found_s: np.ndarray, truth_s: np.ndarray, window_s: float):
    """Nearest-truth distance of every found point and the truths with a found point nearby."""
    d = np.abs(found_s[:, None] - truth_s[None, :])
    nearest = d.argmin(axis=1)
    ok = d[np.arange(len(found_s)), nearest] <= window_s
    return nearest, ok, d.min(axis=0) <= window_s


@pytest.mark.parametrize(
    "rates, mean_dwell_s",
    [
        ((35e3, 5e3), 0.2),  # X0 <-> X+ blinking at 0 V: scale 49 us
        ((35e3, 23e3), 0.5),  # X0 <-> X- flickering: scale 0.44 ms
    ],
)
def test_change_points_found_and_located(rates, mean_dwell_s):
    duration = 60.0
    switch, ticks = blinking(rates, mean_dwell_s, duration, seed=7)
    cps = find_change_points(ticks, 0.95)
    scale = localisation_scale(*rates)
    window = 20 * scale
    found = cps.time * TICK_S
    nearest, ok, recalled = match(found, switch, window)

    # A change is resolvable when the dwells on both sides last 200 scales (10 ms at 35 vs 5 kc/s).
    # Binary segmentation finds a short blip only once it moves the split statistic of the whole
    # surrounding segment; blips of up to ~130 scales are missed in pairs (measured), a known
    # limit of the method, not of the test statistic.
    dwells = np.diff(np.concatenate(([0.0], switch, [duration])))
    resolvable = (dwells[:-1] > 200 * scale) & (dwells[1:] > 200 * scale)
    n_res = int(resolvable.sum())
    missed = n_res - int(recalled[resolvable].sum())
    # a resolvable change is missed only by chance: allow 1 % + 3 sd
    assert missed <= 0.01 * n_res + 3 * math.sqrt(0.01 * n_res), (missed, n_res)

    # spurious: each of the ~len(switch) homogeneous levels splits with probability <= 5 %
    spurious = int((~ok).sum())
    expected = 0.05 * (len(switch) + 1)
    assert spurious <= expected + 3 * math.sqrt(expected), (spurious, expected)

    # localisation of the matched points, in units of the scale
    err = np.abs(found[ok] - switch[nearest[ok]]) / scale
    assert np.median(err) < 2.0, np.median(err)  # an expected loss of 2 log-likelihood units
    assert np.quantile(err, 0.9) < 8.0, np.quantile(err, 0.9)

    # the confidence interval covers the truth at the stated rate (one change point each)
    first = np.unique(nearest[ok], return_index=True)[1]
    truth = switch[nearest[ok]][first]
    lo = cps.time_lo[ok][first] * TICK_S
    hi = cps.time_hi[ok][first] * TICK_S
    n = len(truth)
    covered = int(((lo <= truth) & (truth <= hi)).sum())
    assert covered >= 0.95 * n - 3 * math.sqrt(0.05 * 0.95 * n), (covered, n)


@pytest.mark.parametrize("confidence", [0.69, 0.90, 0.95, 0.99])
@pytest.mark.parametrize("rate_cps, duration_s", [(20e3, 1.0), (2e3, 1.0), (200e3, 0.5)])
def test_homogeneous_poisson_false_alarm_rate(confidence, rate_cps, duration_s):
    # The critical values come from a Monte Carlo of continuous times; these are whole ticks, and
    # the recursion and refinement run as in use. P(any change point) must equal 1 - confidence.
    draws = 300
    alarms = sum(
        len(find_change_points(piecewise_poisson([rate_cps], [], duration_s, seed=s), confidence))
        > 0
        for s in range(draws)
    )
    p = 1.0 - confidence
    sd = math.sqrt(draws * p * confidence)
    assert alarms <= draws * p + 3 * sd, (alarms, draws * p)
    # and not much more conservative than stated (the critical values are not inflated)
    assert alarms >= draws * p - 3 * sd, (alarms, draws * p)


def test_critical_values_grow_with_confidence_and_n():
    for n in (10, 1000, 10**6, 10**8):
        values = [critical_value(c, n) for c in (0.69, 0.90, 0.95, 0.99)]
        assert np.all(np.diff(values) > 0), values
    assert critical_value(0.95, 10**7) >= critical_value(0.95, 10**4)


def test_float_seconds_equal_ticks():
    _, ticks = blinking((35e3, 5e3), 0.2, 5.0, seed=3)
    a = find_change_points(ticks)
    b = find_change_points(ticks * TICK_S)
    np.testing.assert_array_equal(a.index, b.index)


def test_tiny_and_constant_streams():
    assert len(find_change_points(np.zeros(0, dtype=np.int64))) == 0
    assert len(find_change_points(np.arange(5))) == 0
    assert len(find_change_points(np.full(1000, 7))) == 0  # all in one tick: no evidence


@pytest.mark.parametrize(
    "times, confidence, match_text",
    [
        (np.arange(100), 0.8, "confidence must be one of"),
        (np.array([3, 2, 1]), 0.95, "non-decreasing"),
        (np.zeros((2, 2)), 0.95, "one-dimensional"),
    ],
)
def test_bad_arguments(times, confidence, match_text):
    with pytest.raises(ValueError, match=match_text):
        find_change_points(times, confidence)


def test_pruned_scan_decides_as_the_exhaustive_scan():
    # The block bounds must never skip the maximum: on segments with and without changes, shared
    # ticks and float times, the pruned scan gives the exhaustive scan's decision and photon.
    rng = np.random.default_rng(5)
    for trial in range(60):
        n_switch = int(rng.integers(0, 4))
        switch = np.sort(rng.uniform(0.0, 1.0, n_switch))
        rates = rng.choice([2e3, 5e3, 23e3, 35e3, 200e3], n_switch + 1)
        times = piecewise_poisson(list(rates), switch, 1.0, seed=trial)
        if trial % 3 == 1:
            times = times // int(rng.integers(2, 50))  # many shared ticks
        elif trial % 3 == 2:
            times = times * TICK_S + 1e3  # float seconds with an offset
        n = len(times) - 1
        if n < 10:
            continue
        h1, h2 = cp.harmonic_sums(n)
        log_left, log_right = np.empty(n + 1), np.empty(n + 1)
        cp.fill_log_left(times, 0, n, log_left)
        cp.fill_log_right(times, 0, n, log_right)
        k, w = cp.weighted_scan(times, 0, n, log_left, log_right, h1, h2)
        # at the critical value and at the maximum itself, where a tie must go the same way
        for critical in (critical_value(0.95, n), w - 1e-9, w):
            expected = k if k >= 0 and w > critical else -1
            for block in (4, 32):
                got = cp.pruned_split(times, 0, n, h1, h2, cp.table_error(h2), critical, block)
                assert got == expected, (trial, critical, block)
