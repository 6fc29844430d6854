"""Bias-synchronous timing from the card's marker records (``/user/markers``).

* The switching streams recover the simulated cell's response time (2 us and 10 us), within
  the fit's statistical error, and their numbers do not depend on how the rows are announced.
* A CV whose file has no ``/user/bias`` gets the bias of every FLID bin from the trigger's
  corner markers and the CV's parameters: the same tomography as with ``/user/bias``.
"""

from __future__ import annotations

import numpy as np
import pytest
from markerrun import analyse, write_cv, write_switching

SWITCHING = {"switching": {"period_s": 200e-6, "bin_s": 0.0}}


def _by_edge(rows, edge):
    return next(r for r in rows if r["edge"] == edge)


@pytest.mark.parametrize("rise_time_s", [2e-6, 10e-6])
def test_switching_recovers_the_cells_rise_time(tmp_path, rise_time_s):
    """0 V -> -1.8 V: the intensity of the charged dot follows the bias near the low end, so
    the fitted 10-90 % time of the falling edge is the cell's."""
    run = write_switching(tmp_path / "s.h5", rise_time_s=rise_time_s, seconds=2.0)
    out = analyse(run, -1.8, [run.rows], markers=SWITCHING)
    fit = _by_edge(out["switching_response"], "falling")
    assert fit["problem"] == ""
    assert fit["steps"] == pytest.approx(10_000, abs=2)  # every falling step of the wave
    err = fit["rise_time_stderr_us"]
    assert 0 < err < 0.15 * rise_time_s * 1e6
    assert abs(fit["rise_time_us"] - rise_time_s * 1e6) < 4 * err
    # The charged dot is dimmer and faster after the step than before it.
    assert fit["intensity_after_cps"] < 0.4 * fit["intensity_before_cps"]
    rows = [r for r in out["switching"] if r["edge"] == "falling"]
    assert rows[-1]["lifetime_ns"] < 0.5 * rows[0]["lifetime_ns"]


def test_switching_rows_do_not_depend_on_the_announcements(tmp_path):
    run = write_switching(tmp_path / "s.h5", rise_time_s=2e-6, seconds=0.3)
    once = analyse(run, -1.8, [run.rows], markers=SWITCHING)
    cuts = sorted({*range(1000, run.rows, 3777), run.rows})
    pieces = analyse(run, -1.8, cuts, markers=SWITCHING)
    assert once["switching"] == pieces["switching"]
    assert sum(r["photons"] for r in once["switching"]) > 0.5 * run.rows


def test_cv_bias_from_markers_gives_the_same_tomography(tmp_path):
    cv = {"start": 0.0, "vertex": -2.0, "end": 0.0, "rate": 1.0, "cycles": 1}
    program = {"cv": cv}
    with_bias = write_cv(tmp_path / "b.h5", with_bias=True, rate=cv["rate"])
    markers_only = write_cv(tmp_path / "m.h5", with_bias=False, rate=cv["rate"])
    assert with_bias.rows == markers_only.rows
    ref = analyse(with_bias, 0.0, [with_bias.rows], continuous=True, markers=program)
    got = analyse(markers_only, 0.0, [markers_only.rows], continuous=True, markers=program)
    a, b = ref["tomography"], got["tomography"]
    assert len(a) == len(b) > 100
    bias_a = np.array([r["bias_v"] for r in a])
    bias_b = np.array([r["bias_v"] for r in b])
    # Before the plan's first marker (the approach to the start bias) the markers say nothing.
    before = np.array([r["time_s"] for r in b]) < 0.2 - 0.02
    assert np.all(np.isnan(bias_b[before])) and np.all(np.isfinite(bias_b[~before]))
    # The IOC's 20 ms steps at 1 V/s against the markers' straight legs: within a step.
    assert np.max(np.abs(bias_a - bias_b)[~before]) <= 0.02 + 1e-9
    assert np.ptp(bias_b[~before]) == pytest.approx(2.0, abs=0.03)
    for key in ("intensity_cps", "lifetime_ns", "charge_state"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    # Without the markers the whole sweep would sit at its segment's start bias.
    flat = analyse(markers_only, 0.0, [markers_only.rows], continuous=True)
    flat_bias = np.array([r["bias_v"] for r in flat["tomography"]])
    assert set(flat_bias[~before]) == {0.0}
