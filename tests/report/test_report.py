"""The report: numbers carried faithfully into summary.json/summary.md, figures drawn or skipped."""

from __future__ import annotations

import json
from pathlib import Path

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


# --- what the figures plot -------------------------------------------------------------------


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Write the report of the steps and CV runs; the matplotlib Figures by file name."""
    from matplotlib.figure import Figure

    figures = {}
    save = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return save(fig, path, *args, **kwargs)

    steps, cv = derived_steps(), derived_cv()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", keep)
        write_report(tmp_path_factory.mktemp("r"), [("steps", steps), ("cv", cv)])
    return figures, steps, cv


def labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_intensity_trace_plots_the_1ms_counts_and_the_state_levels(drawn):
    figures, steps, _ = drawn
    ax, axh = figures["intensity_trace.png"].axes
    (trace, x0_level, xm_level) = ax.get_lines()
    counts = steps["trace"]["counts"]
    # every 1 ms bin of the 5 events, in kc/s, against the time from the first bin
    np.testing.assert_allclose(trace.get_ydata(), counts.ravel() / 1e-3 / 1e3)
    np.testing.assert_allclose(trace.get_xdata(), np.arange(counts.size) * 1e-3, atol=1e-9)
    # the X0 level and the X- level of Eq. 2 (QY = 1 / (1 + r) at r = 0.5)
    assert x0_level.get_ydata()[0] == pytest.approx(35.0)
    assert xm_level.get_ydata()[0] == pytest.approx(35.0 / 1.5)
    assert labels(ax) == ("time (s)", "intensity (kc/s, 1 ms bins)")
    # the histogram holds every bin once
    assert sum(p.get_width() for p in axh.patches) == counts.size
    assert axh.get_xlabel() == "occurrence"


def test_decay_figure_plots_each_steps_histogram_on_a_log_axis(drawn):
    figures, steps, _ = drawn
    (ax,) = figures["decay_histograms.png"].axes
    lines = ax.get_lines()
    assert len(lines) == 3
    counts = steps["decay"]["counts"].astype(float)
    for line, row, bias, tau in zip(lines, counts, BIASES, TAU, strict=True):
        # 25 ps bins summed by 10 into 0.25 ns, normalised to the peak
        rebinned = row.reshape(-1, 10).sum(axis=1)
        np.testing.assert_allclose(line.get_ydata(), rebinned / rebinned.max())
        np.testing.assert_allclose(line.get_xdata(), np.arange(40) * 0.25)
        assert line.get_label() == f"{bias:+.2f} V: τ = {tau:.3g} ns"
    assert ax.get_yscale() == "log" and ax.get_ylim() == pytest.approx((1e-4, 1.5))
    assert labels(ax) == ("delay (ns)", "counts (normalised)")


def test_flid_figure_plots_the_occurrence_and_the_scaling_model(drawn):
    figures, steps, _ = drawn
    ax = figures["flid.png"].axes[0]
    (mesh,) = ax.collections
    occ = steps["flid_map"]["occurrence"][-1]
    shown = np.ma.filled(mesh.get_array().astype(float), 0.0).reshape(occ.shape)
    np.testing.assert_array_equal(np.nan_to_num(shown), occ)
    t_edges = steps["flid_map"]["lifetime_edges_ns"][-1]
    i_edges = steps["flid_map"]["intensity_edges_cps"][-1] / 1e3
    assert ax.get_xlim() == pytest.approx((t_edges[0], t_edges[-1]))
    assert ax.get_ylim() == pytest.approx((i_edges[0], i_edges[-1]))
    assert labels(ax) == ("lifetime (ns)", "intensity (kc/s)")
    curve, states = ax.get_lines()
    # Eq. 1-2 with r = 0.5 from X0 (125 ns, 35 kc/s): N electrons at tau = 125 / (N (1 + r(N-1)))
    # and I = 35 / (1 + r (N - 1)); the states X0, X-, X2- ... are marked on the curve
    n = np.arange(1, len(states.get_xdata()) + 1)
    np.testing.assert_allclose(states.get_xdata(), 125.0 / (n * (1 + 0.5 * (n - 1))))
    np.testing.assert_allclose(states.get_ydata(), 35.0 / (1 + 0.5 * (n - 1)))
    tau, inten = curve.get_xdata(), curve.get_ydata()
    assert np.interp(125.0 / 3, tau[::-1], inten[::-1]) == pytest.approx(35.0 / 1.5, rel=1e-3)


def test_g2_figure_scales_the_side_peaks_to_one(drawn):
    figures, steps, _ = drawn
    axes = figures["g2.png"].axes
    assert len(axes) == 3
    for ax, z, err in zip(axes, [0.2, 0.3, 0.55], [0.02, 0.03, 0.1], strict=True):
        (line,) = ax.get_lines()
        x, y = line.get_xdata(), line.get_ydata()
        # the coincidence histogram (2 ns bins: plotted as they are) against tau in ns, scaled
        np.testing.assert_allclose(x, steps["g2"]["tau_s"][0] * 1e9)
        counts = steps["g2"]["counts"][axes.index(ax)]
        np.testing.assert_allclose(y * (counts.max() / y.max()), counts)
        tallest = [y[np.abs(x - k * 400) < 200].max() for k in (-3, -2, -1, 1, 2, 3)]
        assert np.mean(tallest) == pytest.approx(1.0)
        assert ax.get_ylim() == (0.0, 1.4) and ax.get_ylabel() == "g2"
        assert f"g2(0) = {z:.2f} ± {err:.2f}" in ax.texts[0].get_text()
    assert axes[-1].get_xlabel() == "τ (ns)"


def test_bias_dependence_figure_plots_both_ratios(drawn):
    figures, steps, _ = drawn
    (ax,) = figures["bias_dependence.png"].axes
    enhancement, drop = ax.get_lines()
    order = np.argsort(BIASES)
    np.testing.assert_allclose(enhancement.get_xdata(), BIASES[order])
    np.testing.assert_allclose(enhancement.get_ydata(), (TAU[0] / TAU)[order])
    np.testing.assert_allclose(drop.get_ydata(), (INTENSITY[0] / INTENSITY)[order])
    assert ax.get_yscale() == "log"
    assert ax.get_xlim()[0] > ax.get_xlim()[1]  # negative bias to the right, as in the paper
    assert labels(ax) == ("bias vs Pt quasi-reference (V)", "ratio to 0 V")


def test_cv_figure_plots_the_flid_points_by_bias_and_the_trace(drawn):
    figures, _, cv = drawn
    fig = figures["cv_scan.png"]
    titles = {a.get_title(): a for a in fig.axes}
    ax_flid, ax_t = titles["CV scan: FLID by bias"], titles["Intensity over the scan"]
    tomo = cv["tomography"]
    (points,) = ax_flid.collections
    np.testing.assert_allclose(
        points.get_offsets(), np.c_[tomo["lifetime_ns"], tomo["intensity_cps"] / 1e3]
    )
    np.testing.assert_allclose(points.get_array(), tomo["bias_v"])
    assert ax_flid.get_xscale() == "log"
    assert labels(ax_flid) == ("lifetime (ns)", "intensity (kc/s)")
    (trace,) = ax_t.get_lines()
    np.testing.assert_allclose(trace.get_ydata(), tomo["intensity_cps"] / 1e3)
    np.testing.assert_allclose(trace.get_xdata(), tomo["time_s"])
    # the bias on a twin axis of the trace (the colour bar has the same label, and no line)
    bias_axis = next(a for a in fig.axes if a.get_ylabel() == "bias (V)" and a.get_lines())
    np.testing.assert_allclose(bias_axis.get_lines()[0].get_ydata(), tomo["bias_v"])
