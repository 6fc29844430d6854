"""The report: numbers carried faithfully into summary.json/summary.md, figures drawn or skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from qd_bluesky.analysis import ScalingModel
from qd_bluesky.report import derived_from_documents, summarize, summary_markdown, write_report

BIASES = np.array([0.0, -1.4, -2.0])
TAU = np.array([125.0, 30.0, 0.9])
INTENSITY = np.array([35e3, 20e3, 1.4e3])


def derived_steps() -> dict:
    rng = np.random.default_rng(0)
    model = ScalingModel(0.5, 125e-9, 35e3)
    tau_s, inten = model.state_points(4)
    flid_tau = np.repeat(tau_s * 1e9, 50) * rng.normal(1, 0.05, 250)
    flid_i = np.repeat(inten, 50) * rng.normal(1, 0.05, 250)
    occ, ie, te = np.histogram2d(flid_i, flid_tau, bins=(30, 40))
    t = np.arange(400) * 400e-9 / 400
    return {
        "trace": {"time_s": np.arange(5.0), "counts": rng.poisson(30, (5, 1000))},
        "decay": {
            "bias_v": BIASES,
            "counts": rng.poisson(100 * np.exp(-t / 50e-9), (3, 400)),
            "lifetime_ns": TAU,
        },
        "g2": {
            "bias_v": BIASES,
            "g2_zero": np.array([0.2, 0.3, 0.55]),
            "g2_zero_stderr": np.array([0.02, 0.03, 0.1]),
            "tau_s": np.tile(np.linspace(-1.4e-6, 1.4e-6, 1400), (3, 1)),
            "counts": rng.poisson(5, (3, 1400)),
        },
        "bias_dependence": {
            "bias_v": BIASES,
            "lifetime_ns": TAU,
            "intensity_cps": INTENSITY,
            "enhancement": TAU[0] / TAU,
            "intensity_drop": INTENSITY[0] / INTENSITY,
            "g2_zero": np.array([0.2, 0.3, 0.55]),
        },
        "flid_map": {
            "occurrence": occ[None],
            "intensity_edges_cps": ie[None],
            "lifetime_edges_ns": te[None],
        },
        "scaling": {
            "gamma_ratio": np.array([0.5]),
            "gamma_ratio_stderr": np.array([0.02]),
            "tau_x0_ns": np.array([125.0]),
            "intensity_x0_cps": np.array([35e3]),
            "tau_xm_ns": np.array([41.7]),
            "last_state_following_model": np.array(["X2-"]),
        },
    }


def derived_cv() -> dict:
    bias = np.linspace(0, -2, 100)
    return {
        "tomography": {
            "time_s": np.arange(100) * 0.02,
            "bias_v": bias,
            "intensity_cps": 35e3 / (1 - 5 * bias),
            "lifetime_ns": 125.0 / (1 - 60 * bias),
            "charge_state": np.arange(100) // 10,
        },
        "scaling": {
            "gamma_ratio": np.array([0.45]),
            "tau_x0_ns": np.array([125.0]),
            "intensity_x0_cps": np.array([35e3]),
            "last_state_following_model": np.array(["X4-"]),
        },
    }


def test_summary_carries_the_numbers():
    summary = summarize(derived_steps(), raw_uid="abc")
    assert [row["bias_v"] for row in summary["per_bias"]] == list(BIASES)
    assert [row["lifetime_ns"] for row in summary["per_bias"]] == list(TAU)
    assert summary["per_bias"][2]["enhancement"] == pytest.approx(125 / 0.9)
    assert summary["per_bias"][2]["intensity_drop"] == pytest.approx(25.0)
    assert summary["per_bias"][1]["g2_zero"] == 0.3
    assert summary["per_bias"][1]["g2_zero_stderr"] == 0.03
    assert summary["gamma_ratio"] == 0.5 and summary["last_state_following_model"] == "X2-"
    md = summary_markdown(summary)
    assert "| -2.00 | 0.9 | 1.4 | 139 | 25 | 0.55 ± 0.10 |" in md
    assert "X0 at 0 V (tau = 125 ns, I = 35 kc/s, from the FLID)" in md
    assert "gammaA/gamma0 = 0.50 ± 0.02" in md


def test_report_prefers_the_cv_scan_for_the_last_state(tmp_path):
    report = write_report(tmp_path / "r", [("steps", derived_steps()), ("cv", derived_cv())])
    stored = json.loads(report.summary_json.read_text())  # strict JSON: no NaN
    assert stored["gamma_ratio"] == 0.5  # from the static 0 V trace
    assert stored["last_state_following_model"] == "X4-"  # from the CV tomography
    assert stored["runs"] == ["steps", "cv"]
    names = {p.name for p in report.figures}
    assert names == {
        "intensity_trace.png",
        "decay_histograms.png",
        "flid.png",
        "g2.png",
        "bias_dependence.png",
        "cv_scan.png",
    }
    for path in report.figures:
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500  # a real picture, not a stub
    assert report.summary_md.read_text().startswith("| bias (V) |")


def test_figures_need_their_streams(tmp_path):
    report = write_report(tmp_path / "cv", [("cv", derived_cv())])
    assert [p.name for p in report.figures] == ["cv_scan.png"]
    assert json.loads(report.summary_json.read_text())["per_bias"] == []


def test_documents_are_collected_per_stream():
    docs = [
        ("start", {"uid": "s"}),
        ("descriptor", {"uid": "d1", "name": "flid", "run_start": "s"}),
        ("descriptor", {"uid": "d2", "name": "decay", "run_start": "s"}),
        ("event", {"descriptor": "d1", "data": {"lifetime_ns": 1.0}}),
        ("event_page", {"descriptor": "d1", "data": {"lifetime_ns": [2.0, 3.0]}}),
        ("event", {"descriptor": "d2", "data": {"counts": [1, 2]}}),
    ]
    derived = derived_from_documents(docs)
    assert derived["flid"]["lifetime_ns"].tolist() == [1.0, 2.0, 3.0]
    assert derived["decay"]["counts"].tolist() == [[1, 2]]
