"""find_dots and survey: spots, refinement, message order, and a survey that goes on."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from bluesky.utils import FailedPause, FailedStatus, RequestAbort

from qd_bluesky.plans import (
    DOTS_STREAM,
    SURVEY_FIELDS,
    SURVEY_RUN_KEY,
    Spot,
    background_corrected_g2,
    classify_cv,
    find_dots,
    find_spots,
    survey,
)
from qd_bluesky.plans._classify import bottom_visits
from qd_bluesky.plans._survey import peak_position

sys.path.insert(0, str(Path(__file__).parent))
from msg_script import name_of, script, simulate  # noqa: E402

SPOTS = [(0.3, 0.4, 3e4), (1.2, 0.9, 1.5e4)]
BACKGROUND = 250.0
SIGMA = 0.11


def _field_rate(x, y, spots=SPOTS, background=BACKGROUND, sigma=SIGMA):
    rate = background
    for sx, sy, peak in spots:
        rate += peak * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / sigma**2)  # ~ PSF squared
    return rate


def _field(inst, sim, spots=SPOTS):
    """Answer the rate meters (as a read of the device or of one channel) with ``spots``."""
    where = {"stage_x": 0.0, "stage_y": 0.0}

    def moved(msg):
        where[name_of(msg)] = float(msg.args[0])

    def half():
        return _field_rate(where["stage_x"], where["stage_y"], spots) / 2

    sim.add_handler("set", moved, lambda msg: name_of(msg) in where)
    sim.add_handler(
        "read",
        lambda msg: {
            "tcspc_count_rate0": {"value": half()},
            "tcspc_count_rate1": {"value": half()},
        },
        "tcspc_rates",
    )
    for channel in ("tcspc_count_rate0", "tcspc_count_rate1"):
        sim.add_handler("read", lambda msg, c=channel: {c: {"value": half()}}, channel)
    sim.add_read_handler_for(inst.tcspc.rates.rate_period, 0.5)
    return where


# -- pure helpers --------------------------------------------------------------------------------


def test_find_spots_finds_local_maxima_and_merges_unresolved_ones():
    xs = ys = np.arange(0.0, 2.01, 0.1)
    spots = [*SPOTS, (0.35, 0.4, 1e4)]  # 50 nm from the first: the spot cannot resolve it
    rate = _field_rate(xs[None, :], ys[:, None], spots)
    found = find_spots(xs, ys, rate, min_separation_um=4 * SIGMA)
    assert [(round(x, 1), round(y, 1)) for x, y, _ in found] == [(0.3, 0.4), (1.2, 0.9)]
    assert found[0][2] > found[1][2]  # brightest first
    assert find_spots(xs, ys, np.full_like(rate, BACKGROUND)) == []  # a flat map has no dot


def test_peak_position_is_exact_for_a_gaussian_spot():
    pos = 0.5 + 0.0625 * np.arange(-3, 4)
    rate = BACKGROUND + 2e4 * np.exp(-((pos - 0.537) ** 2) / SIGMA**2)
    assert peak_position(pos, rate, BACKGROUND) == pytest.approx(0.537, abs=1e-9)
    # The maximum at the edge of the scan: the edge itself (the dot is further out).
    assert peak_position(pos, rate[::-1] * 0 + np.arange(7.0) * 1e3 + 500, BACKGROUND) == pos[-1]


def _cv(bias, intensity, lifetime, states=None, x0=None):
    derived = {
        "flid": {
            "bias_v": np.asarray(bias, float),
            "intensity_cps": np.asarray(intensity, float),
            "lifetime_ns": np.asarray(lifetime, float),
        },
        "scaling": {"last_state_following_model": np.array(["X3-"])},
    }
    if states is not None:
        derived["tomography"] = {"bias_v": np.asarray(bias, float), "charge_state": states}
    return derived


# A sweep 0 -> -2 -> 0 V in 20 ms bins.
SWEEP = np.concatenate([np.zeros(20), np.linspace(0, -2, 100), np.linspace(-2, 0, 100)])


def _bottom(values_top, values_bottom):
    return np.where(SWEEP <= -1.75, values_bottom, values_top)


@pytest.mark.parametrize(
    ("bottom_state", "bottom_intensity", "bottom_life", "expected"),
    [
        (5, 1e3, 5.0, "deep"),  # beyond X2-
        (2, 1.4e4, 21.0, "shallow"),
        (1, 1.6e4, 42.0, "shallow"),
        (0, 2.0e4, 125.0, "none"),
        (0, 5.0e4, 125.0, "brightening"),
    ],
)
def test_classify_cv_by_the_bottom_of_the_tomography(
    bottom_state, bottom_intensity, bottom_life, expected
):
    intensity = _bottom(2.2e4, bottom_intensity)
    life = _bottom(125.0, bottom_life)
    states = _bottom(0, bottom_state).astype(int)
    verdict = classify_cv(_cv(SWEEP, intensity, life, states))
    assert verdict.charging == expected
    assert verdict.bottom_state == bottom_state
    assert verdict.max_enhancement == pytest.approx(125.0 / bottom_life)
    assert verdict.last_state == "X3-"


def test_classify_cv_takes_x0_not_the_dim_x_plus_at_0v():
    # Most of the 0 V bins in X+ (dim, 3 ns): X0's intensity is still the bright bins'.
    intensity = _bottom(2.2e4, 2.0e4)
    life = _bottom(125.0, 125.0)
    top = np.flatnonzero(SWEEP >= -0.2)
    intensity[top[: int(0.8 * len(top))]] = 4e3
    life[top[: int(0.8 * len(top))]] = 3.0
    verdict = classify_cv(_cv(SWEEP, intensity, life, _bottom(0, 0).astype(int)))
    assert verdict.charging == "none"
    assert verdict.intensity_ratio == pytest.approx(2.0 / 2.2, rel=1e-6)


def test_classify_cv_without_a_tomography_uses_the_enhancement():
    derived = _cv(SWEEP, _bottom(2.2e4, 1e3), _bottom(125.0, 5.0))
    assert classify_cv(derived).charging == "deep"
    assert classify_cv({"flid": {"bias_v": np.array([])}}).charging == "unknown"


# -- find_dots -----------------------------------------------------------------------------------


def test_find_dots_refines_every_spot_and_records_it(inst, sim):
    _field(inst, sim)
    msgs = sim.simulate_plan(
        find_dots(inst.stage, inst.tcspc, x_range=(0, 1.5), y_range=(0, 1.5), step=0.25)
    )
    lines = script(msgs)
    # The gate is set for the raster and restored after it, outside the run.
    assert lines[:2] == ["read tcspc_rate_period", "set tcspc_rate_period 0.1"]
    assert lines[-2:] == ["set tcspc_rate_period 0.5", "wait"]
    close = lines.index("close_run")
    assert lines.count(f"create {DOTS_STREAM}") == 2
    assert lines.index(f"create {DOTS_STREAM}") < close
    assert lines.count("create refine") == 2 * 2 * 7  # two line scans of 7 points per dot
    spots = sim.return_value
    for spot, (x, y, _) in zip(spots, SPOTS, strict=True):
        # Coarse pixels are 0.25 um; the line scans place the dot to a few nm.
        assert spot.x_um == pytest.approx(x, abs=0.01) and spot.y_um == pytest.approx(y, abs=0.01)
        assert spot.rate_cps > 0.9 * _field_rate(x, y)


def test_find_dots_checks_its_arguments_at_the_call(inst):
    with pytest.raises(ValueError, match="gate"):
        find_dots(inst.stage, inst.tcspc, x_range=(0, 1), y_range=(0, 1), step=0.25, gate=5)
    with pytest.raises(ValueError, match="psf_sigma"):
        find_dots(inst.stage, inst.tcspc, x_range=(0, 1), y_range=(0, 1), step=0.2, psf_sigma=0)


# -- survey --------------------------------------------------------------------------------------


class FakeAnalysis:
    """Derived runs by uid: a cluster (g2(0) 0.6) and a deep dot."""

    def __init__(self):
        deep = _cv(SWEEP, _bottom(2.2e4, 1e3), _bottom(125.0, 5.0), _bottom(0, 5).astype(int))
        self.runs = {
            "g2-0": {"g2": {"g2_zero": np.array([0.62])}},
            "g2-1": {"g2": {"g2_zero": np.array([0.21])}},
            "cv-1": deep,
        }
        self.asked = []

    async def finished(self, uid):
        self.asked.append(uid)

    def derived(self, uid):
        return self.runs.get(uid)


def _uids(sim, inst):
    """Answer each photon run's open_run with the uids FakeAnalysis knows, in order."""
    opened = []

    def open_run(msg):
        if msg.run == SURVEY_RUN_KEY:
            return "survey-uid"
        uid = ["g2-0", "g2-1", "cv-1"][len(opened)] if len(opened) < 3 else "other"
        opened.append((uid, msg.kwargs))
        return uid

    sim.add_handler("open_run", open_run)
    sim.add_read_handler_for(inst.pot.cv.progress, 1.0)
    return opened


def test_survey_skips_a_cluster_and_classifies_a_single_dot(inst, sim):
    _field(inst, sim, [(0.0, 0.0, 3e4), (2.0, 0.0, 2e4)])
    opened = _uids(sim, inst)
    analysis = FakeAnalysis()
    out = simulate(
        sim,
        survey(inst.stage, inst.tcspc, inst.pot, [(0.0, 0.0), (2.0, 0.0)], analysis),
    )
    assert out.error is None
    rows = out.value
    assert [r["status"] for r in rows] == ["not single", "measured"]
    assert rows[0]["g2_zero"] == 0.62 and not rows[0]["single"]
    assert rows[1]["charging"] == "deep" and rows[1]["raw_uids"] == "g2-1,cv-1"
    assert rows[1]["count_rate_cps"] == pytest.approx(_field_rate(2.0, 0.0, [(2.0, 0.0, 2e4)]))
    # The cluster got a g2 run only; the single dot a g2 run and a CV scan, each with its dot.
    plans = [(md["plan_name"], md["dot_id"], md["dot_x_um"]) for _, md in opened]
    assert plans == [("g2_measurement", 0, 0.0), ("g2_measurement", 1, 2.0), ("cv_scan", 1, 2.0)]
    # The survey's run is open around them all, one row event per dot as it is done.
    keyed = [m for m in out.messages if m.run == SURVEY_RUN_KEY]
    assert keyed[0].command == "open_run" and keyed[-1].command == "close_run"
    assert [m.kwargs["name"] for m in keyed if m.command == "create"] == [DOTS_STREAM] * 2
    first_row = next(
        i for i, m in enumerate(out.messages) if m.run == SURVEY_RUN_KEY and m.command == "save"
    )
    second_g2 = next(
        i
        for i, m in enumerate(out.messages)
        if m.command == "open_run" and m.run is None and i > first_row
    )
    assert first_row < second_g2  # the cluster's row is saved before the next dot starts
    waits = [m for m in out.messages if m.command == "wait_for"]
    assert len(waits) == 3  # the analysis of every photon run is awaited through the RE
    assert set(rows[0]) == set(SURVEY_FIELDS)


def test_survey_records_an_unreachable_dot_and_goes_on(inst, sim):
    _field(inst, sim, [(2.0, 0.0, 2e4)])
    _uids(sim, inst)
    analysis = FakeAnalysis()
    analysis.runs["g2-0"] = analysis.runs["g2-1"]
    analysis.runs["g2-1"] = {"g2": {"g2_zero": np.array([0.2])}}
    analysis.runs["cv-1"] = analysis.runs["cv-1"]
    out = simulate(
        sim,
        survey(inst.stage, inst.tcspc, inst.pot, [(50.0, 0.0), (2.0, 0.0)], analysis),
        throws=[(lambda m: m.command == "wait", FailedStatus("stage_x: move timed out"))],
    )
    assert out.error is None
    rows = out.value
    assert rows[0]["status"].startswith("unreachable") and "timed out" in rows[0]["status"]
    assert rows[0]["raw_uids"] == ""
    assert rows[1]["status"] in ("measured", "bleached", "not single")
    assert len(rows) == 2


@pytest.mark.parametrize("stop", [RequestAbort, FailedPause])
def test_survey_does_not_swallow_an_abort_or_a_ctrl_c(inst, sim, stop):
    """Ctrl-C pauses; a photon run cannot pause, so FailedPause must end the survey too."""
    _field(inst, sim, [(0.0, 0.0, 3e4)])
    _uids(sim, inst)
    out = simulate(
        sim,
        survey(inst.stage, inst.tcspc, inst.pot, [(0.0, 0.0), (1.0, 0.0)], FakeAnalysis()),
        throws=[(lambda m: m.command == "kickoff", stop())],
    )
    assert isinstance(out.error, stop)
    assert not any(m.command == "set" and m.args[0] == 1.0 for m in out.messages)


def test_a_dot_dark_before_its_g2_is_bleached(inst, sim):
    where = _field(inst, sim, [(0.0, 0.0, 3e4)])
    _uids(sim, inst)
    analysis = FakeAnalysis()
    analysis.runs["g2-0"] = {"g2": {"g2_zero": np.array([])}}  # no g2 row: no dot photons

    def dark_after_kickoff(msg):
        where["stage_x"] = 50.0  # the rate meters now see only the background

    sim.add_handler("kickoff", dark_after_kickoff)
    out = simulate(sim, survey(inst.stage, inst.tcspc, inst.pot, [(0.0, 0.0)], analysis))
    (row,) = out.value
    assert row["status"] == "bleached" and row["raw_uids"] == "g2-0"


def test_survey_checks_its_arguments_at_the_call(inst):
    with pytest.raises(ValueError, match="dots\\[0\\]"):
        survey(inst.stage, inst.tcspc, inst.pot, [(0.0,)], FakeAnalysis())
    with pytest.raises(ValueError, match="analysis"):
        survey(inst.stage, inst.tcspc, inst.pot, [(0.0, 0.0)], object())


@pytest.mark.parametrize("g2_dot", [0.0, 0.12, 0.3, 0.6])
@pytest.mark.parametrize("rho", [0.35, 0.6, 1.0])
def test_background_correction_recovers_the_dots_g2(g2_dot, rho):
    # Measured on the dot plus an uncorrelated background: rho**2 g2 + 1 - rho**2.
    rate = 4e3
    measured = rho**2 * g2_dot + 1 - rho**2
    assert background_corrected_g2(measured, rate, (1 - rho) * rate) == pytest.approx(g2_dot)


def test_background_correction_needs_a_dot_above_the_background():
    assert math.isnan(background_corrected_g2(0.9, 1000.0, 800.0))  # the dot gives 20 %
    assert math.isnan(background_corrected_g2(0.5, 0.0, 0.0))
    assert math.isnan(background_corrected_g2(math.nan, 1e4, 100.0))


def test_survey_judges_a_dim_dot_by_its_background_corrected_g2(inst, sim):
    # A 600 cps dot (g2 0.2) over 250 cps of background measures 0.2 * 0.71**2 + 1 - 0.71**2.
    _field(inst, sim, [(2.0, 0.0, 600.0)])
    _uids(sim, inst)
    analysis = FakeAnalysis()
    rate = _field_rate(2.0, 0.0, [(2.0, 0.0, 600.0)])
    rho = (rate - BACKGROUND) / rate
    measured = rho**2 * 0.2 + 1 - rho**2
    # _uids names the runs g2-0, g2-1, cv-1 in order: the first survey's g2 run and CV, then
    # the second survey's g2 run.
    analysis.runs["g2-0"] = {"g2": {"g2_zero": np.array([measured])}}
    analysis.runs["g2-1"], analysis.runs["cv-1"] = analysis.runs["cv-1"], analysis.runs["g2-0"]
    spot = Spot(2.0, 0.0, rate, BACKGROUND)
    out = simulate(sim, survey(inst.stage, inst.tcspc, inst.pot, [spot], analysis))
    (row,) = out.value
    assert measured > 0.5  # the raw value alone would reject it
    assert row["g2_zero"] == pytest.approx(measured)
    assert row["g2_zero_corrected"] == pytest.approx(0.2)
    assert row["single"] and row["status"] == "measured" and row["background_cps"] == BACKGROUND
    assert row["charging"] == "deep"
    # Plain positions carry no background: the measured value decides.
    out = simulate(sim, survey(inst.stage, inst.tcspc, inst.pot, [(2.0, 0.0)], analysis))
    (row,) = out.value
    assert row["status"] == "not single" and row["g2_zero_corrected"] == pytest.approx(measured)


def _two_cycles(first_bottom_state, second_bottom_state):
    """Two CV cycles 0 -> -2 -> 0 V in 20 ms bins, with the states of each visit of -2 V."""
    bias = np.concatenate([SWEEP, SWEEP[20:]])
    time_s = 0.02 * np.arange(bias.size)
    states = np.zeros(bias.size, dtype=int)
    at_bottom = bias <= -1.75
    first = at_bottom & (np.arange(bias.size) < SWEEP.size)
    states[first] = first_bottom_state
    states[at_bottom & ~first] = second_bottom_state
    derived = _cv(bias, np.full(bias.size, 2e4), np.where(states > 0, 60.0, 125.0), states)
    derived["tomography"]["time_s"] = time_s
    return derived


@pytest.mark.parametrize(
    ("first", "second", "expected", "state"),
    [
        (1, 1, "shallow", 1.0),
        (4, 3, "deep", 3.0),
        (1, 0, "none", 0.0),  # a photo-charged X- through one visit: not electrochemistry
        (0, 2, "none", 0.0),
    ],
)
def test_classify_cv_counts_a_charge_taken_in_every_cycle(first, second, expected, state):
    verdict = classify_cv(_two_cycles(first, second))
    assert (verdict.charging, verdict.bottom_state) == (expected, state)


def test_bottom_visits_split_at_the_gaps_between_cycles():
    times = np.r_[0.02 * np.arange(10), 4.0 + 0.02 * np.arange(8), 8.1 + 0.04 * np.arange(5)]
    visits = bottom_visits(times[::-1])  # any order
    assert [sorted(times[::-1][v].round(2).tolist()) for v in visits] == [
        times[:10].round(2).tolist(),
        times[10:18].round(2).tolist(),
        times[18:].round(2).tolist(),
    ]
    assert bottom_visits(np.array([])) == []
