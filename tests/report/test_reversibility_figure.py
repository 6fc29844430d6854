"""The reversibility figure of bias-cycling runs: drawn from the per-cycle stream, else skipped."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from qd_bluesky.report import write_report


def reversibility(cycles: int) -> dict:
    rng = np.random.default_rng(1)
    return {
        "segment": np.arange(cycles),
        "time_s": 20.0 * np.arange(cycles),
        "bias_v": np.zeros(cycles),
        "bins": np.full(cycles, 50),
        "intensity_cps": rng.normal(35e3, 190, cycles),
        "lifetime_ns": rng.normal(125, 1, cycles),
    }


def test_figure_drawn_for_many_cycles(tmp_path):
    report = write_report(tmp_path, [("raw", {"reversibility": reversibility(540)})])
    names = [p.name for p in report.figures]
    assert names == ["reversibility.png"]
    image = imread(report.figures[0])
    assert image.shape[0] > 300 and image.std() > 0  # a drawn figure, not a blank canvas


def test_figure_skipped_for_one_cycle(tmp_path):
    report = write_report(tmp_path, [("raw", {"reversibility": reversibility(1)})])
    assert "reversibility.png" not in [p.name for p in report.figures]
