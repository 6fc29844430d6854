"""``qd-bluesky simulate``, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from qd_bluesky.analysis import read_photons
from qd_bluesky.sim import NO_DOT_STATE, PRESETS, SingleDot


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_static_bias_file(tmp_path: Path) -> None:
    """The file opens in the analysis engine with the right units; the photons are exactly
    those of the library generator with the same seed; the ground truth is stored beside."""
    out = tmp_path / "dot.h5"
    done = cli("--preset", "qd1", "--bias", "-1.7", "--duration", "2", "--seed", "1",
               "--out", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    table = read_photons(out)
    assert table.mode == "T3" and table.rep_rate_hz == 2.5e6
    assert table.microtime_unit_s == 25e-12 and table.microtime_bins == 16000
    assert len(table) == summary["photons"] > 10_000

    ref = SingleDot("qd1", seed=1, bias_v=-1.7).advance(2.0)
    assert np.array_equal(table.macrotime, ref.macrotime)
    assert np.array_equal(table.microtime, ref.microtime)
    assert np.array_equal(table.channel, ref.channel)

    with h5py.File(out) as f:
        assert f["/photon_data/measurement_specs/laser_repetition_rate"][()] == 2.5e6
        assert f["/setup/laser_repetition_rates"][()].tolist() == [2.5e6]
        truth = f["/user/ground_truth"]
        assert np.array_equal(truth["charge_state"][()], ref.charge_state)
        assert np.array_equal(truth["source"][()], ref.source)
        traj_t = f["/user/charge_trajectory/time_s"][()]
        traj_q = f["/user/charge_trajectory/charge"][()]
        assert traj_t[0] == 0.0 and np.all(np.diff(traj_t) > 0)
        assert np.array_equal(traj_q[1:], ref.transitions[0][1])
        assert f["/user/bias_waveform/bias_v"][()].tolist() == [-1.7]
        params = json.loads(f["/user/simulation/parameters_json"][()])
        assert params["preset"] == "qd1" and params["dot"]["tau_x0_s"] == PRESETS["qd1"].tau_x0_s
        assert params["no_dot_charge_state"] == NO_DOT_STATE


def test_cv_file(tmp_path: Path) -> None:
    """CV form: the bias waveform and the charge trajectory follow the scan 0 -> -2 -> 0 V."""
    out = tmp_path / "cv.h5"
    done = cli("--cv", "0:-2:0", "--rate", "1", "--cycles", "2", "--seed", "2",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    with h5py.File(out) as f:
        t = f["/user/bias_waveform/time_s"][()]
        v = f["/user/bias_waveform/bias_v"][()]
        assert t[-1] == pytest.approx(8.0) and v.min() == pytest.approx(-2.0, abs=0.002)
        assert f["/user/cv/corner_bias_v"][()].tolist() == [0.0, -2.0, 0.0, -2.0, 0.0]
        q = f["/user/charge_trajectory/charge"][()]
        qt = f["/user/charge_trajectory/time_s"][()]
        # Highly charged at the vertices (t = 2 s and 6 s), back to X0/X-/X+ at the end.
        assert q[np.searchsorted(qt, 2.0)] <= -6
        assert q[-1] >= -1
    assert read_photons(out).duration_s == pytest.approx(8.0, abs=0.01)


def test_laser_options(tmp_path: Path) -> None:
    out = tmp_path / "fast.h5"
    done = cli("--rep-rate", "5MHz", "--power", "60nW", "--duration", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = read_photons(out)
    assert table.rep_rate_hz == 5e6 and table.microtime_bins == 8000
    with h5py.File(out) as f:
        params = json.loads(f["/user/simulation/parameters_json"][()])
        assert params["power_w"] == 60e-9


def test_ito_damage_needs_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "damage.h5"
    done = cli("--bias", "-2.1", "--duration", "0.5", "--allow-ito-damage", "--out", str(out),
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ito_damaged"] is True


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--preset", "qd3"], "unknown preset"),
        (["--bias", "-2.5"], "outside the potentiostat window"),
        (["--bias", "1.5"], "outside the potentiostat window"),
        (["--bias", "minus one"], "--bias must be a number"),
        (["--duration", "0"], "--duration must be positive"),
        (["--duration", "-5"], "--duration must be positive"),
        (["--cv", "0:-2", "--rate", "0.2"], "START:VERTEX:END"),
        (["--cv", "0:-2:x"], "must be a number"),
        (["--cv", "0:-2:0", "--rate", "0"], "--rate must be positive"),
        (["--cv", "0:-2:0", "--rate", "-1"], "--rate must be positive"),
        (["--cv", "0:-2:0", "--cycles", "0"], "--cycles must be >= 1"),
        (["--cv", "0:-2.5:0"], "outside the potentiostat window"),
        (["--cv", "0:-2:0", "--bias", "-1"], "do not combine"),
        (["--power", "30W"], "laser power"),
        (["--rep-rate", "0"], "--rep-rate must be positive"),
    ],
)
def test_bad_input_one_line_error(tmp_path: Path, args: list[str], word: str) -> None:
    out = tmp_path / "x.h5"
    done = cli(*args, "--out", str(out))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert word in lines[0]
    assert not out.exists()


def test_missing_output_directory(tmp_path: Path) -> None:
    done = cli("--out", str(tmp_path / "no" / "such" / "dir.h5"))
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "does not exist" in done.stderr
