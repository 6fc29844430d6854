"""``feed_photons``: the one-pass kernel leaves every accumulator exactly as its own ``add``
does, in any chunking and with one or two threads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import (
    AnalysisError,
    DecayHistogram,
    Flid,
    G2Pulsed,
    IntensityTrace,
    _feed,
    flid_lifetimes,
)
from qd_bluesky.analysis._feed import feed_photons
from qd_bluesky.analysis._kernels import bin_span

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import generate  # noqa: E402


@pytest.fixture(scope="module")
def stream():
    # Bright enough for many coincidences within the g2 window; blinking for uneven bins.
    return generate(
        1.5, ((400e3, 30e-9), (150e3, 5e-9)), dwell_s=0.05, background_cps=500, g2_zero=0.3
    )


def accumulators(syn, t0, *, trace_bin_s=1e-3, flid_bin_s=20e-3, n_channels=2):
    return dict(
        trace=IntensityTrace(trace_bin_s, syn.period_s, t0_ticks=t0, n_channels=n_channels),
        decay=DecayHistogram(syn.microtime_bins, n_channels),
        flid=Flid(flid_bin_s, syn.period_s, syn.microtime_unit_s, syn.microtime_bins, t0_ticks=t0),
        g2=G2Pulsed(0, 1, macrotime_unit_s=syn.period_s, microtime_unit_s=syn.microtime_unit_s),
    )


def state(acc):
    tr, dh, fl, g2 = acc["trace"], acc["decay"], acc["flid"], acc["g2"]
    return [
        tr.counts, tr.early, dh.counts, dh.overflow, fl.counts, fl.histograms, fl.early,
        fl.overflow, g2._peaks, g2._hist, g2.n_a, g2.n_b, g2._tail_m, g2._tail_u, g2._tail_c,
    ]  # fmt: skip


def assert_same(a, b):
    for x, y in zip(state(a), state(b), strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize(
    "chunk, workers, bins",
    [
        (None, 1, (1e-3, 20e-3)),
        (None, 2, (1e-3, 20e-3)),
        (4999, 1, (1e-3, 20e-3)),
        (300_000, 2, (1e-3, 20e-3)),
        # bins that are not whole numbers of 400 ns ticks: edges between ticks
        (70_001, 2, (1.0003e-3, 7.7777e-3)),
    ],
)
def test_one_pass_equals_each_accumulators_own_add(stream, monkeypatch, chunk, workers, bins):
    monkeypatch.setattr(_feed, "MIN_SPLIT_PHOTONS", 1000)
    m, u, c = stream.macrotime, stream.microtime.copy(), stream.channel
    u[::997] = stream.microtime_bins + 5  # some overflows
    t0 = int(m[0]) + 20_000  # photons before t0 are "early" for the binned ones
    ref = accumulators(stream, t0, trace_bin_s=bins[0], flid_bin_s=bins[1])
    ref["trace"].add(m, c)
    ref["decay"].add(u, c)
    ref["flid"].add(m, u)
    ref["g2"].add(m, u, c)
    assert ref["trace"].early > 0 and ref["flid"].overflow > 0 and ref["g2"]._peaks[3] > 0
    got = accumulators(stream, t0, trace_bin_s=bins[0], flid_bin_s=bins[1])
    step = chunk or len(m)
    for a in range(0, len(m), step):
        s = slice(a, a + step)
        feed_photons(m[s], u[s], c[s], workers=workers, **got)
    assert_same(ref, got)


def test_bin_span_is_the_set_of_delays_of_a_bin():
    rng = np.random.default_rng(3)
    for tpb in (1.0, 2500.0, 2500.0000001, 3.3333333333, 7777.7, 1e7 / 3):
        for b in rng.integers(0, 10**9, 50):
            lo, hi = bin_span(np.int64(b), tpb)
            assert lo < hi
            assert np.int64(lo / tpb) == b and np.int64((hi - 1) / tpb) == b
            assert np.int64((lo - 1) / tpb) == b - 1 and np.int64(hi / tpb) == b + 1


def test_out_of_order_and_bad_channel_are_one_line_errors(stream):
    m, u, c = stream.macrotime[:5000].copy(), stream.microtime[:5000], stream.channel[:5000]
    m[100], m[101] = m[101], m[100] - 1
    acc = accumulators(stream, int(m[0]))
    with pytest.raises(AnalysisError, match="out of time order: .*photon 101 of the chunk"):
        feed_photons(m, u, c, **acc)
    c3 = stream.channel[:5000].copy()
    c3[7] = 2
    with pytest.raises(AnalysisError, match="photon on channel 2"):
        feed_photons(stream.macrotime[:5000], u, c3, **accumulators(stream, int(m[0])))


def test_flid_lifetimes_on_two_threads_are_the_same_numbers(stream):
    flid = accumulators(stream, int(stream.macrotime[0]), flid_bin_s=2e-3)["flid"]
    flid.add(stream.macrotime, stream.microtime)
    kw = dict(
        coarse_bin_s=flid.coarse_bin_s,
        period_s=stream.period_s,
        decay_start_s=5e-9,
        background_counts=np.linspace(0, 3, len(flid.histograms)),
        irf_fwhm_s=0.4e-9,
    )
    one = flid_lifetimes(flid.histograms, **kw, workers=1)
    two = flid_lifetimes(flid.histograms, **kw, workers=2)
    assert len(flid.histograms) >= 700 and np.isfinite(one[0]).mean() > 0.9
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
