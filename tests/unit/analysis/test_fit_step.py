"""The composable accumulators and the one fit step of the analysis package."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synthetic import generate

from qd_bluesky.analysis import (
    DEFAULT_CHANNELS,
    AnalysisError,
    Flid,
    IntensityTrace,
    PhotonAnalysis,
    PhotonSettings,
    StreamUnits,
    StretchAccumulator,
    add_photons,
    fit_decay,
    fit_decay_models,
    flid_accumulator,
    per_bin_arrays,
    trace_accumulator,
)
from qd_bluesky.analysis._fit import FIT_MIN_COUNTS


@pytest.fixture(scope="module")
def two_states():
    """Two lifetimes in one stream (a blinking dot): the bi-exponential is needed."""
    return generate(2.0, ((40e3, 20e-9), (20e3, 120e-9)), dwell_s=0.05, seed=4)


@pytest.fixture(scope="module")
def one_state():
    return generate(1.0, ((40e3, 60e-9),), seed=2)


def units_of(syn) -> StreamUnits:
    return StreamUnits.of(syn.table())


def stretch_of(syn, pieces: int = 1, **kw) -> StretchAccumulator:
    acc = StretchAccumulator(units_of(syn), DEFAULT_CHANNELS, **kw)
    for part in np.array_split(np.arange(len(syn)), pieces):
        acc.add(syn.macrotime[part], syn.microtime[part], syn.channel[part])
    return acc


def test_fit_step_keeps_the_mono_exponential_behind_a_bi_exponential(two_states):
    syn = two_states
    counts = stretch_of(syn).decay.summed
    fits = fit_decay_models(counts, syn.microtime_unit_s, period_s=syn.period_s)
    assert fits.best.model == "bi"
    mono = fit_decay(counts, syn.microtime_unit_s, period_s=syn.period_s, model="mono")
    assert fits.mono.tau_s == mono.tau_s and fits.mono.deviance == mono.deviance


def test_fit_step_gives_one_fit_for_one_lifetime(one_state):
    syn = one_state
    fits = fit_decay_models(
        stretch_of(syn).decay.summed, syn.microtime_unit_s, period_s=syn.period_s
    )
    assert fits.best is fits.mono and fits.best.model == "mono"
    assert fits.mono.tau_s[0] == pytest.approx(60e-9, rel=0.05)


def test_photon_analysis_fits_with_the_fit_step(two_states):
    syn = two_states
    analysis = PhotonAnalysis(units_of(syn), t0_ticks=int(syn.macrotime[0]))
    analysis.add(syn.macrotime, syn.microtime, syn.channel)
    results = stretch_of(syn).results()
    assert analysis.fit().tau_s == results.fit.tau_s
    assert analysis.n_photons == len(syn) and analysis.decay is analysis.stretch.decay


def test_stretch_is_exact_under_chunking(one_state):
    syn = one_state
    one, many = stretch_of(syn), stretch_of(syn, pieces=13)
    np.testing.assert_array_equal(one.decay.counts, many.decay.counts)
    a, b = one.results(), many.results()
    np.testing.assert_array_equal(a.g2.counts, b.g2.counts)
    assert a.fit.tau_s == b.fit.tau_s and a.mono.tau_s == b.mono.tau_s
    assert one.duration_s == many.duration_s and one.photons == many.photons == len(syn)


def test_too_few_photons_is_a_problem_not_an_error(one_state):
    syn = one_state
    acc = StretchAccumulator(units_of(syn), DEFAULT_CHANNELS, with_g2=False)
    n = FIT_MIN_COUNTS - 1
    acc.add(syn.macrotime[:n], syn.microtime[:n], syn.channel[:n])
    r = acc.results()
    assert r.fit is None and r.mono is None and r.g2 is None
    assert "too few photons" in r.problem and r.decay.sum() == n
    with pytest.raises(AnalysisError, match="too few photons"):
        fit_decay_models(r.decay, syn.microtime_unit_s, period_s=syn.period_s)


def test_without_microtimes_there_is_no_decay_and_the_flid_is_an_intensity_trace(one_state):
    syn = one_state
    t2 = StreamUnits(syn.period_s, None, 0, None, "T2")
    acc = StretchAccumulator(t2, DEFAULT_CHANNELS)
    acc.add(syn.macrotime, syn.microtime, syn.channel)
    r = acc.results()
    assert acc.decay is None and r.decay.size == 0 and r.fit is None and r.problem is None
    flid = flid_accumulator(t2, 0.02, t0_ticks=0, n_channels=2)
    assert isinstance(flid, IntensityTrace)
    assert isinstance(flid_accumulator(units_of(syn), 0.02, t0_ticks=0, n_channels=2), Flid)


def test_binned_accumulators_share_one_interface(one_state):
    syn = one_state
    units, t0 = units_of(syn), int(syn.macrotime[0])
    trace = trace_accumulator(units, 0.02, t0_ticks=t0, n_channels=2)
    flid = flid_accumulator(units, 0.02, t0_ticks=t0, n_channels=2)
    for acc in (trace, flid):
        add_photons(acc, syn.macrotime, syn.microtime, syn.channel)
    (total,) = per_bin_arrays(trace)
    counts, histograms = per_bin_arrays(flid)
    np.testing.assert_array_equal(total, counts)
    np.testing.assert_array_equal(histograms.sum(axis=1), counts)


def test_live_settings_take_their_defaults_from_the_analysis():
    from qd_bluesky.callbacks import AnalysisSettings

    live = AnalysisSettings()
    for f in dataclasses.fields(PhotonSettings):
        assert getattr(live, f.name) == getattr(PhotonSettings(), f.name)
    assert isinstance(live, PhotonSettings)


def test_flid_calibration_comes_from_the_stretch_fit(one_state):
    syn = one_state
    acc = stretch_of(syn)
    fit = acc.results().fit
    cal = acc.flid_calibration(fit)
    assert cal.decay_start_s == fit.shift_s and cal.irf_fwhm_s == fit.irf_fwhm_s
    assert cal.background_cps == fit.background_fraction * len(syn) / acc.duration_s
    none = acc.flid_calibration(None, irf_fwhm_s=1e-9)
    assert (none.decay_start_s, none.background_cps, none.irf_fwhm_s) == (0.0, 0.0, 1e-9)
