"""On/off dwells and the Clauset-Shalizi-Newman power law, against draws of known exponent.

Tolerances. Over R repeated draws, the mean exponent has the standard error sd / sqrt(R) and the
maximum-likelihood exponent the small-sample bias (alpha - 1) / (n - 1); means are asserted to
4 SE plus that bias. The sample standard deviation of R draws has a relative standard error of
1 / sqrt(2 R) (4.1 % for R = 300); the ratio stated-SE / scatter is asserted to 4 of those.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis._dwell import blinking_statistics, fit_power_law, segment_blinking
from qd_bluesky.analysis._levels import find_levels

sys.path.insert(0, str(Path(__file__).parent))
from blinking_truth import power_law_sample, telegraph  # noqa: E402
from synthetic import generate  # noqa: E402

DRAWS = 300
N_DWELLS = 500
REL_SE_OF_SD = 1.0 / math.sqrt(2 * DRAWS)
# With xmin chosen by the KS distance, alpha scatters more than (alpha - 1) / sqrt(n) says, since
# that formula holds xmin fixed (CSN 2009, section 3.3): measured scatter / stated SE = 1.19 at
# n = 500 for alpha = 1.5 .. 2.5.
KS_XMIN_INFLATION = 1.19


def repeated_fits(alpha: float, **kw) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(alpha * 100))
    fits = [
        fit_power_law(power_law_sample(alpha, 1e-3, N_DWELLS, rng), truncated=False, **kw)
        for _ in range(DRAWS)
    ]
    return np.array([f.alpha for f in fits]), np.array([f.alpha_stderr for f in fits])


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
def test_alpha_and_its_stderr_with_known_xmin(alpha):
    a, se = repeated_fits(alpha, xmin=1e-3)
    bias = (alpha - 1) / (N_DWELLS - 1)
    assert abs(a.mean() - alpha) < 4 * a.std() / math.sqrt(DRAWS) + bias, a.mean()
    assert abs(se.mean() / a.std() - 1.0) < 4 * REL_SE_OF_SD, se.mean() / a.std()


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
def test_alpha_with_xmin_by_ks(alpha):
    a, se = repeated_fits(alpha)
    bias = (alpha - 1) / (N_DWELLS - 1)
    assert abs(a.mean() - alpha) < 4 * a.std() / math.sqrt(DRAWS) + bias, a.mean()
    ratio = KS_XMIN_INFLATION * se.mean() / a.std()
    assert abs(ratio - 1.0) < 4 * REL_SE_OF_SD, ratio
    # each draw within 4 (inflated) stated SE
    assert np.all(np.abs(a - alpha) < 4 * KS_XMIN_INFLATION * se)


def test_truncated_power_law_is_preferred_only_when_true():
    rng = np.random.default_rng(9)
    # truncated: thin a power law by exp(-x / 0.1 s)
    x = power_law_sample(1.5, 1e-3, 20000, rng)
    x = x[rng.uniform(size=len(x)) < np.exp(-(x - 1e-3) / 0.1)][:1000]
    fit = fit_power_law(x, xmin=1e-3)
    assert fit.p_value < 1e-3
    assert abs(fit.truncated_alpha - 1.5) < 4 * (fit.truncated_alpha - 1) / math.sqrt(fit.n_tail)
    # pure power laws: p < 0.05 at most at the nominal rate (binomial, 3 sd)
    draws = 40
    small = sum(
        fit_power_law(power_law_sample(2.0, 1e-3, 500, rng), xmin=1e-3).p_value < 0.05
        for _ in range(draws)
    )
    assert small <= 0.05 * draws + 3 * math.sqrt(draws * 0.05 * 0.95)


def test_dwells_of_a_blinking_recording():
    # on and off dwells from pure power laws above 20 ms (resolvable: 200 change-point scales is
    # 10 ms at 35 vs 5 kc/s); a 120 s recording holds ~400 of each
    alpha_on, alpha_off = 2.2, 1.7
    starts, states = telegraph(
        120.0, alpha_on=alpha_on, alpha_off=alpha_off, xmin_s=0.02, xmax_s=None, seed=21
    )
    syn = generate(120.0, [(35e3, 125e-9), (5e3, 5e-9)], switches=(starts, states), seed=22)
    lv = find_levels(syn.macrotime, syn.period_s)
    stats = blinking_statistics(lv)
    assert 5.3e3 < stats.threshold_cps < 35e3
    # the dwells found are the true ones (the first and last are cut by the recording)
    true = np.diff(np.append(starts, 120.0))[1:-1]
    true_on, true_off = true[states[1:-1] == 0], true[states[1:-1] == 1]
    for found, truth, fit, alpha in (
        (stats.on_s, true_on, stats.on, alpha_on),
        (stats.off_s, true_off, stats.off, alpha_off),
    ):
        assert abs(len(found) - len(truth)) <= 0.02 * len(truth) + 2
        # each found dwell is its true dwell up to the change-point error (ms)
        n = min(len(found), len(truth))
        assert np.median(np.abs(np.sort(found)[:n] - np.sort(truth)[:n])) < 1e-3
        se = KS_XMIN_INFLATION * fit.alpha_stderr
        assert abs(fit.alpha - alpha) < 4 * se + (alpha - 1) / (fit.n_tail - 1), (fit.alpha, se)


@pytest.mark.parametrize(
    "dwells, kw, match_text",
    [
        ([1.0, -1.0], {}, "positive, finite"),
        ([1.0, 2.0], dict(xmin=0.0), "xmin must be positive"),
        ([1.0, 2.0], dict(min_tail=1), "min_tail"),
    ],
)
def test_bad_arguments(dwells, kw, match_text):
    with pytest.raises(ValueError, match=match_text):
        fit_power_law(dwells, **kw)


def test_too_few_dwells_give_none():
    assert fit_power_law([1.0, 2.0, 3.0]) is None


def test_segment_blinking_follows_the_truth():
    # blinking in the first 20 s, none in the last 20 s (the -1.4 V suppression)
    rng = np.random.default_rng(41)
    switch = np.cumsum(rng.exponential(0.2, 400))
    switch = switch[switch < 20.0]
    states = np.arange(len(switch) + 1) % 2
    starts = np.concatenate(([0.0], switch))
    syn = generate(40.0, [(35e3, 125e-9), (5e3, 5e-9)], switches=(starts, states), seed=42)
    lv = find_levels(syn.macrotime, syn.period_s)
    seg = segment_blinking(lv, [0.0, 20.0, 40.0])
    truth = syn.state_fraction(np.array([0.0, 20.0, 40.0]))
    # fractions: each change point misplaces ~50 us (test_changepoints.py), 100 of them in 20 s
    np.testing.assert_allclose(seg.time_fraction[:, :2], truth, atol=100 * 5 * 50e-6 / 20.0)
    # switching rate: ~100 switches in 20 s; missed short blinks (dwells < 10 ms, 5 % of the
    # exponential dwells of 0.2 s mean) and spurious ones (5 % per level) at most 3 sd each way
    n_true = len(switch)
    tol = 0.05 * n_true + 3 * math.sqrt(n_true * 0.05) + 3 * math.sqrt(n_true * 0.05)
    assert abs(seg.switching_rate_hz[0] * 20.0 - n_true) < tol
    assert seg.switching_rate_hz[1] == 0.0


def test_segment_blinking_rejects_bad_edges():
    syn = generate(2.0, [(35e3, 125e-9)], seed=1)
    lv = find_levels(syn.macrotime, syn.period_s)
    with pytest.raises(ValueError, match="increasing"):
        segment_blinking(lv, [1.0, 1.0])
