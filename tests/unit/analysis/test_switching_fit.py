"""The switching stream's pieces on synthetic counts: the kernel's filing against a direct
count, the exposure of each bin, and the response fit against a known time constant."""

import math

import numpy as np
import pytest

from qd_bluesky.analysis._switching import (
    SwitchingAccumulator,
    fit_step_response,
    step_exposure,
)


def test_photons_are_filed_by_the_time_since_their_step():
    rng = np.random.default_rng(1)
    marker_ts = np.arange(10) * 100  # a step every 100 units, alternating polarity
    marker_pol = np.array([-1] + [k % 2 for k in range(1, 10)])
    ts = np.sort(rng.integers(0, 1000, 5000))
    marker_row = np.searchsorted(ts, marker_ts, side="left")
    micro = rng.integers(0, 4000, len(ts)).astype(np.uint16)
    whole = SwitchingAccumulator(10, 10)
    whole.add(0, ts, micro, marker_row, marker_ts, marker_pol)
    parts = SwitchingAccumulator(10, 10)
    for a in range(0, len(ts), 777):
        parts.add(a, ts[a : a + 777], micro[a : a + 777], marker_row, marker_ts, marker_pol)
    assert np.array_equal(whole.counts, parts.counts)
    assert np.array_equal(whole.micro_sum, parts.micro_sum)
    k = np.searchsorted(marker_ts, ts, side="right") - 1
    pol, b = marker_pol[k], (ts - marker_ts[k]) // 10
    for p in (0, 1):
        expected = np.bincount(b[pol == p], minlength=10)
        assert np.array_equal(whole.counts[p], expected)
    exposure = step_exposure(marker_ts, marker_pol, int(ts[-1]), 10, 10)
    assert exposure[0].tolist() == [4] * 10 and exposure[1].tolist() == [5] * 10


@pytest.mark.parametrize("tau_s", [0.9e-6, 4.5e-6])
def test_the_fit_recovers_a_known_time_constant(tau_s):
    rng = np.random.default_rng(7)
    t = np.arange(125) * 0.4e-6
    exposure = np.full(len(t), 20_000 * 0.4e-6)  # 20 000 steps
    delay = 0.6e-6
    rate = 15e3 + (85e3 - 15e3) * np.exp(-np.maximum(t - delay, 0.0) / tau_s)
    counts = rng.poisson(rate * exposure)
    fit = fit_step_response(t, counts, exposure)
    assert fit.problem is None
    assert abs(fit.tau_s - tau_s) < 4 * fit.tau_stderr_s < 0.3 * tau_s
    assert fit.rise_time_s == pytest.approx(fit.tau_s * math.log(9.0))


def test_no_step_in_the_intensity_is_said():
    t = np.arange(50) * 0.4e-6
    exposure = np.full(50, 1e-3)
    flat = fit_step_response(t, np.full(50, 30), exposure)
    assert flat.problem is not None and math.isnan(flat.tau_s)
    few = fit_step_response(t, np.zeros(50, dtype=int), exposure)
    assert few.problem == "too few photons after the steps"
