"""``qd-bluesky demo --quick``: runs, derived runs, report and the paper's numbers.

Tolerances are the paper's bands for qd1 (docs/physics.md), which the simulator is calibrated
to; with the quick demo's 8 s dwells (45 s at 0 V) the statistical errors are well inside them
(-2 V: ~11 000 photons, lifetime error ~0.01 ns; intensity drop error ~1 %), except the FLID-based
X0 lifetime, which runs up to ~10 % low (bins that straddle a blink), hence its band is widened
below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIGURES = (
    "intensity_trace.png",
    "decay_histograms.png",
    "flid.png",
    "g2.png",
    "bias_dependence.png",
    "cv_scan.png",
    "levels.png",
    "dwell_times.png",
    "flid_levels.png",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "qd_bluesky.cli",
            "demo",
            "--quick",
            "--no-progress",
            "--json",
            "--data-dir",
            str(data),
        ],
        cwd=data,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, json.loads(proc.stdout)


def test_runs_are_in_the_catalog(demo):
    data, out = demo
    assert set(out["raw_uids"]) == {"find_dot", "bias_steps", "cv_scan", "g2_measurement"}
    assert set(out["derived_uids"]) >= {"bias_steps", "cv_scan", "g2_measurement"}
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", "runs", "--json", "--data-dir", str(data)],
        cwd=data,
        capture_output=True,
        text=True,
        timeout=120,
    )
    runs = {r["uid"]: r for r in json.loads(proc.stdout)}
    for name, uid in out["raw_uids"].items():
        assert runs[uid]["kind"] == "raw" and runs[uid]["exit_status"] == "success", name
        assert runs[uid]["plan_name"] == name
    for name, uid in out["derived_uids"].items():
        assert runs[uid]["kind"] == "derived" and runs[uid]["exit_status"] == "success", name
        assert runs[uid]["raw_uid"] == out["raw_uids"][name]


def test_report_files(demo):
    _, out = demo
    report = Path(out["report_dir"])
    for name in FIGURES:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (report / name).stat().st_size > 20_000, name  # a drawn figure, not a blank
    assert json.loads((report / "summary.json").read_text()) == out["summary"]
    table = (report / "summary.md").read_text()
    assert table.count("\n| ") == 1 + 5  # the rule and one row per bias


def test_summary_reproduces_the_paper(demo):
    summary = demo[1]["summary"]
    rows = {round(r["bias_v"], 2): r for r in summary["per_bias"]}
    assert sorted(rows) == [-2.0, -1.8, -1.7, -1.4, 0.0]
    assert 125 - 6 - 12.5 <= summary["tau_x0_ns"] <= 125 + 6
    assert abs(summary["gamma_ratio"] - 0.5) <= 0.1
    assert abs(rows[-2.0]["lifetime_ns"] - 0.9) <= 0.2
    assert abs(rows[-2.0]["enhancement"] - 140) <= 30
    assert abs(rows[-2.0]["intensity_drop"] - 25) <= 4
    # mean rates: ~20 kc/s at -1.4 V and ~10 kc/s at -1.7 V (simulator calibration, +-10 %)
    assert abs(rows[-1.4]["intensity_cps"] / 20e3 - 1) <= 0.1
    assert abs(rows[-1.7]["intensity_cps"] / 10e3 - 1) <= 0.1
    # the lifetime shortens monotonically with charging
    taus = [rows[b]["lifetime_ns"] for b in (0.0, -1.4, -1.7, -1.8, -2.0)]
    assert taus == sorted(taus, reverse=True)
    assert rows[0.0]["g2_zero"] < 0.5 and rows[-1.4]["g2_zero"] < 0.5
    # blinking to the dim X+ is suppressed at -1.4 V (the levels' blinking stream)
    assert rows[0.0]["dim_fraction"] > rows[-1.4]["dim_fraction"]
    assert rows[0.0]["switching_rate_hz"] > rows[-1.4]["switching_rate_hz"]


def test_report_rebuilds_from_the_catalog(demo, tmp_path):
    data, out = demo
    raw = out["raw_uids"]["bias_steps"]
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "qd_bluesky.cli",
            "report",
            raw[:8],
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "again"),
            "--json",
        ],
        cwd=data,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(proc.stdout)
    # The same derived run gives the same numbers as the demo's own report.
    by_bias = {r["bias_v"]: r for r in again["summary"]["per_bias"]}
    for row in out["summary"]["per_bias"]:
        assert by_bias[row["bias_v"]]["lifetime_ns"] == row["lifetime_ns"]
        assert by_bias[row["bias_v"]]["enhancement"] == row["enhancement"]
    assert (tmp_path / "again" / "flid.png").stat().st_size > 20_000
    assert (tmp_path / "again" / "bias_dependence.png").exists()
