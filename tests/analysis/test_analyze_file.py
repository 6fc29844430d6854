"""``analyze_file`` end to end: synthetic streams with known truth, and the real PicoQuant files.

The synthetic recordings are written to Photon-HDF5 first, so the whole path (reader, kernels,
fits, summary) is exercised as a user runs it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import (
    AnalysisError,
    PhotonTable,
    analyze_file,
    read_ptu,
    write_photon_hdf5,
)

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import expected_g2_zero, generate  # noqa: E402

DATA = Path(__file__).parents[1] / "data"
T3_FILES = ["hydraharp_v10_t3.ptu", "hydraharp_v20_t3.ptu"]


def write_synthetic(path: Path, syn) -> Path:
    write_photon_hdf5(path, syn.table(), description="synthetic, known truth")
    return path


def test_125ns_with_periodic_tail(tmp_path):
    # 2 M photons of a 125 ns decay at 2.5 MHz: the periodic tail holds ~4 % of the photons.
    # 1/sqrt(N) = 0.07 % would be the error with a known background; the fit frees it, and a
    # flat level correlates with a 125 ns tail in a 400 ns window: the fit's stated error is
    # ~0.23 % (its honesty is checked in test_fit.py). 4 of them: < 1 %, where a fit without
    # the periodic tail is off by > 5 %.
    syn = generate(2e6 / 35e3, ((35e3, 125e-9),), seed=11)
    result = analyze_file(write_synthetic(tmp_path / "x0.h5", syn))
    assert result["format"] == "photon-hdf5"
    assert result["photons"] == len(syn)
    assert result["rep_rate_hz"] == pytest.approx(2.5e6)
    stderr = result["decay"]["tau_stderr_ns"][0]
    assert stderr < 0.003 * 125.0
    assert abs(result["lifetime_ns"] - 125.0) < 4 * stderr
    assert result["decay"]["model"] == "mono"


def test_0p9ns_against_0p4ns_irf(tmp_path):
    # 0.9 ns with a 0.4 ns FWHM IRF and 200 k photons: stated SE(tau) ~ 2.2 ps (Fisher, about
    # tau / sqrt(N) broadened by the IRF); 4 of them is 9 ps, where a fit that ignores the IRF
    # reads ~0.98 ns (~40 SE off).
    syn = generate(200e3 / 10e3, ((10e3, 0.9e-9),), irf_fwhm_s=0.4e-9, seed=12)
    result = analyze_file(write_synthetic(tmp_path / "fast.h5", syn))
    stderr = result["decay"]["tau_stderr_ns"][0]
    assert stderr < 0.004
    assert abs(result["lifetime_ns"] - 0.9) < 4 * stderr
    assert result["decay"]["irf_fwhm_ns"] == pytest.approx(0.4)


def test_blinking_trace_flid_separates_states(tmp_path):
    # X0 (125 ns, 35 kc/s) <-> X- (42 ns, 23 kc/s), 200 ms dwells, 20 ms FLID bins of 460-700
    # photons: per-bin lifetime sd ~5 %, so the two states (a factor 3 apart) cannot be confused.
    syn = generate(20.0, ((35e3, 125e-9), (23e3, 42e-9)), dwell_s=0.2, seed=13)
    result = analyze_file(write_synthetic(tmp_path / "blink.h5", syn), bin_ms=20.0)
    tau = np.array([np.nan if t is None else t for t in result["flid"]["lifetime_ns"]])
    rate = np.array(result["flid"]["intensity_cps"])
    truth = syn.state_fraction(np.arange(len(rate) + 1) * 20e-3)  # time fraction per state
    pure_x0 = truth[:, 0] > 0.999
    pure_xm = truth[:, 1] > 0.999
    assert pure_x0.sum() > 100 and pure_xm.sum() > 100
    # The mean lifetime of the pure bins within 4 standard errors of the mean (sd/sqrt(n), from
    # the bins' own scatter: ~5 % per bin, ~0.2 % for the ~500 X0 bins); an estimator biased by
    # 1 % is ~4 of them off on X0.
    for pure, lifetime in ((pure_x0, 125.0), (pure_xm, 42.0)):
        t = tau[pure]
        assert np.isfinite(t).all()
        assert t.std() < 0.07 * lifetime  # per-bin scatter ~1/sqrt(photons per bin)
        assert abs(t.mean() - lifetime) < 4 * t.std(ddof=1) / math.sqrt(t.size)
    # Rate per pure bin is Poisson: sd = sqrt(700)/0.02 s ~ 1.3 kc/s; the mean over >300 bins
    # has SE < 0.08 kc/s; 4 SE = 0.3 kc/s.
    assert rate[pure_x0].mean() == pytest.approx(35e3, abs=300)
    assert rate[pure_xm].mean() == pytest.approx(23e3, abs=300)
    # One threshold halfway (in log) between the states classifies >= 90 % of pure bins right.
    threshold = math.sqrt(125 * 42)
    right = np.concatenate([tau[pure_x0] > threshold, tau[pure_xm] < threshold])
    assert right.mean() >= 0.9


@pytest.mark.parametrize(
    "truth, lifetime, duration, rate",
    [(0.1, 20e-9, 60.0, 60e3), (0.5, 20e-9, 60.0, 60e3), (0.0, 200e-9, 20.0, 100e3)],
    ids=["0.1", "0.5", "200ns"],
)
def test_known_g2_zero(tmp_path, truth, lifetime, duration, rate):
    # >= 1e4 coincidences per side peak: the Poisson error of g2(0) is < 0.01 (stated, and
    # checked against the scatter of draws in test_g2.py); 4 of them.
    syn = generate(duration, ((rate, lifetime),), g2_zero=truth, seed=14)
    result = analyze_file(write_synthetic(tmp_path / "g2.h5", syn))
    expected = expected_g2_zero(syn)
    stderr = result["g2_zero_stderr"]
    assert stderr < 0.01
    assert abs(result["g2_zero"] - expected) < 4 * stderr
    if lifetime > 0.25 * syn.period_s:
        # Here the +-T/2 windows matter: +-T/4 ones would read 0.08 (> 10 SE) lower.
        assert expected - expected_g2_zero(syn, half_window=0.25) > 10 * stderr
        # and the decay, 13 % of it in the tails of earlier pulses, has the right lifetime
        # (2 M photons: stated SE ~0.14 %; 4 of them)
        tau_stderr = result["decay"]["tau_stderr_ns"][0]
        assert abs(result["lifetime_ns"] - lifetime * 1e9) < 4 * tau_stderr


@pytest.mark.parametrize("name", T3_FILES)
def test_real_t3_files_are_antibunched(name):
    result = analyze_file(DATA / name)
    table = read_ptu(DATA / name)
    assert result["format"] == "ptu"
    assert result["mode"] == "T3"
    assert result["photons"] == len(table)
    assert result["channels"] == [0, 1]
    assert result["rep_rate_hz"] == pytest.approx(table.rep_rate_hz)
    # A single emitter: g2(0) well below 0.5, by more than 3 standard errors.
    assert result["g2_zero"] + 3 * result["g2_zero_stderr"] < 0.5
    # The files hold multi-exponential decays with tens-of-ns components.
    assert 10 < result["lifetime_ns"] < 100
    assert sum(result["decay"]["fraction"]) == pytest.approx(1.0)
    n_bins = len(result["flid"]["intensity_cps"])
    assert n_bins == pytest.approx(result["duration_s"] / 0.02, abs=1.5)
    # The FLID intensities add up to the photons (each bin rate x 20 ms = its counts).
    total = sum(result["flid"]["intensity_cps"]) * 0.02
    assert total == pytest.approx(result["photons"], rel=1e-9)


def test_ptu_and_photon_hdf5_give_the_same_answer(tmp_path):
    source = DATA / "hydraharp_v10_t3.ptu"
    h5 = tmp_path / "same.h5"
    write_photon_hdf5(h5, read_ptu(source))
    a, b = analyze_file(source), analyze_file(h5)
    for key in ("source", "format"):
        a.pop(key), b.pop(key)
    assert a == b


def test_t2_file_has_no_lifetime_but_a_trace():
    result = analyze_file(DATA / "picoharp_v30_t2.ptu")
    assert result["mode"] == "T2"
    assert result["lifetime_ns"] is None and result["decay"] is None
    assert result["g2_zero"] is None  # no laser sync recorded
    rates = result["flid"]["intensity_cps"]
    assert sum(rates) * 0.02 == pytest.approx(result["photons"], rel=1e-9)
    assert all(t is None for t in result["flid"]["lifetime_ns"])
    with pytest.raises(AnalysisError, match="T2"):
        analyze_file(DATA / "picoharp_v30_t2.ptu", require=["lifetime"])


def test_one_channel_file_asked_for_g2(tmp_path):
    table = read_ptu(DATA / "hydraharp_v20_t3.ptu")
    keep = table.channel == 0
    one = PhotonTable(
        table.macrotime[keep],
        table.microtime[keep],
        table.channel[keep],
        table.macrotime_unit_s,
        table.microtime_unit_s,
        table.microtime_bins,
        table.rep_rate_hz,
        "T3",
    )
    path = write_photon_hdf5(tmp_path / "one.h5", one)
    result = analyze_file(path)
    assert result["channels"] == [0] and result["g2_zero"] is None
    with pytest.raises(AnalysisError, match="two detector channels") as info:
        analyze_file(path, require=["g2"])
    assert "\n" not in str(info.value) and "one.h5" in str(info.value)
