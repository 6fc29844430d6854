"""The live ``levels`` and ``blinking`` streams on a synthetic run with known switches.

Segment 0 (0 V) blinks between 40 and 4 kc/s with power-law dwells (``blinking_truth``);
segment 1 (-1.4 V) holds 30 kc/s. The live analyzer, fed in random datums on its worker
thread, must report the same levels as Tiled's replay order in one datum, and those levels must
lie on the true switches.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from rawrun import Photons, RawRun

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))  # blinking_truth.py

from blinking_truth import TICK_S, piecewise_poisson, telegraph  # noqa: E402
from test_live import analyse, assert_same_streams, random_cuts  # noqa: E402

import qd_bluesky.callbacks._levels as live_levels  # noqa: E402
from qd_bluesky.callbacks._engine import RunAnalysis  # noqa: E402

RATES_CPS = (40e3, 4e3)  # on, off
TAU_S = (20e-9, 5e-9)  # lifetime of the on and off states
HELD_CPS, HELD_TAU_S = 30e3, 15e-9
BLINK_S, HELD_S = 12.0, 4.0
ALPHA = 2.2  # both dwell laws; xmin 20 ms: ~100 dwells in 12 s
XMIN_S = 0.02
MICROTIME_UNIT_S = 25e-12


def kl_rate(a: float, b: float) -> float:
    """Drift per second of the log-likelihood ratio of rate a against b, for photons at rate a."""
    return a * math.log(a / b) - a + b


@pytest.fixture(scope="module")
def truth():
    switch_s, state = telegraph(BLINK_S, alpha_on=ALPHA, alpha_off=ALPHA, xmin_s=XMIN_S, seed=5)
    rates = np.array(RATES_CPS)[state]
    blink = piecewise_poisson(rates, switch_s[1:], BLINK_S, seed=6)
    held = piecewise_poisson([HELD_CPS], [], HELD_S, seed=7) + round(BLINK_S / TICK_S)
    ticks = np.concatenate((blink, held))
    rng = np.random.default_rng(8)
    # lifetime of each photon: its state's in segment 0, the held one in segment 1
    k = np.searchsorted(switch_s, blink * TICK_S, side="right") - 1
    tau = np.concatenate((np.array(TAU_S)[state[k]], np.full(len(held), HELD_TAU_S)))
    delay = (2e-9 + rng.exponential(tau)) % TICK_S
    photons = Photons(
        ticks,
        np.minimum(delay / MICROTIME_UNIT_S, 15999).astype(np.uint16),
        rng.integers(0, 2, len(ticks)).astype(np.uint8),
        step_rows=[0, len(blink)],
        biases=[0.0, -1.4],
        log=[(0, 0.0), (len(blink), -1.4)],
        microtime_unit_s=MICROTIME_UNIT_S,
        rep_rate_hz=1 / TICK_S,
    )
    return photons, switch_s, state


@pytest.fixture(scope="module")
def runs(truth, settings, tmp_path_factory):
    """Live (60 random datums, threaded) and replay (one datum, caller's thread) streams."""
    photons = truth[0]
    raw = RawRun(photons, tmp_path_factory.mktemp("levels") / "blink.h5")
    live, analyzer = analyse(
        raw.live(random_cuts(len(photons), 60, seed=9)), settings, threaded=True
    )
    assert analyzer.outcomes[raw.uid].exit_status == "success"
    replay, _ = analyse(raw.replay(), settings, threaded=False)
    return live.streams(), replay.streams(), live


def test_replay_gives_the_live_levels(runs):
    live, replay, _ = runs
    assert_same_streams(
        {k: live[k] for k in ("levels", "blinking")}, {k: replay[k] for k in ("levels", "blinking")}
    )


def test_levels_are_emitted_during_acquisition(truth, settings, tmp_path):
    """Fed 5 000 rows at a time, the engine reports nearly every level before the stop.

    (The levels run in the background; inline here, so that "before" is well defined.)
    """
    photons = truth[0]
    path = tmp_path / "steps.h5"
    cuts = [*range(0, len(photons), 5000), len(photons)]
    for _ in RawRun(photons, path).live(cuts):
        pass  # writes the file
    engine = RunAnalysis(settings, threaded=False)
    engine.set_path(path)
    for k, (row, bias) in enumerate(zip(photons.step_rows, photons.biases, strict=True)):
        engine.add_marker(row, bias, k + 1)
    during = []
    for stop in cuts[1:]:
        engine.announce(stop)
        while engine.has_work:
            during.extend(engine.step().get("levels", []))
    at_stop = engine.finish().get("levels", [])
    engine.close()
    assert len(during) > 50 and len(at_stop) <= 3
    # the blinking segment's levels were all out before the held segment's end
    assert all(r["segment"] == 1 for r in at_stop)


def test_levels_tile_the_run_and_find_the_true_switches(truth, runs):
    photons, switch_s, state = truth
    lv = runs[0]["levels"]
    assert int(lv["photons"].sum()) == len(photons)
    seg = lv["segment"]
    assert set(seg.tolist()) == {0, 1}
    np.testing.assert_array_equal(lv["bias_v"], np.where(seg == 0, 0.0, -1.4))
    # Times are from the first photon; within a segment each level starts where the last ended.
    t0 = photons.macrotime[0] * TICK_S
    for k in (0, 1):
        s, e = lv["start_s"][seg == k], lv["end_s"][seg == k]
        np.testing.assert_array_equal(s[1:], e[:-1])
    # Change points: level ends inside segment 0, but for the segment's last (the step).
    found = lv["end_s"][seg == 0][:-1] + t0
    true = switch_s[1:]
    # A change point is located where the profile log-likelihood peaks; away from the true
    # switch it falls with drift D per second (the rates' Kullback-Leibler rate, 27 000/s
    # for 4 -> 40 kc/s). The 95 % interval spans a drop of c = 7.35 (see _changepoints), so
    # c / D = 0.3 ms; all ~100 switches within three times that, plus a tick.
    tol = 3 * 7.35 / min(kl_rate(*RATES_CPS), kl_rate(*RATES_CPS[::-1])) + TICK_S
    d = np.abs(found[:, None] - true[None, :])
    assert (d.min(axis=0) <= tol).all(), np.sort(d.min(axis=0))[-5:]  # recall
    # Precision: each test of a segment without a change fires with 1 - confidence = 5 %,
    # so ~0.05 per true level is expected away from any switch (the offline search over the
    # whole segment finds the same); allow that plus three Poisson standard deviations.
    false_alarms = 0.05 * len(true)
    assert (d.min(axis=1) > tol).sum() <= false_alarms + 3 * math.sqrt(false_alarms)
    # The held segment: no change (the test's false-alarm rate is 5 % per search).
    assert (seg == 1).sum() <= 2


def test_level_lifetimes_and_intensities_follow_the_states(truth, runs):
    lv = runs[0]["levels"]
    n = lv["photons"]
    bright = (lv["segment"] == 0) & (lv["intensity_cps"] > 20e3) & (n >= 400)
    assert bright.sum() >= 10
    # ML lifetime of n photons: stderr ~ tau / sqrt(n) (no background, 20 ns << period);
    # five standard errors (1.3 for the IRF cell and the calibration's start).
    tau = TAU_S[0] * 1e9
    assert (np.abs(lv["lifetime_ns"][bright] - tau) < 5 * 1.3 * tau / np.sqrt(n[bright])).all()
    assert np.isnan(lv["lifetime_ns"][n < 10]).all()


def test_blinking_gives_the_dim_fraction_and_the_switching_rate(truth, runs):
    photons, switch_s, state = truth
    b = runs[0]["blinking"]
    assert b["segment"].tolist() == [0, 1]
    assert b["groups"].tolist() == [2, 1]
    # Group intensities: photons over time of ~50 levels each; Poisson, 1 %.
    assert b["bright_intensity_cps"][0] == pytest.approx(RATES_CPS[0], rel=0.02)
    assert b["dim_intensity_cps"][0] == pytest.approx(RATES_CPS[1], rel=0.05)
    # Off time from the true dwells: the level edges err by < 1 ms per switch (see above).
    dwell = np.diff(np.append(switch_s, BLINK_S))
    off = dwell[state == 1].sum() / BLINK_S
    assert b["dim_fraction"][0] == pytest.approx(off, abs=len(switch_s) * 1e-3 / BLINK_S)
    assert b["off_fraction"][0] == b["dim_fraction"][0]
    assert b["switching_rate_hz"][0] == pytest.approx((len(switch_s) - 1) / BLINK_S, rel=0.02)
    # Exponents: CSN's stderr (alpha - 1) / sqrt(n) holds xmin fixed; with xmin chosen from
    # the data the scatter is ~1.2 times larger (see _dwell): four of those.
    for side in ("on", "off"):
        alpha, err = b[f"{side}_alpha"][0], b[f"{side}_alpha_stderr"][0]
        assert b[f"{side}_dwells"][0] >= 30
        assert abs(alpha - ALPHA) < 4 * 1.2 * err, (side, alpha, err)
    # The held segment: no blinking.
    assert (b["dim_fraction"][1], b["switching_rate_hz"][1]) == (0.0, 0.0)
    assert math.isnan(b["on_alpha"][1])


def test_a_failure_in_the_levels_is_a_note(truth, settings, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(live_levels, "find_change_points", broken)
    photons = truth[0]
    raw = RawRun(photons, tmp_path / "broken.h5")
    out, analyzer = analyse(
        raw.live(random_cuts(len(photons), 5, seed=2)), settings, threaded=False
    )
    outcome = analyzer.outcomes[raw.uid]
    assert outcome.exit_status == "success"
    assert any("no more levels" in note and "injected" in note for note in outcome.notes)
    s = out.streams()
    assert "levels" not in s and {"trace", "flid", "decay", "g2"} <= set(s)


def test_long_stable_levels_are_cut_to_bound_memory(truth, settings, tmp_path, monkeypatch):
    """More than ``max_open_photons`` carried: the open levels are closed at a window's end,
    and the blinking statistics (grouped levels) are unchanged in kind."""
    monkeypatch.setattr(live_levels, "MAX_OPEN_PHOTONS", 20_000)
    photons = truth[0]
    raw = RawRun(photons, tmp_path / "cut.h5")
    out, _ = analyse(raw.live(random_cuts(len(photons), 20, seed=4)), settings, threaded=True)
    s = out.streams()
    held = s["levels"]["segment"] == 1
    # 120 000 photons held at 30 kc/s in 1 s windows: a window of 30 000 carried is cut at
    # the next window's end (after 2 s), and the end of the data closes the rest.
    assert held.sum() == 2
    np.testing.assert_allclose(s["levels"]["end_s"][held][0] - BLINK_S, 2.0, atol=1e-3)
    assert s["blinking"]["groups"][1] == 1
    replay, _ = analyse(raw.replay(), settings, threaded=False)
    assert_same_streams(
        {k: s[k] for k in ("levels", "blinking")},
        {k: replay.streams()[k] for k in ("levels", "blinking")},
    )
