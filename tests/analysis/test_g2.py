"""Pulsed g2 between two detectors: known truth, the paper's definition, chunking, real files.

Statistics: a peak area A is a Poisson count, so g2(0) = A_0 / mean(A_side) has the standard
error g2 * sqrt(1/A_0 + 1/sum(A_side)) (``g2_zero_stderr``), whose honesty against the scatter
of repeated draws is checked below (``test_stated_error_matches_the_scatter_of_draws``).
Agreement with the truth is then asked to 4 stated standard errors (a 1-in-16 000 false alarm
per check for a Gaussian).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import AnalysisError, G2Pulsed, read_ptu

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import Synthetic, expected_g2_zero, generate, random_chunks  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def g2_of(syn: Synthetic, **kw) -> G2Pulsed:
    g = G2Pulsed(0, 1, macrotime_unit_s=syn.period_s, microtime_unit_s=syn.microtime_unit_s, **kw)
    g.add(syn.macrotime, syn.microtime, syn.channel)
    return g


@pytest.mark.parametrize("truth", [0.1, 0.5])
def test_known_g2_zero(truth):
    # 20 ns lifetime: the peaks are well apart and the window g2(0) is the pulse-level one
    syn = generate(12.0, [(100e3, 20e-9)], g2_zero=truth, seed=int(truth * 10))
    r = g2_of(syn).result()
    assert r.peak_areas[[0, 1, 2, 4, 5, 6]].min() >= 1e4
    # exp(-T/2tau) = 5e-5 of a peak leaks into the next window: the window g2 is the pulse one
    assert expected_g2_zero(syn) == pytest.approx(truth, abs=1e-3)
    # >= 1e4 per side peak: stderr = g2 sqrt(1/A_0 + 1/6e4) <= 0.008 (at g2 = 0.5); 4 of them
    assert r.g2_zero_stderr < 0.008
    assert abs(r.g2_zero - truth) < 4 * r.g2_zero_stderr


def test_long_lifetime_where_the_window_matters():
    # 200 ns in a 400 ns period: a quarter of each peak spills beyond +-T/4 and the tails of the
    # neighbours fill the +-T/2 window, so the window choice moves g2(0) by ~0.08 (0.39 for
    # +-T/2 against 0.31 for +-T/4) for a perfect single-photon source.
    syn = generate(6.0, [(150e3, 200e-9)], seed=6)
    r = g2_of(syn).result()
    truth = expected_g2_zero(syn)
    narrow = expected_g2_zero(syn, half_window=0.25)
    # ~1.3e4 coincidences per side peak: stderr ~0.005, and the two windows are > 10 apart
    assert truth - narrow > 10 * r.g2_zero_stderr
    assert abs(r.g2_zero - truth) < 4 * r.g2_zero_stderr


def test_stated_error_matches_the_scatter_of_draws():
    # 400 independent 0.5 s recordings (~500 coincidences per side peak, g2(0) = 0.3): the
    # stated error (~0.025) must match the standard deviation of the g2(0) values. The sample
    # sd of N = 400 draws is uncertain by 1/sqrt(2(N-1)) = 3.5 %; the ratio must be within 4 of
    # those (0.86..1.14), so an error stated 2x too large (ratio 0.5) or too small fails.
    repeats = 400
    values, errors = [], []
    for seed in range(repeats):
        syn = generate(0.5, [(100e3, 20e-9)], g2_zero=0.3, seed=1000 + seed)
        r = g2_of(syn).result()
        values.append(r.g2_zero)
        errors.append(r.g2_zero_stderr)
    values = np.array(values)
    ratio = values.std(ddof=1) / np.sqrt(np.mean(np.square(errors)))
    assert abs(ratio - 1.0) < 4 / np.sqrt(2 * (repeats - 1)), ratio
    # and unbiased: the mean within 4 standard errors of the mean of the truth
    assert abs(values.mean() - expected_g2_zero(syn)) < 4 * values.std(ddof=1) / np.sqrt(repeats)


def test_paper_definition_counts_overlapping_peaks_and_background():
    # a perfect single-photon source (pulse-level g2(0) = 0) with the X0 lifetime, 125 ns in a
    # 400 ns period, plus 3 kc/s of background: the +-T/2 windows catch the tails of the
    # neighbouring peaks (~20 % of a peak) and the background coincidences, and the paper's
    # definition subtracts neither
    syn = generate(20.0, [(80e3, 125e-9)], background_cps=3e3, seed=3)
    r = g2_of(syn).result()
    truth = expected_g2_zero(syn)
    assert 0.2 < truth < 0.35
    # ~1.3e4 coincidences per side peak: stderr ~0.003; 4 of them
    assert abs(r.g2_zero - truth) < 4 * r.g2_zero_stderr
    # windows of +-T/4 would read ~0.07 less: the definition is really tested here
    assert truth - expected_g2_zero(syn, half_window=0.25) > 10 * r.g2_zero_stderr


def test_histogram_is_consistent_with_the_peaks():
    syn = generate(5.0, [(100e3, 20e-9)], g2_zero=0.3, seed=4)
    r = g2_of(syn, bin_s=1e-9).result()
    assert r.bin_s == pytest.approx(1e-9)
    assert len(r.tau_s) == 7 * 400
    assert r.tau_s[0] == pytest.approx(-3.5 * 400e-9 + 0.5e-9)
    # each peak window is exactly 400 bins of the histogram
    np.testing.assert_array_equal(r.counts.reshape(7, 400).sum(axis=1), r.peak_areas)
    per_peak = r.g2.reshape(7, 400).sum(axis=1)
    assert per_peak[3] == pytest.approx(r.g2_zero)
    assert per_peak[[0, 1, 2, 4, 5, 6]].mean() == pytest.approx(1.0)
    # the zero-delay peak sits at zero delay: its mean delay within the IRF width
    centre = np.sum(r.counts[1200:1600] * r.tau_s[1200:1600]) / r.peak_areas[3]
    assert abs(centre) < 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_chunked_equals_one_shot(seed):
    syn = generate(3.0, [(100e3, 125e-9)], g2_zero=0.2, background_cps=1e3, seed=20 + seed)
    # a third detector channel that the g2 must ignore
    channel = syn.channel.copy()
    channel[::7] = 2
    one = G2Pulsed(0, 1, macrotime_unit_s=syn.period_s, microtime_unit_s=syn.microtime_unit_s)
    one.add(syn.macrotime, syn.microtime, channel)
    chunked = G2Pulsed(0, 1, macrotime_unit_s=syn.period_s, microtime_unit_s=syn.microtime_unit_s)
    # many chunks, some with a few photons only (shorter than the 4-period window)
    for s in random_chunks(len(syn), np.random.default_rng(seed), 10 + 1000 * seed):
        chunked.add(syn.macrotime[s], syn.microtime[s], channel[s])
    a, b = one.result(), chunked.result()
    np.testing.assert_array_equal(a.peak_areas, b.peak_areas)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.g2_zero == b.g2_zero
    assert one.n_a == np.count_nonzero(channel == 0)


def test_t2_data_with_a_period():
    # the same kind of stream as absolute times in 1 ps ticks (a T2 recording of a pulsed dot)
    syn = generate(10.0, [(100e3, 20e-9)], g2_zero=0.3, seed=5)
    rng = np.random.default_rng(0)
    t = syn.macrotime * syn.period_s + (syn.microtime + rng.random(len(syn))) * 25e-12
    order = np.argsort(t, kind="stable")
    ticks = np.round(t[order] / 1e-12).astype(np.int64)
    channel = syn.channel[order]
    g = G2Pulsed(0, 1, macrotime_unit_s=1e-12, microtime_unit_s=None, period_s=syn.period_s)
    chunked = G2Pulsed(0, 1, macrotime_unit_s=1e-12, microtime_unit_s=None, period_s=400e-9)
    g.add(ticks, None, channel)
    for s in random_chunks(len(syn), np.random.default_rng(1), 50):
        chunked.add(ticks[s], None, channel[s])
    r = g.result()
    assert abs(r.g2_zero - expected_g2_zero(syn)) < 4 * r.g2_zero_stderr
    np.testing.assert_array_equal(chunked.result().peak_areas, r.peak_areas)
    # the T3 form of the same photons agrees, up to pairs within 25 ps of a window edge
    t3 = g2_of(syn).result()
    assert np.abs(t3.peak_areas - r.peak_areas).max() <= 0.001 * r.peak_areas.max()


@pytest.mark.parametrize("name", ["hydraharp_v10_t3.ptu", "hydraharp_v20_t3.ptu"])
def test_real_hydraharp_recordings_are_antibunched(name):
    table = read_ptu(DATA / name)
    g = G2Pulsed(
        0, 1, macrotime_unit_s=table.macrotime_unit_s, microtime_unit_s=table.microtime_unit_s
    )
    g.add(table.macrotime, table.microtime, table.channel)
    r = g.result()
    # a single emitter: g2(0) below 0.5 by more than three standard errors
    assert r.g2_zero + 3 * r.g2_zero_stderr < 0.5
    assert r.peak_areas[[0, 1, 2, 4, 5, 6]].min() > 25  # side peaks are really populated
    chunked = G2Pulsed(
        0, 1, macrotime_unit_s=table.macrotime_unit_s, microtime_unit_s=table.microtime_unit_s
    )
    for s in random_chunks(len(table), np.random.default_rng(2), 30):
        chunked.add(table.macrotime[s], table.microtime[s], table.channel[s])
    np.testing.assert_array_equal(chunked.result().peak_areas, r.peak_areas)


def test_bad_input_gives_one_line_errors():
    g = G2Pulsed(0, 1, macrotime_unit_s=400e-9, microtime_unit_s=25e-12)
    with pytest.raises(AnalysisError, match="out of time order") as err:
        g.add([5, 3, 9], [0, 0, 0], [0, 1, 0])
    assert "\n" not in str(err.value)
    g.add([10, 11], [0, 0], [0, 1])
    with pytest.raises(AnalysisError, match="before the previous chunk"):
        g.add([9], [0], [1])
    with pytest.raises(ValueError, match="two different channels"):
        G2Pulsed(1, 1, macrotime_unit_s=400e-9, microtime_unit_s=25e-12)
    with pytest.raises(ValueError, match="period_s"):
        G2Pulsed(0, 1, macrotime_unit_s=1e-12, microtime_unit_s=None)
    with pytest.raises(ValueError, match="equal length"):
        g.add([20, 21], [0], [0, 1])


def test_no_coincidences_gives_nan():
    g = G2Pulsed(0, 1, macrotime_unit_s=400e-9, microtime_unit_s=25e-12)
    g.add([0, 1000], [0, 0], [0, 1])
    r = g.result()
    assert r.peak_areas.sum() == 0
    assert np.isnan(r.g2_zero) and np.isnan(r.g2_zero_stderr)
