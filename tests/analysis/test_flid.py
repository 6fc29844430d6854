"""FLID: exact accumulation under chunking and the per-bin maximum-likelihood lifetime.

Statistical tolerances: a 20 ms bin at 23-35 kc/s holds 460-700 photons, so one lifetime has a
relative standard deviation of about 5 % (the Fisher information of a truncated exponential);
the mean over n bins then has a standard error SE = sd / sqrt(n), measured from the bins
themselves. "Unbiased" is asserted as |mean - truth| < 4 SE (a false alarm rate of 6e-5)
plus the maximum-likelihood estimator's own small-sample bias, of order sd**2 (~0.25 % here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import AnalysisError, Flid, FlidResult, flid_lifetimes

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import Synthetic, generate, random_chunks  # noqa: E402

IRF = 0.4e-9  # the paper's set-up


def flid_of(syn: Synthetic, **kw) -> Flid:
    f = Flid(20e-3, syn.period_s, syn.microtime_unit_s, syn.microtime_bins, **kw)
    f.add(syn.macrotime, syn.microtime)
    return f


def lifetimes(syn: Synthetic, *, irf_fwhm_s=IRF, background_cps=None, **kw) -> FlidResult:
    result = flid_of(syn).result(
        decay_start_s=syn.decay_start_s,
        background_cps=syn.background_cps if background_cps is None else background_cps,
        period_s=syn.period_s,
        irf_fwhm_s=irf_fwhm_s,
        **kw,
    )
    return result


def full_bins(result: FlidResult) -> np.ndarray:
    """Lifetimes of all bins but the last one (cut by the end of the recording)."""
    return result.lifetime_s[:-1]


def assert_unbiased(tau: np.ndarray, truth: float) -> None:
    ok = np.isfinite(tau)
    assert ok.mean() > 0.99
    sd = tau[ok].std()
    se = sd / np.sqrt(ok.sum())
    assert abs(tau[ok].mean() - truth) < 4 * se + sd**2 / truth, (tau[ok].mean(), truth, se)


@pytest.fixture(scope="module")
def x0() -> Synthetic:
    # the neutral exciton of the paper's dot: 125 ns at 35 kc/s, 10 s = 500 FLID bins
    return generate(10.0, [(35e3, 125e-9)], background_cps=300, seed=1)


# ---------------------------------------------------------------- accumulation


def test_accumulated_state_is_the_photons_binned(x0):
    f = flid_of(x0)
    t_bin = x0.macrotime // 50_000  # 20 ms = 50 000 syncs of 400 ns
    coarse = x0.microtime // 20  # 0.5 ns = 20 TCSPC bins of 25 ps
    expected = np.zeros((t_bin.max() + 1, 800), dtype=np.int64)
    np.add.at(expected, (t_bin, coarse), 1)
    np.testing.assert_array_equal(f.histograms, expected)
    np.testing.assert_array_equal(f.counts, expected.sum(axis=1))
    assert f.coarse_bin_s == pytest.approx(0.5e-9)
    np.testing.assert_allclose(np.diff(f.times_s), 20e-3, rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_chunked_equals_one_shot(x0, seed):
    one = flid_of(x0, t0_ticks=777)
    chunked = Flid(20e-3, x0.period_s, x0.microtime_unit_s, x0.microtime_bins, t0_ticks=777)
    for s in random_chunks(len(x0), np.random.default_rng(seed), 5 + 20 * seed):
        chunked.add(x0.macrotime[s], x0.microtime[s])
    np.testing.assert_array_equal(chunked.histograms, one.histograms)
    np.testing.assert_array_equal(chunked.counts, one.counts)
    assert chunked.early == one.early == np.count_nonzero(x0.macrotime < 777)
    kw = dict(decay_start_s=x0.decay_start_s, background_cps=300, period_s=x0.period_s)
    a, b = one.result(**kw), chunked.result(**kw)
    np.testing.assert_array_equal(a.lifetime_s, b.lifetime_s)
    np.testing.assert_array_equal(a.intensity_cps, b.intensity_cps)


def test_out_of_range_microtimes_are_counted_not_histogrammed():
    f = Flid(20e-3, 400e-9, 25e-12, 16000)
    f.add([10, 20, 30], [5, 16000, 65535])
    assert f.overflow == 2
    assert f.counts.tolist() == [3]
    assert f.histograms.sum() == 1


# ---------------------------------------------------------------- the lifetime estimator


def test_precision_at_125_ns_35_kcps(x0):
    result = lifetimes(x0)
    tau = full_bins(result)
    # 20 % is four standard deviations of one bin: nearly every bin must be inside
    assert np.mean(np.abs(tau / 125e-9 - 1) < 0.2) >= 0.9
    assert_unbiased(tau, 125e-9)
    # intensity: 35 kc/s + 300 c/s background, mean over 499 bins of ~706 counts (4 SE)
    cps = result.intensity_cps[:-1]
    assert abs(cps.mean() - 35.3e3) < 4 * np.sqrt(35.3e3 * 20e-3) / 20e-3 / np.sqrt(len(cps))


def test_stderr_matches_the_scatter(x0):
    result = lifetimes(x0)
    tau = full_bins(result)
    # sd of 499 values is known to 1/sqrt(2*499) = 3 %: 15 % is five of those
    assert np.nanstd(tau) == pytest.approx(np.nanmean(result.lifetime_stderr_s[:-1]), rel=0.15)


def test_unbiased_at_42_ns_23_kcps():
    syn = generate(20.0, [(23e3, 42e-9)], background_cps=500, seed=2)
    assert_unbiased(full_bins(lifetimes(syn)), 42e-9)


def test_background_is_part_of_the_model():
    # 5 kc/s of flat background under 23 kc/s: b ~ 18 % of each bin
    syn = generate(10.0, [(23e3, 42e-9)], background_cps=5e3, seed=3)
    aware = full_bins(lifetimes(syn))
    assert_unbiased(aware, 42e-9)
    # ignoring it, the flat counts read as a slower decay: biased by far more than 4 SE
    naive = full_bins(lifetimes(syn, background_cps=0.0))
    assert np.nanmean(naive) > 42e-9 + 10 * np.nanstd(aware) / np.sqrt(len(aware))


@pytest.mark.parametrize("seed", range(2))
def test_unbiased_at_1_ns_with_a_04_ns_irf(seed):
    # the -2 V regime: a lifetime of 2.5 IRF widths (rate raised to keep the test short)
    syn = generate(10.0, [(25e3, 1e-9)], irf_fwhm_s=IRF, seed=10 + seed)
    assert_unbiased(full_bins(lifetimes(syn)), 1e-9)
    # without the IRF in the model the estimate is off by about sigma**2 / (2 tau**2) ~ 1.4 %
    # (the excess the IRF pushes past the start cell), still within 2 %
    blind = full_bins(lifetimes(syn, irf_fwhm_s=0.0))
    assert abs(np.nanmean(blind) / 1e-9 - 1) < 0.02


@pytest.mark.parametrize("decay_start_s", [0.1e-9, 399.8e-9])
def test_photons_before_the_decay_start_do_not_wrap(decay_start_s):
    # the IRF puts photons on the other side of the sync: in raw microtime they sit at the far
    # end of the period (or at its beginning); a naive (t - start) mod P would read them as
    # ~400 ns delays and inflate tau
    syn = generate(10.0, [(23e3, 42e-9)], decay_start_s=decay_start_s, seed=4)
    assert_unbiased(full_bins(lifetimes(syn)), 42e-9)


def test_period_that_is_not_a_whole_number_of_bins():
    # the HydraHarp file's geometry: 200.0016 ns sync period, 64 ps bins
    syn = generate(
        10.0,
        [(23e3, 42e-9)],
        period_s=200.0016e-9,
        microtime_unit_s=64e-12,
        decay_start_s=199.9e-9,
        seed=5,
    )
    f = flid_of(syn)
    assert f.coarse_bin_s == pytest.approx(0.512e-9)
    result = f.result(decay_start_s=syn.decay_start_s, period_s=syn.period_s, irf_fwhm_s=IRF)
    assert_unbiased(full_bins(result), 42e-9)


def test_bins_with_too_few_photons_get_nan():
    syn = generate(5.0, [(1.2e3, 125e-9)], seed=6)  # ~24 photons per 20 ms bin
    result = flid_of(syn).result(decay_start_s=syn.decay_start_s, period_s=400e-9, min_counts=25)
    few = result.counts < 25
    assert 0.2 < few.mean() < 0.8
    assert np.all(np.isnan(result.lifetime_s[few]))
    assert np.isfinite(result.lifetime_s[~few]).mean() > 0.99


def test_bins_with_more_background_than_photons_get_nan():
    hist = np.zeros((2, 800), dtype=np.uint32)
    hist[:, 10:50] = 5  # 200 photons in a decay-like lump
    tau, err = flid_lifetimes(
        hist,
        coarse_bin_s=0.5e-9,
        period_s=400e-9,
        decay_start_s=4e-9,
        background_counts=[100.0, 250.0],
    )
    assert np.isfinite(tau[0]) and np.isfinite(err[0])
    assert np.isnan(tau[1]) and np.isnan(err[1])


def test_blinking_states_are_separated():
    # X0 (125 ns, 35 kc/s) <-> X- (42 ns, 23 kc/s), dwell 0.3 s: ~6 % of the 20 ms bins
    # straddle a jump
    syn = generate(30.0, [(35e3, 125e-9), (23e3, 42e-9)], dwell_s=0.3, background_cps=300, seed=7)
    result = lifetimes(syn)
    n = len(result) - 1
    edges = np.append(result.times_s, result.times_s[-1] + result.bin_s)[: n + 1]
    fraction = syn.state_fraction(edges)
    truth = fraction.argmax(axis=1)
    x = np.column_stack((result.intensity_cps[:n], np.log(result.lifetime_s[:n])))
    label = two_means((x - x.mean(axis=0)) / x.std(axis=0))
    tau = result.lifetime_s[:n]
    cps = result.intensity_cps[:n]
    if np.median(tau[label == 0]) < np.median(tau[label == 1]):
        label = 1 - label  # cluster 0: the long-lived state
    assert np.mean(label == truth) >= 0.9
    pure = fraction.max(axis=1) > 0.999
    for state, (rate, lifetime) in enumerate(syn.states):
        members = label == state
        # the median is robust to the few straddling bins; its SE is 1.25 sd / sqrt(n) (~0.3 %,
        # from the members' own scatter): within 5 of them
        t = tau[members]
        se_median = 1.2533 * t.std(ddof=1) / np.sqrt(t.size)
        assert abs(np.median(t) - lifetime) < 5 * se_median
        # intensity of the bins purely in one state: rate + background, within 4 SE
        sel = members & pure
        se = np.sqrt((rate + 300) * 20e-3) / 20e-3 / np.sqrt(sel.sum())
        assert abs(cps[sel].mean() - (rate + 300)) < 4 * se


def two_means(x: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Plain 2-means clustering, started from the extremes of the first coordinate."""
    centres = x[[x[:, 0].argmin(), x[:, 0].argmax()]]
    for _ in range(iterations):
        label = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
        centres = np.array([x[label == k].mean(axis=0) for k in range(2)])
    return label


def test_occurrence_histogram(x0):
    result = lifetimes(x0)
    counts, i_edges, t_edges = result.occurrence(
        intensity_bins=20, lifetime_bins=np.linspace(50e-9, 200e-9, 31)
    )
    assert counts.shape == (20, 30)
    assert counts.sum() == np.count_nonzero(
        np.isfinite(result.lifetime_s)
        & (result.lifetime_s >= 50e-9)
        & (result.lifetime_s <= 200e-9)
    )
    i, j = np.unravel_index(counts.argmax(), counts.shape)
    # the mode lies within two 5 ns lifetime bins of the truth, and within the intensity range
    assert abs((t_edges[j] + t_edges[j + 1]) / 2 - 125e-9) < 10e-9
    assert i_edges[0] <= 35.3e3 <= i_edges[-1]


# ---------------------------------------------------------------- bad input


def test_bad_arguments_give_one_line_errors():
    hist = np.ones((1, 800), dtype=np.uint32)
    kw = dict(coarse_bin_s=0.5e-9, period_s=400e-9, decay_start_s=5e-9)
    with pytest.raises(ValueError, match="two IRF FWHM"):
        flid_lifetimes(hist, **kw, irf_fwhm_s=1e-9, guard_s=1e-9)
    with pytest.raises(AnalysisError, match="does not cover the laser period") as err:
        flid_lifetimes(hist[:, :400], **kw)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="2-D"):
        flid_lifetimes(hist[0], **kw)
    with pytest.raises(ValueError, match="T3 microtimes"):
        Flid(20e-3, 400e-9, None, 16000)
