"""The blinking part of the report: levels, dwell-time and level-FLID figures, and the summary's
dim-state fraction and switching rate per bias."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from qd_bluesky.report import summarize, summary_markdown, write_report

ON_CPS, OFF_CPS, HELD_CPS = 40e3, 4e3, 20e3


def derived_blinking() -> dict:
    """0 V: 200 alternating on/off levels with power-law dwells; -1.4 V: one held level."""
    rng = np.random.default_rng(1)
    dwell = 0.01 * (1 - rng.uniform(size=200)) ** (-1 / 0.8)  # alpha = 1.8 above 10 ms
    start = np.concatenate(([0.0], np.cumsum(dwell)[:-1]))
    end = np.cumsum(dwell)
    rate = np.where(np.arange(200) % 2 == 0, ON_CPS, OFF_CPS)
    t_held = end[-1]
    start = np.append(start, t_held)
    end = np.append(end, t_held + 10.0)
    rate = np.append(rate, HELD_CPS)
    photons = np.maximum(1, np.round(rate * (end - start))).astype(np.int64)
    segment = np.r_[np.zeros(200, int), 1]
    bias = np.where(segment == 0, 0.0, -1.4)
    tau = np.where(rate == ON_CPS, 20.0, np.where(rate == OFF_CPS, 5.0, 12.0))
    n_bins = int(end[-1] / 0.02)
    centre = (np.arange(n_bins) + 0.5) * 0.02
    k = np.minimum(np.searchsorted(end, centre), len(end) - 1)
    counts = rng.poisson(np.repeat(rate[k] * 1e-3, 20).reshape(n_bins, 20))
    seconds = n_bins // 50
    return {
        "trace": {
            "time_s": np.arange(seconds, dtype=float),
            "counts": counts[: seconds * 50].reshape(seconds, 1000),
        },
        "flid": {
            "time_s": centre - 0.01,
            "intensity_cps": counts.sum(axis=1) / 0.02,
            "lifetime_ns": tau[k] * rng.normal(1, 0.1, n_bins),
            "segment": segment[k],
            "bias_v": bias[k],
        },
        "levels": {
            "start_s": start,
            "end_s": end,
            "photons": photons,
            "intensity_cps": photons / (end - start),
            "lifetime_ns": tau,
            "segment": segment,
            "bias_v": bias,
        },
        "bias_dependence": {
            "bias_v": np.array([0.0, -1.4]),
            "lifetime_ns": np.array([18.0, 12.0]),
            "intensity_cps": np.array([30e3, 20e3]),
            "enhancement": np.array([1.0, 1.5]),
            "intensity_drop": np.array([1.0, 1.5]),
        },
        "blinking": {
            "segment": np.array([0, 1]),
            "bias_v": np.array([0.0, -1.4]),
            "duration_s": np.array([t_held, 10.0]),
            "dim_fraction": np.array([0.3, 0.0]),
            "switching_rate_hz": np.array([5.5, 0.0]),
        },
    }


def test_blinking_figures_are_drawn(tmp_path):
    report = write_report(tmp_path / "r", [("raw", derived_blinking())])
    names = {p.name for p in report.figures}
    assert {"levels.png", "dwell_times.png", "flid_levels.png"} <= names
    for path in report.figures:
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500, path.name


def test_blinking_figures_need_levels(tmp_path):
    data = derived_blinking()
    del data["levels"]
    names = {p.name for p in write_report(tmp_path / "r", [("raw", data)]).figures}
    assert not names & {"levels.png", "dwell_times.png", "flid_levels.png"}


def test_summary_gives_the_dim_fraction_and_switching_rate_per_bias():
    summary = summarize(derived_blinking())
    rows = {r["bias_v"]: r for r in summary["per_bias"]}
    assert rows[0.0]["dim_fraction"] == pytest.approx(0.3)
    assert rows[0.0]["switching_rate_hz"] == pytest.approx(5.5)
    assert (rows[-1.4]["dim_fraction"], rows[-1.4]["switching_rate_hz"]) == (0.0, 0.0)
    md = summary_markdown(summary)
    assert "| dim fraction | switching (1/s) |" in md
    assert "| 0.300 | 5.5 |" in md
