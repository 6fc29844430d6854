"""Long runs in bounded memory, and the reversibility stream of bias cycling.

The analysis of a bias-cycling recording (``cycling.py``: synthetic, known truth) is fed cycle
by cycle as the live analyzer is. What it holds beyond the compact per-bin results must not
grow with the number of cycles, and the per-cycle start intensity and lifetime must be the
model's X0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cycling import CyclingDot, write_cycling

from qd_bluesky.callbacks import AnalysisSettings
from qd_bluesky.callbacks._engine import RunAnalysis


def analyse(path, cycles, settings, dot, on_cycle=None):
    """Write ``cycles`` cycles, then feed them cycle by cycle (marker first, as live).

    The background work (segments, levels) runs inline, so that the memory after a cycle is
    that of the analysis, not of a queue still being worked off.
    """
    spans = list(write_cycling(path, cycles, dot=dot, seed=3))
    engine = RunAnalysis(settings, continuous=True, threaded=False)
    engine.set_path(path)
    rows: dict[str, list] = {}
    for k, (first, stop) in enumerate(spans):
        engine.add_marker(first, 0.0, k + 1)
        engine.announce(stop)
        while engine.has_work:
            for stream, new in engine.step().items():
                rows.setdefault(stream, []).extend(new)
        if on_cycle is not None:
            on_cycle(k, engine.memory())
    for stream, new in engine.finish().items():
        rows.setdefault(stream, []).extend(new)
    engine.close()
    return rows, spans


def test_state_does_not_grow_with_the_number_of_cycles(tmp_path):
    # 2 s cycles and 4 s windows: 40 cycles cover 20 windows of the trace and FLID.
    dot = CyclingDot(cycle_s=2.0)
    settings = AnalysisSettings(window_s=4.0, calibration_photons=20_000)
    memory: dict[int, dict[str, int]] = {}
    rows, _ = analyse(tmp_path / "c.h5", 40, settings, dot, lambda k, m: memory.__setitem__(k, m))
    early = max(memory[k]["transient_bytes"] for k in range(4, 10))
    late = max(memory[k]["transient_bytes"] for k in range(34, 40))
    # Same window phases early and late (2 windows per cycle pair): no growth at all is
    # expected; allow 5 % for a differing number of photons at a window's edge.
    assert late <= 1.05 * early, (early, late)
    assert all(memory[k]["open_segments"] <= 1 for k in memory)
    # The kept per-bin results: 7 float64/int64 fields per 20 ms bin, at most doubled by
    # the amortised growth (plus the first 1024-row block).
    bins = len(rows["flid"])
    assert bins == pytest.approx(40 * 2.0 / 0.02, abs=2)
    assert memory[39]["results_bytes"] <= 2 * 7 * 8 * max(bins, 1024)


def test_reversibility_gives_x0_at_the_start_of_every_cycle(tmp_path):
    dot = CyclingDot()  # the paper's 20 s cycle
    cycles = 6
    rows, spans = analyse(tmp_path / "r.h5", cycles, AnalysisSettings(), dot)
    rev = rows["reversibility"]
    assert [r["segment"] for r in rev] == list(range(cycles))
    for r in rev:
        # Leading bins within 0.2 V of 0 V: 1 s at 0.2 V/s, i.e. ~50 bins of 20 ms.
        assert 45 <= r["bins"] <= 52
        seconds = r["bins"] * 0.02
        n = dot.intensity_x0_cps * seconds
        # Poisson: stderr of the rate sqrt(n)/T (~190 cps); 5 standard errors.
        assert abs(r["intensity_cps"] - dot.intensity_x0_cps) < 5 * math.sqrt(n) / seconds
        # ML lifetime of n photons of a 125 ns decay in a 400 ns period with 2 % background:
        # stderr ~ 1.3 tau / sqrt(n) (~0.9 ns; 1.3 for the truncation by the period and
        # the background); 5 standard errors.
        tau_ns = dot.tau_x0_s * 1e9
        assert abs(r["lifetime_ns"] - tau_ns) < 5 * 1.3 * tau_ns / math.sqrt(n)
    # Each cycle's start lies at its first photon's FLID bin.
    starts = np.array([r["time_s"] for r in rev])
    np.testing.assert_allclose(np.diff(starts), dot.cycle_s, atol=0.021)
