"""Whole-decay fits against decays with known truth.

Two independent sources of truth, neither using the fit's own model code:

* ``photon_histogram`` draws photons one by one: an exponential delay after the pulse, a
  Gaussian (or any) IRF jitter, the arrival folded into the period (so the tail of earlier pulses
  appears by itself), plus uniform background;
* ``exact_probabilities`` computes the bin probabilities in closed form with scipy's
  exponentially-modified Gaussian (``scipy.stats.exponnorm``), summing the earlier pulses
  explicitly; histograms are then one multinomial draw, cheap enough for hundreds of repeats.

Tolerances are multiples of the fit's standard error (whose honesty is checked separately) or
of the spread of repeated fits, as stated at each assertion.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import exponnorm

from qd_bluesky.analysis import (
    AnalysisError,
    DecayFit,
    _fit,
    estimate_decay_start,
    fit_decay,
    gaussian_irf,
    resample_irf,
)
from qd_bluesky.analysis._irf import irf_fwhm

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
DT = 25e-12  # the paper's TimeHarp 260 PICO bin
PERIOD = 400e-9  # 2.5 MHz
N_BINS = 16000


def photon_histogram(
    rng,
    n_photons,
    taus,
    fractions,
    *,
    dt=DT,
    period=PERIOD,
    t0=5e-9,
    irf_fwhm=0.4e-9,
    irf_sampler=None,
    n_bins=None,
    background=0,
):
    """Histogram of simulated photon arrivals (``background`` extra photons, uniform)."""
    n_bins = n_bins or int(round(period / dt))
    comp = rng.choice(len(taus), size=n_photons, p=fractions)
    t = t0 + rng.exponential(np.asarray(taus)[comp])
    if irf_sampler is not None:
        t += irf_sampler(rng, n_photons)
    elif irf_fwhm:
        t += rng.normal(0.0, irf_fwhm / FWHM_PER_SIGMA, n_photons)
    t = np.concatenate([np.mod(t, period), rng.uniform(0.0, period, background)])
    h = np.bincount((t / dt).astype(np.int64), minlength=int(math.ceil(period / dt)) + 1)
    return h[:n_bins]


def exact_probabilities(
    taus, fractions, *, dt=DT, period=PERIOD, t0=5e-9, irf_fwhm=0.4e-9, background_fraction=0.0
):
    """Probability of each bin: exGaussian CDF differences summed over the pulse train."""
    n_bins = int(round(period / dt))
    edges = np.arange(n_bins + 1) * dt
    sigma = irf_fwhm / FWHM_PER_SIGMA
    p = np.zeros(n_bins)
    for tau, f in zip(taus, fractions, strict=True):
        dist = exponnorm(tau / sigma, loc=0.0, scale=sigma)
        for k in range(-1, int(math.ceil(40 * tau / period)) + 2):
            p += f * np.diff(dist.cdf(edges - t0 + k * period))
    return (1.0 - background_fraction) * p + background_fraction * dt / period


def within(fit_value, truth, stderr, n_sigma=4.0):
    return abs(fit_value - truth) <= n_sigma * stderr


# ---------------------------------------------------------------------------------------------
# IRF helpers
# ---------------------------------------------------------------------------------------------


def test_gaussian_irf_is_normalised_wraps_and_has_its_fwhm():
    irf = gaussian_irf(N_BINS, DT, 0.4e-9, center_s=0.0, period_s=PERIOD)
    assert irf.sum() == pytest.approx(1.0, abs=1e-12)
    # Centred on the window start: half the pulse wraps to the end of the period.
    assert irf[:60].sum() == pytest.approx(irf[-60:].sum(), rel=1e-9)
    assert irf[:60].sum() + irf[-60:].sum() == pytest.approx(1.0, abs=1e-9)  # 60 bins: 8.8 sigma
    centred = gaussian_irf(N_BINS, DT, 0.4e-9, center_s=10e-9)
    # Half-maximum crossings found by linear interpolation between 25 ps bins: the error is far
    # below a bin for a 16-bin-wide peak.
    assert irf_fwhm(centred, DT) == pytest.approx(0.4e-9, abs=0.2 * DT)
    mean = (np.arange(N_BINS) + 0.5) @ centred * DT
    assert mean == pytest.approx(10e-9, abs=1e-15)


def test_resample_irf_conserves_photons_and_removes_a_noisy_floor():
    rng = np.random.default_rng(1)
    fine = gaussian_irf(4000, 10e-12, 0.3e-9, center_s=5e-9)
    counts = rng.poisson(2e5 * fine) + rng.poisson(3.0, fine.size)  # dark-count floor of 3/bin
    out = resample_irf(counts, 10e-12, 25e-12)
    assert out.size == 1600 and out.sum() == pytest.approx(1.0)
    assert np.all(out >= 0)
    # The floor is gone: outside +-2 ns of the peak nothing is left (a clipped floor would leave
    # ~0.5 counts/bin, i.e. ~1 % of the mass, spread everywhere).
    t = (np.arange(1600) + 0.5) * 25e-12
    assert out[np.abs(t - 5e-9) > 2e-9].sum() < 1e-3
    # The mean arrival time survives resampling (to the 2e5-photon statistical precision,
    # sigma / sqrt(N) ~ 0.3 ps, with a wide margin).
    assert t @ out == pytest.approx(5e-9, abs=5e-12)


def test_decay_start_found_in_dense_and_sparse_histograms():
    rng = np.random.default_rng(2)
    # Dense: the spread of the estimate over repeats was measured at 0.04 ns; 0.2 ns is 5 sigma.
    h = photon_histogram(rng, 500_000, [125e-9], [1.0], t0=30e-9)
    assert estimate_decay_start(h, DT) == pytest.approx(30e-9, abs=0.2e-9)
    # Sparse (1.2 photons per bin): a fixed fine scale finds noise (the rise is only ~4 sigma at
    # 16 bins); the multi-scale search still finds the decay, to within a few IRF widths.
    starts = [
        estimate_decay_start(photon_histogram(rng, 20_000, [125e-9], [1.0], t0=30e-9), DT)
        for _ in range(20)
    ]
    # (5 IRF FWHM: at 1.2 photons per bin the rise is resolved to a few IRF widths, not better)
    assert np.max(np.abs(np.array(starts) - 30e-9)) < 2e-9
    # A rise at the very start of the window is found across the wrap.
    h = photon_histogram(rng, 200_000, [5e-9], [1.0], t0=0.1e-9)
    assert estimate_decay_start(h, DT) == pytest.approx(0.1e-9, abs=0.2e-9)


# ---------------------------------------------------------------------------------------------
# The model itself, against brute force
# ---------------------------------------------------------------------------------------------


def brute_force_model(tau, t0, sigma, n_bins, period, oversample=40):
    """Bin integrals by explicit pulse sums and numerical Gaussian convolution (units of bins)."""
    t = (np.arange(n_bins * oversample) + 0.5) / oversample
    u = np.linspace(-8 * sigma, 8 * sigma, 801)
    wu = np.exp(-0.5 * (u / sigma) ** 2)
    wu /= wu.sum()
    dens = np.zeros_like(t)
    for ui, wi in zip(u, wu, strict=True):
        for k in range(-2, int(40 * tau / period) + 2):
            x = t - ui - t0 + k * period
            dens += wi * np.where(x >= 0, np.exp(-np.maximum(x, 0.0) / tau), 0.0)
    return dens.reshape(-1, oversample).mean(axis=1)


@pytest.mark.parametrize("tau, t0", [(125.0, 30.4), (3.0, 600.7), (20.0, 5.0), (0.5, 300.2)])
def test_model_matches_brute_force(tau, t0):
    period, sigma, n = 1000.3, 4.3, 900
    units = np.arange(n), np.ones(n, dtype=np.int64)
    exact = _fit._block_decay(*units, tau, t0, period, _fit._GaussianIrf(sigma, 1.0), False)[0]
    reference = brute_force_model(tau, t0, sigma, n, period)
    # The brute force itself is good to ~1e-3 of the peak (40 sub-samples per bin, 801-point
    # IRF quadrature).
    assert np.abs(exact - reference).max() < 3e-3 * reference.max()
    # A measured IRF sampled from the same Gaussian, read as a piecewise-constant density, is
    # an approximation of the same model (sigma = 4.3 bins): within 1 % of the peak.
    k = int(math.ceil(7 * sigma))
    w = np.diff(ndtr((np.arange(-k, k + 2) - 0.5) / sigma))
    sampled = _fit._SampledIrf(w / w.sum(), k, k, 1.0, period)
    approx = _fit._block_decay(*units, tau, t0, period, sampled, False)[0]
    assert np.abs(approx - reference).max() < 1e-2 * reference.max()


def test_block_sums_local_and_fft_paths_agree_with_analytic_derivatives():
    """Blocks equal summed bins; local and FFT convolutions agree; derivatives match."""
    rng = np.random.default_rng(3)
    period, n = 1000.3, 900
    sigma = 4.3
    k = int(math.ceil(7 * sigma))
    w = np.diff(ndtr((np.arange(-k, k + 2) - 0.5) / sigma))
    local = _fit._SampledIrf(w / w.sum(), k, k, 1.0, period)
    wide = _fit._SampledIrf(w / w.sum(), k, k, 1.0, period)
    wide.wide = True
    units = np.arange(n), np.ones(n, dtype=np.int64)
    cuts = np.sort(rng.choice(np.arange(1, n), size=40, replace=False))
    starts = np.concatenate(([0], cuts))
    widths = np.diff(np.append(starts, n))
    for irf in (_fit._GaussianIrf(sigma, 1.0), local, _fit._NoIrf()):
        for tau, t0 in [(125.0, 30.4), (3.0, 998.7), (40.0, -3.3)]:
            fine = _fit._block_decay(*units, tau, t0, period, irf, True)
            blocks = _fit._block_decay(starts, widths, tau, t0, period, irf, True)
            for b, f in zip(blocks, fine, strict=True):
                np.testing.assert_allclose(b, np.add.reduceat(f, starts), rtol=1e-9, atol=1e-14)
            # Central differences: truncation ~h^2, rounding ~1e-16/h; 1e-5 relative is ample.
            h = 1e-5 * tau

            def y_at(ta, t, irf=irf):
                return _fit._block_decay(*units, ta, t, period, irf, False)[0]

            d_tau = (y_at(tau + h, t0) - y_at(tau - h, t0)) / (2 * h)
            d_t0 = (y_at(tau, t0 + 1e-5) - y_at(tau, t0 - 1e-5)) / 2e-5
            np.testing.assert_allclose(fine[1], d_tau, atol=1e-5 * np.abs(d_tau).max())
            if not isinstance(irf, _fit._NoIrf):  # without IRF, t0 has kinks at bin edges
                np.testing.assert_allclose(fine[2], d_t0, atol=1e-5 * np.abs(d_t0).max())
    for tau, t0 in [(125.0, 30.4), (3.0, 998.7), (0.3, 500.5)]:
        a = _fit._block_decay(*units, tau, t0, period, local, True)
        b = _fit._block_decay(*units, tau, t0, period, wide, True)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12 * np.abs(y).max())


# ---------------------------------------------------------------------------------------------
# Fits with known truth
# ---------------------------------------------------------------------------------------------


def test_periodic_tail_125ns_at_2_5_mhz_and_the_naive_fit_is_biased():
    rng = np.random.default_rng(10)
    h = photon_histogram(rng, 500_000, [125e-9], [1.0], t0=30e-9)
    fit = fit_decay(h, DT, period_s=PERIOD, model="mono", irf_fwhm_s=0.4e-9)
    assert isinstance(fit, DecayFit) and fit.converged
    tau, err = fit.tau_s[0], fit.tau_stderr_s[0]
    # The brief's 2 %, and 4 standard errors (stderr ~0.45 %).
    assert abs(tau - 125e-9) < 0.02 * 125e-9 and within(tau, 125e-9, err)
    assert fit.shift_s == pytest.approx(30e-9, abs=5 * fit.shift_stderr_s)
    assert fit.counts == h.sum()
    # The fitted curve is the Poisson ML one: it carries every photon (free overall scale).
    assert fit.model_counts.sum() == pytest.approx(h.sum(), rel=1e-6)
    # A non-periodic model (a period of 1 s: no tail of earlier pulses) reads the 4 % tail
    # before the rise as background and must bend the decay to meet it: biased far beyond
    # the statistics.
    naive = fit_decay(h, DT, period_s=1.0, model="mono")
    assert naive.tau_s[0] < 0.95 * 125e-9
    assert abs(naive.tau_s[0] - 125e-9) > 10 * naive.tau_stderr_s[0]


def test_short_lifetime_against_the_irf():
    rng = np.random.default_rng(11)
    h = photon_histogram(rng, 200_000, [0.9e-9], [1.0])
    fit = fit_decay(h, DT, period_s=PERIOD, irf_fwhm_s=0.4e-9)
    # The brief's 0.1 ns; the standard error is ~2 ps, so also 4 sigma.
    assert abs(fit.tau_s[0] - 0.9e-9) < 0.1e-9 and within(fit.tau_s[0], 0.9e-9, fit.tau_stderr_s[0])
    assert fit.chi2_reduced == pytest.approx(1.0, abs=0.3)  # ~300 dof: sd of chi2/dof ~0.08
    # Without the IRF the same data read ~80 ps too long (measured): the reconvolution matters.
    plain = fit_decay(h, DT, period_s=PERIOD, irf_fwhm_s=None)
    assert plain.tau_s[0] - 0.9e-9 > 20 * plain.tau_stderr_s[0]


@pytest.mark.parametrize(
    "taus, fractions, n_photons",
    [([42e-9, 125e-9], [0.4, 0.6], 1_000_000), ([3e-9, 125e-9], [0.15, 0.85], 500_000)],
    ids=["X- and X0", "X+ and X0"],
)
def test_bi_exponential_recovers_both_components(taus, fractions, n_photons):
    rng = np.random.default_rng(12)
    h = photon_histogram(rng, n_photons, taus, fractions)
    fit = fit_decay(h, DT, period_s=PERIOD, model="bi")
    assert fit.converged and fit.model == "bi"
    for i in range(2):
        # 4 standard errors each; the standard errors are checked for honesty below.
        assert within(fit.tau_s[i], taus[i], fit.tau_stderr_s[i])
        assert within(fit.fraction[i], fractions[i], fit.fraction_stderr[i])
        assert fit.tau_stderr_s[i] < 0.05 * taus[i]  # precise enough for the check to bite
    assert sum(fit.fraction) == pytest.approx(1.0)
    assert fit.dominant_tau_s == fit.tau_s[1]
    mono = fit_decay(h, DT, period_s=PERIOD, model="mono")
    # A wrong model costs deviance far beyond chance (a chi-square with 2 extra parameters).
    assert mono.deviance - fit.deviance > 100


def test_background_fraction_recovered():
    rng = np.random.default_rng(13)
    for tau in (125e-9, 5e-9):
        h = photon_histogram(rng, 300_000, [tau], [1.0], background=100_000)
        fit = fit_decay(h, DT, period_s=PERIOD)
        truth = 100_000 / 400_000
        assert within(fit.background_fraction, truth, fit.background_fraction_stderr)
        assert within(fit.tau_s[0], tau, fit.tau_stderr_s[0])
    # And none when there is none: the background sits at its lower bound.
    h = photon_histogram(rng, 100_000, [5e-9], [1.0])
    assert fit_decay(h, DT, period_s=PERIOD).background_fraction < 1e-3


def asymmetric_irf(rng, n):
    """A detector response with a diffusion tail: 60 ps Gaussian plus a 250 ps exponential."""
    return rng.normal(0.0, 60e-12, n) + rng.exponential(250e-12, n)


def test_measured_asymmetric_irf():
    rng = np.random.default_rng(14)
    # The IRF measured as a histogram of 2e5 scattered-laser photons at the same delay.
    irf = photon_histogram(rng, 200_000, [1e-15], [1.0], irf_sampler=asymmetric_irf)
    h = photon_histogram(rng, 200_000, [0.9e-9], [1.0], irf_sampler=asymmetric_irf)
    fit = fit_decay(h, DT, period_s=PERIOD, irf=irf)
    # 4 standard errors (2 ps); the IRF's own shot noise adds less than that (measured).
    assert within(fit.tau_s[0], 0.9e-9, fit.tau_stderr_s[0])
    assert fit.chi2_reduced == pytest.approx(1.0, abs=0.3)
    # FWHM of the 60 ps Gaussian convolved with the 250 ps exponential (~0.31 ns), read off a
    # 25 ps histogram of 2e5 photons: the half-maximum crossings are each good to about one
    # bin, so two bins (50 ps) either way.
    assert fit.irf_fwhm_s == pytest.approx(0.31e-9, abs=2 * DT)
    # A Gaussian of the same FWHM misses the tail and reads the lifetime ~70 ps long.
    gauss = fit_decay(h, DT, period_s=PERIOD, irf_fwhm_s=fit.irf_fwhm_s)
    assert gauss.tau_s[0] - 0.9e-9 > 10 * gauss.tau_stderr_s[0]
    assert gauss.chi2_reduced > 3
    # The same IRF with a dark-count floor, cleaned by resample_irf, gives the same answer.
    noisy = irf + rng.poisson(2.0, irf.size)
    clean = fit_decay(h, DT, period_s=PERIOD, irf=resample_irf(noisy, DT, DT))
    # the same photons: only the IRF's cleaning differs, so within one standard error
    assert clean.tau_s[0] == pytest.approx(fit.tau_s[0], abs=fit.tau_stderr_s[0])


def test_window_shorter_than_the_period_and_a_non_integer_period():
    rng = np.random.default_rng(15)
    # Half the period recorded (8000 bins of 25 ps at 2.5 MHz).
    h = photon_histogram(rng, 400_000, [125e-9], [1.0], n_bins=8000)
    fit = fit_decay(h, DT, period_s=PERIOD)
    assert within(fit.tau_s[0], 125e-9, fit.tau_stderr_s[0])
    assert fit.model_counts.size == 8000
    # The HydraHarp file's grid: 3125 bins of 64 ps for a 200.0016 ns period.
    period = 200.0016e-9
    h = photon_histogram(rng, 200_000, [30e-9], [1.0], dt=64e-12, period=period, n_bins=3125)
    fit = fit_decay(h, 64e-12, period_s=period)
    assert within(fit.tau_s[0], 30e-9, fit.tau_stderr_s[0])
    # Bins past the period (a longer histogram) hold no photons of this pulse: ignored.
    longer = np.concatenate([h, np.zeros(200, dtype=h.dtype)])
    again = fit_decay(longer, 64e-12, period_s=period)
    assert again.tau_s[0] == pytest.approx(fit.tau_s[0], rel=1e-9)


def test_fit_range_restricts_the_fit():
    rng = np.random.default_rng(16)
    h = photon_histogram(rng, 300_000, [40e-9], [1.0], t0=10e-9)
    fit = fit_decay(h, DT, period_s=PERIOD, fit_range=(20e-9, 300e-9))
    lo, hi = fit.fit_range_bins
    assert (lo, hi) == (800, 12000)
    assert fit.counts == h[lo:hi].sum()
    assert within(fit.tau_s[0], 40e-9, fit.tau_stderr_s[0])


def test_coarse_bins_fit_converges_with_a_sub_bin_start():
    """128 ps bins (the HydraHarp v1 file): the IRF spans ~1.3 bins, the start is fitted
    between bins and the fit converges (a bin-sampled IRF would pin it to a bin edge)."""
    rng = np.random.default_rng(17)
    h = photon_histogram(rng, 100_000, [6e-9, 35e-9], [0.15, 0.85], dt=128e-12, t0=3.45e-9)
    fit = fit_decay(h, 128e-12, period_s=PERIOD, model="bi")
    assert fit.converged
    assert fit.shift_s == pytest.approx(3.45e-9, abs=5 * fit.shift_stderr_s)
    for i, tau in enumerate([6e-9, 35e-9]):
        assert within(fit.tau_s[i], tau, fit.tau_stderr_s[i])


# ---------------------------------------------------------------------------------------------
# Standard errors are honest
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "taus, fractions, n_photons, model, repeats",
    [
        ([125e-9], [1.0], 20_000, "mono", 200),
        ([0.9e-9], [1.0], 5_000, "mono", 200),
        ([42e-9, 125e-9], [0.4, 0.6], 300_000, "bi", 100),
    ],
    ids=["125ns", "0.9ns", "bi"],
)
def test_standard_errors_match_the_scatter_of_repeated_fits(
    taus, fractions, n_photons, model, repeats
):
    rng = np.random.default_rng(20)
    # 10 % background: far enough from zero (~7 standard errors at 20 k photons) that no fit
    # ends on the boundary, where the error would be one-sided.
    p = exact_probabilities(taus, fractions, background_fraction=0.1)
    taus_fit, errs, frac, frac_err = [], [], [], []
    for _ in range(repeats):
        fit = fit_decay(rng.multinomial(n_photons, p / p.sum()), DT, period_s=PERIOD, model=model)
        assert fit.converged
        taus_fit.append(fit.tau_s)
        errs.append(fit.tau_stderr_s)
        frac.append(fit.background_fraction)
        frac_err.append(fit.background_fraction_stderr)
    taus_fit, errs = np.array(taus_fit), np.array(errs)
    # The sample standard deviation of N repeats is uncertain by 1/sqrt(2(N-1)): 5 % for 200,
    # 7 % for 100. 20 % (25 % for 100) is 4 (3.5) of those.
    tol = 0.2 if repeats >= 200 else 0.25
    ratio = taus_fit.std(axis=0, ddof=1) / np.sqrt((errs**2).mean(axis=0))
    assert np.all(np.abs(ratio - 1) < tol), ratio
    ratio_bg = np.std(frac, ddof=1) / np.sqrt(np.mean(np.square(frac_err)))
    assert abs(ratio_bg - 1) < tol, ratio_bg
    # Unbiased within 4 standard errors of the mean of the repeats.
    sem = taus_fit.std(axis=0, ddof=1) / math.sqrt(repeats)
    assert np.all(np.abs(taus_fit.mean(axis=0) - taus) < 4 * sem)


# ---------------------------------------------------------------------------------------------
# Results and errors
# ---------------------------------------------------------------------------------------------


def test_to_dict_is_json_safe_and_in_nanoseconds():
    rng = np.random.default_rng(30)
    h = photon_histogram(rng, 100_000, [42e-9, 125e-9], [0.4, 0.6])
    fit = fit_decay(h, DT, period_s=PERIOD, model="bi")
    d = fit.to_dict()
    json.dumps(d, allow_nan=False)
    for key in ("model", "tau_ns", "fraction", "background_fraction", "irf_fwhm_ns"):
        assert key in d
    assert d["tau_ns"] == pytest.approx([t * 1e9 for t in fit.tau_s])
    assert d["tau_stderr_ns"] == pytest.approx([t * 1e9 for t in fit.tau_stderr_s])
    assert d["irf_fwhm_ns"] == pytest.approx(0.4)
    assert d["model"] == "bi"
    # Amplitudes times lifetimes give the intensity fractions.
    at = np.array(fit.amplitude) * np.array(fit.tau_s)
    np.testing.assert_allclose(at / at.sum(), fit.fraction, rtol=1e-9)


@pytest.mark.parametrize(
    "counts, problem",
    [
        (np.zeros(N_BINS), "empty"),
        (np.r_[np.zeros(N_BINS - 3), 1, 1, 1], "too few photons"),
        (np.full((2, 100), 5.0), "1-D"),
        (np.r_[np.ones(100), -1.0], "non-negative"),
    ],
)
def test_bad_histograms_raise_one_line_errors(counts, problem):
    with pytest.raises(AnalysisError, match=problem) as info:
        fit_decay(counts, DT, period_s=PERIOD)
    assert "\n" not in str(info.value)


def test_flat_histogram_is_refused():
    rng = np.random.default_rng(31)
    with pytest.raises(AnalysisError, match="no decay above a flat level"):
        fit_decay(rng.poisson(5.0, N_BINS), DT, period_s=PERIOD)


def test_bad_arguments():
    h = photon_histogram(np.random.default_rng(32), 10_000, [5e-9], [1.0])
    with pytest.raises(ValueError, match="model"):
        fit_decay(h, DT, period_s=PERIOD, model="tri")
    with pytest.raises(ValueError, match="period_s"):
        fit_decay(h, DT, period_s=-1.0)
    with pytest.raises(AnalysisError, match="too wide"):
        fit_decay(h, DT, period_s=PERIOD, irf_fwhm_s=60e-9)
