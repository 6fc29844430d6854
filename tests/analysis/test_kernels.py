"""Intensity trace and decay histograms: exact counts, chunking, alignment, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import AnalysisError, DecayHistogram, IntensityTrace

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import generate, random_chunks  # noqa: E402


@pytest.fixture(scope="module")
def stream():
    # 3 s of a blinking dot with background: ~90 k photons, two detectors
    return generate(3.0, [(35e3, 125e-9), (23e3, 42e-9)], dwell_s=0.2, background_cps=500, seed=11)


# ---------------------------------------------------------------- intensity trace


def test_trace_counts_are_the_photons_per_bin(stream):
    tr = IntensityTrace(1e-3, stream.period_s, n_channels=2)
    tr.add(stream.macrotime, stream.channel)
    # 1 ms / 400 ns is exactly 2500 syncs: integer binning is the reference
    bins = stream.macrotime // 2500
    expected = np.zeros((bins.max() + 1, 2), dtype=np.int64)
    np.add.at(expected, (bins, stream.channel), 1)
    np.testing.assert_array_equal(tr.counts, expected)
    np.testing.assert_array_equal(tr.total, expected.sum(axis=1))
    np.testing.assert_allclose(np.diff(tr.times_s), 1e-3, rtol=1e-12)
    assert tr.times_s[0] == 0.0
    np.testing.assert_allclose(tr.rate_cps, expected.sum(axis=1) / 1e-3)


def test_trace_rate_matches_the_truth(stream):
    tr = IntensityTrace(1e-3, stream.period_s)
    tr.add(stream.macrotime, stream.channel)
    truth = stream.state_fraction(np.append(tr.times_s, tr.times_s[-1] + 1e-3))
    expected_cps = truth @ np.array([35e3, 23e3]) + 500.0
    n = len(tr.total) - 1  # the last bin is cut by the end of the recording
    # sum over ~3000 bins of Poisson counts: relative error 1/sqrt(N) ~ 0.3 %; allow 4 sigma
    total = tr.total[:n].sum()
    assert abs(total - expected_cps[:n].sum() * 1e-3) < 4 * np.sqrt(total)
    # each channel sees half of the photons behind the 50/50 splitter (binomial, 4 sigma)
    assert abs(tr.counts[:, 0].sum() / tr.counts.sum() - 0.5) < 4 * 0.5 / np.sqrt(total)


@pytest.mark.parametrize("seed", range(4))
def test_trace_chunked_equals_one_shot(stream, seed):
    one = IntensityTrace(1e-3, stream.period_s)
    one.add(stream.macrotime, stream.channel)
    chunked = IntensityTrace(1e-3, stream.period_s)
    for s in random_chunks(len(stream), np.random.default_rng(seed), 1 + 10 * seed):
        chunked.add(stream.macrotime[s], stream.channel[s])
    np.testing.assert_array_equal(chunked.counts, one.counts)
    np.testing.assert_array_equal(chunked.times_s, one.times_s)


def test_trace_bins_are_aligned_to_t0_not_to_the_first_photon(stream):
    t0 = 12_345  # an acquisition started at an arbitrary sync
    full = IntensityTrace(1e-3, stream.period_s, t0_ticks=t0)
    full.add(stream.macrotime, stream.channel)
    # a live view that only sees photons from some later point on bins them alike
    later = np.searchsorted(stream.macrotime, 1_000_000)
    live = IntensityTrace(1e-3, stream.period_s, t0_ticks=t0)
    live.add(stream.macrotime[later:], stream.channel[later:])
    first_bin = (stream.macrotime[later] - t0) // 2500
    np.testing.assert_array_equal(live.counts[first_bin + 1 :], full.counts[first_bin + 1 :])
    assert live.counts[:first_bin].sum() == 0
    # photons before t0 are not binned but counted
    before = int(np.count_nonzero(stream.macrotime < t0))
    assert full.early == before > 0
    assert full.total.sum() == len(stream) - before
    assert full.times_s[0] == pytest.approx(t0 * stream.period_s, rel=1e-12)


def test_trace_with_a_period_that_is_not_a_whole_number_of_ticks_per_bin():
    # HydraHarp file: sync period 200.0016 ns, so 1 ms is 4999.96 syncs
    unit = 2.000016000128001e-07
    rng = np.random.default_rng(3)
    macrotime = np.sort(rng.integers(0, 50_000_000, 200_000))
    channel = rng.integers(0, 2, len(macrotime)).astype(np.uint8)
    tr = IntensityTrace(1e-3, unit)
    tr.add(macrotime, channel)
    # reference: bin of each photon from its time in seconds
    bins = np.floor(macrotime * unit / 1e-3 + 1e-12).astype(np.int64)
    expected = np.bincount(bins, minlength=len(tr.total))
    # a photon exactly on an edge may fall on either side of it in the two computations
    # (5000 syncs per bin instead would misplace thousands of photons by the end)
    assert np.abs(tr.total - expected).sum() <= 4
    assert tr.total.sum() == len(macrotime)
    np.testing.assert_allclose(np.diff(tr.times_s), 1e-3, rtol=1e-9)


def test_trace_bad_input_gives_one_line_errors():
    tr = IntensityTrace(1e-3, 400e-9, n_channels=2)
    with pytest.raises(AnalysisError, match="channel 2") as err:
        tr.add([1, 2, 3], [0, 2, 1])
    assert "\n" not in str(err.value)
    assert tr.total.sum() == 0  # nothing half-added
    with pytest.raises(ValueError, match="differ in length"):
        tr.add([1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="positive"):
        IntensityTrace(0.0, 400e-9)
    with pytest.raises(ValueError, match="shorter than one macrotime tick"):
        IntensityTrace(1e-9, 400e-9)


# ---------------------------------------------------------------- decay histogram


def test_decay_histogram_counts_and_overflow(stream):
    dh = DecayHistogram(stream.microtime_bins, n_channels=2)
    micro = stream.microtime.copy()
    micro[::1000] = 65535  # out of range: must be counted, never written
    dh.add(micro, stream.channel)
    ok = micro < stream.microtime_bins
    for c in (0, 1):
        expected = np.bincount(micro[ok & (stream.channel == c)], minlength=dh.microtime_bins)
        np.testing.assert_array_equal(dh.counts[c], expected)
    assert dh.overflow == np.count_nonzero(~ok)
    np.testing.assert_array_equal(dh.summed, dh.counts.sum(axis=0))
    assert dh.counts.shape == (2, 16000)


def test_decay_histogram_shows_the_decay(stream):
    dh = DecayHistogram(stream.microtime_bins)
    dh.add(stream.microtime, stream.channel)
    t = (np.arange(dh.microtime_bins) + 0.5) * stream.microtime_unit_s
    delay = (t - stream.decay_start_s) % stream.period_s
    w = stream.time_fraction() * np.array([35e3, 23e3])
    taus = np.array([125e-9, 42e-9])
    period = stream.period_s

    def expected(a, b):
        # time-weighted mix of the two periodic decays plus the flat background
        decay = (np.exp(-a / taus) - np.exp(-b / taus)) / (1 - np.exp(-period / taus))
        return stream.duration_s * (np.sum(w * decay) + stream.background_cps * (b - a) / period)

    # windows from just after the IRF to the tail just before the next pulse (the ~4 % of a
    # 125 ns decay that wraps around); each count within 5 Poisson sigmas
    for a, b in [
        (0.5e-9, 2e-9),
        (10e-9, 50e-9),
        (100e-9, 140e-9),
        (period - 2e-9, period - 0.5e-9),
    ]:
        measured = dh.summed[(delay >= a) & (delay < b)].sum()
        assert abs(measured - expected(a, b)) < 5 * np.sqrt(expected(a, b)), (a, b)


@pytest.mark.parametrize("seed", range(3))
def test_decay_histogram_chunked_equals_one_shot(stream, seed):
    one = DecayHistogram(stream.microtime_bins)
    one.add(stream.microtime, stream.channel)
    chunked = DecayHistogram(stream.microtime_bins)
    for s in random_chunks(len(stream), np.random.default_rng(seed), 7):
        chunked.add(stream.microtime[s], stream.channel[s])
    np.testing.assert_array_equal(chunked.counts, one.counts)


def test_decay_histogram_bad_input():
    with pytest.raises(ValueError, match="microtime_bins"):
        DecayHistogram(0)
    dh = DecayHistogram(100, n_channels=1)
    with pytest.raises(AnalysisError, match="channel 1, .*n_channels=1"):
        dh.add([1, 2], [0, 1])
