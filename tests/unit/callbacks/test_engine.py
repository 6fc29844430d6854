"""The callbacks engine schedules the analysis's accumulators: per segment, per window, and a
live run equals its replay, on synthetic documents."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rawrun import RawRun, simulate_steps

from qd_bluesky.analysis import DEFAULT_CHANNELS, StreamUnits, fit_decay, trace_accumulator
from qd_bluesky.callbacks import AnalysisSettings, LiveAnalyzer
from qd_bluesky.callbacks._bins import WindowedBins
from qd_bluesky.callbacks._segments import SegmentAccumulator

SETTINGS = AnalysisSettings(calibration_photons=5_000, window_s=1.0)


@pytest.fixture(scope="module")
def photons():
    """qd1 at 0 V then -2 V, half a second each."""
    return simulate_steps([0.0, -2.0], 0.5, seed=21)


def units_of(p) -> StreamUnits:
    return StreamUnits(1 / p.rep_rate_hz, p.microtime_unit_s, p.microtime_bins, p.rep_rate_hz)


def test_segment_result_is_the_fit_step_with_its_segment(photons):
    p = photons
    a, b = p.step_rows[0], p.step_rows[1]
    acc = SegmentAccumulator(0, 0.0, units_of(p), DEFAULT_CHANNELS)
    acc.add(p.macrotime[a:b], p.microtime[a:b], p.channel[a:b])
    r = acc.result(irf_fwhm_s=SETTINGS.irf_fwhm_s)
    assert (r.segment, r.bias_v, r.photons) == (0, 0.0, b - a)
    mono = fit_decay(
        r.decay, p.microtime_unit_s, period_s=1 / p.rep_rate_hz, irf_fwhm_s=SETTINGS.irf_fwhm_s
    )
    assert r.mono.tau_s == mono.tau_s  # the mono-exponential of the fit step, not a refit
    assert r.fit is not None and r.fit_problem is None and r.g2 is not None
    assert r.intensity_cps == pytest.approx((b - a) / r.duration_s)


def test_a_failed_fit_names_its_segment(photons):
    p = photons
    cal = SegmentAccumulator(-1, math.nan, units_of(p), DEFAULT_CHANNELS, with_g2=False)
    cal.add(p.macrotime[:50], p.microtime[:50], p.channel[:50])
    r = cal.result(irf_fwhm_s=SETTINGS.irf_fwhm_s)
    assert r.fit is None and r.g2 is None
    assert r.fit_problem.startswith("the calibration rows: no decay fit (too few photons")


@pytest.mark.parametrize("window_bins", [None, 3, 40])
def test_windowed_intensity_bins_equal_one_trace(photons, window_bins):
    p = photons
    units, t0 = units_of(p), int(p.macrotime[0])
    one = trace_accumulator(units, 0.01, t0_ticks=t0, n_channels=2)
    one.add(p.macrotime, p.channel)
    win = WindowedBins(
        lambda t: trace_accumulator(units, 0.01, t0_ticks=t, n_channels=2),
        t0_ticks=t0,
        window_bins=window_bins,
    )
    got = []
    for part in np.array_split(np.arange(len(p)), 9):
        win.add(p.macrotime[part], p.microtime[part], p.channel[part])
        got.append(win.take(win.last_bin)[0])
    got.append(win.take(win.last_bin + 1)[0])
    np.testing.assert_array_equal(np.concatenate(got), one.total)


def derived_streams(docs) -> dict[str, dict[str, np.ndarray]]:
    out: list[tuple[str, dict]] = []
    analyzer = LiveAnalyzer(lambda n, d: out.append((n, d)), settings=SETTINGS, threaded=False)
    for name, doc in docs:
        analyzer(name, doc)
    assert analyzer.wait(30)
    analyzer.close()
    names = {d["uid"]: d["name"] for n, d in out if n == "descriptor"}
    data: dict[str, dict[str, list]] = {}
    for name, doc in out:
        if name == "event_page":
            stream = data.setdefault(names[doc["descriptor"]], {})
            for key, values in doc["data"].items():
                stream.setdefault(key, []).extend(values)
    return {s: {k: np.asarray(v) for k, v in f.items()} for s, f in data.items()}


def test_live_equals_replay_on_synthetic_documents(photons, tmp_path):
    raw = RawRun(photons, tmp_path / "r.h5")
    cuts = np.unique(np.r_[0, np.random.default_rng(1).integers(1, len(photons), 25)])
    live = derived_streams(raw.live([*cuts.tolist(), len(photons)]))
    replayed = derived_streams(raw.replay())
    assert sorted(live) == sorted(replayed)
    for stream, fields in live.items():
        for key, values in fields.items():
            np.testing.assert_array_equal(values, replayed[stream][key], err_msg=stream + key)


def test_the_derived_start_records_the_same_settings():
    """The settings in the derived start (which a replay reads back) keep their names."""
    md = AnalysisSettings().metadata()
    assert set(md["settings"]) == {
        "flid_bin_s",
        "trace_bin_s",
        "trace_event_s",
        "calibration_photons",
        "irf_fwhm_s",
        "step_rows",
        "window_s",
        "flid_map_bins",
        "state_tolerance",
        "start_window_v",
        "confidence",
    }
    assert (md["flid_bin_ms"], md["trace_bin_ms"], md["irf_fwhm_ns"]) == (20.0, 1.0, 0.4)
