"""Each plan's message sequence, without any IOC (fake devices, RunEngineSimulator)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from bluesky.utils import FailedStatus, RequestAbort

from qd_bluesky.devices import UnsafeBiasError
from qd_bluesky.plans import (
    DOT_STREAM,
    bias_cycling,
    bias_steps,
    cv_scan,
    find_dot,
    g2_measurement,
    raster_scan,
    stop_cv,
)

sys.path.insert(0, str(Path(__file__).parent))
from msg_script import name_of, script, simulate  # noqa: E402

#: The run around every photon plan: what comes before the body and after it.
READ_FIRST = ["read pot_bias_low_limit", "read pot_bias_high_limit", "read tcspc_mode"]
PHOTONS_START = ["clear_checkpoint", "declare_stream tcspc photons", "kickoff tcspc", "wait"]
PHOTONS_END = ["complete tcspc", "wait", "acquire", "close_run"]
MARKER = ["create primary", "read tcspc_rates", "read pot", "save"]


def _open_run_md(msgs):
    (opened,) = [m for m in msgs if m.command == "open_run"]
    return opened.kwargs


def _at(command, name=None, nth=1):
    """A predicate matching the ``nth`` message ``command`` (on the device ``name``)."""
    seen = []

    def match(msg):
        if msg.command == command and (name is None or name_of(msg) == name):
            seen.append(msg)
        return len(seen) == nth

    return match


# -- bias_steps --------------------------------------------------------------------------------


def test_bias_steps_order(inst, sim):
    msgs = sim.simulate_plan(bias_steps(inst.tcspc, inst.pot, [0.0, -1.5], 1.0))
    step = lambda bias: [f"set pot {bias:g}", "wait", *MARKER, "acquire"]  # noqa: E731
    assert script(msgs) == [
        *READ_FIRST,
        "read pot",  # the bias to return to
        "open_run",
        *PHOTONS_START,  # photons start before the first move
        *step(0.0),
        *step(-1.5),
        *PHOTONS_END,
        "set pot -0.3",  # back to where it was, after the run
        "wait",
    ]
    md = _open_run_md(msgs)
    assert md["plan_name"] == "bias_steps" and md["plan_args"]["biases"] == [0.0, -1.5]
    assert md["qd"]["bias_setpoints"] == [0.0, -1.5] and md["qd"]["segments"] == "steps"
    assert md["qd"]["photon_keys"]["nanotimes"] == "tcspc_nanotimes"


def test_bias_steps_dwell_is_collects_and_sleeps(inst, sim):
    msgs = sim.simulate_plan(bias_steps(inst.tcspc, inst.pot, [-1.0], 2.0, collect_period=0.5))
    commands = [m.command for m in msgs]
    # 4 periods, each opened by a collect (new rows announced), then the collect of the stop
    assert commands.count("collect") == 5
    assert sum(m.args[0] for m in msgs if m.command == "sleep") == pytest.approx(2.0, abs=0.05)


def test_bias_steps_dwell_per_bias(inst, sim):
    msgs = sim.simulate_plan(
        bias_steps(inst.tcspc, inst.pot, [0.0, -1.0], [3.0, 1.0], collect_period=0.5)
    )
    # the sleeps between the two bias moves, and after the second
    moves = [i for i, m in enumerate(msgs) if m.command == "set" and name_of(m) == "pot"]
    slept = [m.args[0] if m.command == "sleep" else 0.0 for m in msgs]
    assert sum(slept[moves[0] : moves[1]]) == pytest.approx(3.0, abs=0.05)
    assert sum(slept[moves[1] : moves[2]]) == pytest.approx(1.0, abs=0.05)
    assert _open_run_md(msgs)["plan_args"]["dwell"] == [3.0, 1.0]


def test_bias_steps_refuses_an_unsafe_bias_before_any_message(inst):
    with pytest.raises(UnsafeBiasError, match=r"^bias_steps: pot: biases\[1\] -2\.500 V"):
        bias_steps(inst.tcspc, inst.pot, [0.0, -2.5], 1.0)  # at the call: no generator


def test_bias_steps_refuses_a_bias_outside_the_ioc_limits_before_the_run(inst, sim):
    sim.add_read_handler_for(inst.pot.bias_low_limit, -1.5)  # the IOC's window is narrower
    out = simulate(sim, bias_steps(inst.tcspc, inst.pot, [-1.0, -1.7], 1.0))
    assert isinstance(out.error, UnsafeBiasError)
    assert str(out.error).startswith("bias_steps: pot: biases[1] -1.700 V is outside the safe")
    assert "[-1.500, +1.000]" in str(out.error)
    assert script(out.messages) == READ_FIRST[:2]  # the limits read, nothing else


def test_bias_steps_failure_completes_photons_and_returns_the_bias(inst, sim):
    broken = FailedStatus("the second move failed")
    out = simulate(
        sim, bias_steps(inst.tcspc, inst.pot, [-0.5, -1.0], 1.0), [(_at("wait", nth=3), broken)]
    )
    assert out.error is broken
    lines = script(out.messages)
    failed = lines.index("set pot -1") + 1  # the move's wait, where the failure arrives
    assert lines[failed:] == ["wait", *PHOTONS_END, "set pot -0.3", "wait"]


def test_bias_steps_failing_cleanup_keeps_the_original_error(inst, sim):
    first, second = RequestAbort("aborted"), FailedStatus("the card did not stop")
    out = simulate(
        sim,
        bias_steps(inst.tcspc, inst.pot, [-0.5], 1.0),
        [(_at("save"), first), (_at("complete", "tcspc"), second)],
    )
    assert out.error is first  # the clean-up's failure is only logged
    assert script(out.messages)[-3:] == ["close_run", "set pot -0.3", "wait"]


def test_bias_steps_without_a_run_engine_is_finite():
    """list(plan) (queueserver's checks, simulators): nothing read, the client window only."""
    from ophyd.sim import make_fake_device

    from qd_bluesky.devices import Potentiostat, TcspcCard

    pot = make_fake_device(Potentiostat)("qd:pot:", name="pot")
    tcspc = make_fake_device(TcspcCard)("qd:tcspc:", name="tcspc")
    msgs = list(bias_steps(tcspc, pot, [0.0, -1.0, -1.5], 1.0))
    commands = [m.command for m in msgs]
    assert commands.count("save") == 3 and commands.count("close_run") == 1


# -- g2 ----------------------------------------------------------------------------------------


def test_g2_at_a_bias(inst, sim):
    msgs = sim.simulate_plan(g2_measurement(inst.tcspc, 1.0, potentiostat=inst.pot, bias=-1.0))
    assert script(msgs) == [
        *READ_FIRST,
        "read pot",
        "open_run",
        *PHOTONS_START,
        "set pot -1",
        "wait",
        *MARKER,
        "acquire",
        *PHOTONS_END,
        "set pot -0.3",
        "wait",
    ]
    assert _open_run_md(msgs)["qd"]["bias_setpoints"] == [-1.0]


def test_g2_without_a_potentiostat_moves_nothing(inst, sim):
    msgs = sim.simulate_plan(g2_measurement(inst.tcspc, 1.0))
    assert script(msgs) == [
        "read tcspc_mode",
        "open_run",
        *PHOTONS_START,
        "create primary",
        "read tcspc_rates",
        "save",
        "acquire",
        *PHOTONS_END,
    ]
    assert _open_run_md(msgs)["qd"]["bias_key"] is None


def test_a_t2_card_records_no_microtimes(inst, sim):
    sim.add_read_handler_for(inst.tcspc.mode, "T2")
    msgs = sim.simulate_plan(g2_measurement(inst.tcspc, 1.0))
    keys = _open_run_md(msgs)["qd"]["photon_keys"]
    assert keys == {
        "timestamps": "tcspc_timestamps",
        "nanotimes": None,
        "detectors": "tcspc_detectors",
    }


# -- CV ----------------------------------------------------------------------------------------

CV_SETUP = [f"set pot_cv_{p}" for p in ("start", "vertex", "end", "rate", "cycles")]


def test_cv_scan_order(inst, sim):
    msgs = sim.simulate_plan(cv_scan(inst.tcspc, inst.pot, 0.0, -2.0, 0.0, 0.2, 3))
    lines = script(msgs)
    assert lines == [
        *READ_FIRST,
        "read pot",
        "open_run",
        "clear_checkpoint",
        "monitor pot",
        "monitor pot_current",
        *PHOTONS_START[1:],
        "set pot 0",
        "wait",
        *MARKER,
        *[f"{s} {v:g}" for s, v in zip(CV_SETUP, (0.0, -2.0, 0.0, 0.2, 3), strict=True)],
        "wait",
        "trigger pot_cv",  # the IOC runs all three cycles
        "acquire",
        "unmonitor pot",  # monitors stop before the card
        "unmonitor pot_current",
        *PHOTONS_END,
        "set pot -0.3",
        "wait",
    ]
    md = _open_run_md(msgs)
    assert md["qd"]["segments"] == "continuous" and md["sweep_duration_s"] == pytest.approx(60)


def test_bias_cycling_one_marker_and_sweep_per_cycle(inst, sim):
    msgs = sim.simulate_plan(bias_cycling(inst.tcspc, inst.pot, 4, monitor_bias=False))
    lines = script(msgs)
    assert lines.count("trigger pot_cv") == 4 and lines.count("save") == 4
    assert not [line for line in lines if line.startswith("monitor")]
    # each cycle: settle at the start, marker, then its own one-cycle sweep
    first = lines.index("set pot 0")
    assert lines[first : first + 6] == ["set pot 0", "wait", *MARKER]
    assert "set pot_cv_cycles 1" in lines


def test_cv_scan_refuses_an_unsafe_vertex_at_the_call(inst):
    with pytest.raises(UnsafeBiasError, match=r"^cv_scan: pot: vertex -3\.000 V is outside"):
        cv_scan(inst.tcspc, inst.pot, 0, -3, 0, 0.2, 1)


def test_cv_failure_stops_the_sweep_then_the_photons(inst, sim):
    """A failure while sweeping: the CV is stopped, and the stop's expected failure (the
    scan's own status failing with StoppedError) is absorbed, not mistaken for a new one."""
    scan = object()  # the status the trigger returns
    sim.add_handler("trigger", lambda msg: scan, "pot_cv")
    sim.add_read_handler_for(inst.pot.cv.progress, 0.4)
    abort = RequestAbort()
    out = simulate(
        sim,
        cv_scan(inst.tcspc, inst.pot, 0.0, -1.0, 0.0, 0.5, 1),
        [
            (_at("wait", nth=4), abort),  # while collecting during the sweep
            (_at("sleep"), FailedStatus(scan)),  # the stopped scan's status fails
        ],
    )
    assert out.error is abort
    lines = script(out.messages)
    stop = lines.index("stop pot")
    assert lines[stop:] == [
        "stop pot",
        "read pot_cv_progress",  # the scan is not over yet
        "acquire",  # polling: the failure of the stopped scan arrives here and is absorbed
        "unmonitor pot",
        "unmonitor pot_current",
        *PHOTONS_END,
        "set pot -0.3",
        "wait",
    ]


def test_cv_scan_own_failure_stops_without_waiting(inst, sim):
    scan = object()
    sim.add_handler("trigger", lambda msg: scan, "pot_cv")
    failed = FailedStatus(scan)
    out = simulate(
        sim, cv_scan(inst.tcspc, inst.pot, 0.0, -1.0, 0.0, 0.5, 1), [(_at("wait", nth=4), failed)]
    )
    assert out.error is failed
    lines = script(out.messages)
    assert lines[lines.index("stop pot") + 1] == "unmonitor pot"


def test_stop_cv_returns_once_a_finished_scan_reports_full_progress(inst, sim):
    sim.add_read_handler_for(inst.pot.cv.progress, 1.0)
    msgs = sim.simulate_plan(stop_cv(inst.pot, object()))
    assert script(msgs) == ["stop pot", "read pot_cv_progress"]


# -- stage -------------------------------------------------------------------------------------


def _bright_spot(inst, sim, at_um, *, peak=3e4, background=200.0, sigma=0.1):
    """Answer the rate meters with a Gaussian spot at ``at_um`` seen from the stage's setpoint."""
    where = {"stage_x": 0.0, "stage_y": 0.0}

    def moved(msg):
        where[name_of(msg)] = float(msg.args[0])

    def rates(msg):
        r2 = (where["stage_x"] - at_um[0]) ** 2 + (where["stage_y"] - at_um[1]) ** 2
        rate = background + peak * np.exp(-r2 / (2 * sigma**2))
        return {"tcspc_count_rate0": {"value": rate / 2}, "tcspc_count_rate1": {"value": rate / 2}}

    sim.add_handler("set", moved, lambda msg: name_of(msg) in where)
    sim.add_handler("read", rates, "tcspc_rates")


def test_raster_scan_is_a_snaking_grid_scan(inst, sim):
    _bright_spot(inst, sim, (0.1, 0.1))
    msgs = sim.simulate_plan(
        raster_scan(inst.stage, inst.tcspc, x_range=(0, 0.2), y_range=(0, 0.1), step=0.1)
    )
    moves = [(name_of(m), round(float(m.args[0]), 6)) for m in msgs if m.command == "set"]
    assert moves == [
        ("stage_y", 0.0),
        ("stage_x", 0.0),
        ("stage_x", 0.1),
        ("stage_x", 0.2),
        ("stage_y", 0.1),  # the second row runs backwards
        ("stage_x", 0.1),
        ("stage_x", 0.0),
    ]
    md = _open_run_md(msgs)
    assert md["plan_name"] == "raster_scan" and md["shape"] == [2, 3]
    assert md["snaking"] == [False, True] and md["hints"]["gridding"] == "rectilinear"
    raster = sim.return_value
    assert raster.rate_cps.shape == (2, 3)
    assert np.unravel_index(np.argmax(raster.rate_cps), (2, 3)) == (1, 1)


def test_find_dot_parks_inside_the_run(inst, sim):
    _bright_spot(inst, sim, (0.12, 0.1))
    sim.add_read_handler_for(inst.stage.x, 0.0)
    sim.add_read_handler_for(inst.stage.y, 0.0)
    msgs = sim.simulate_plan(
        find_dot(inst.stage, inst.tcspc, x_range=(0, 0.3), y_range=(0, 0.3), step=0.1)
    )
    lines = script(msgs)
    assert lines[:2] == ["read stage_x", "read stage_y"]  # where to go back to
    park = lines.index(f"create {DOT_STREAM}")
    parking = lines[park - 7 : park]  # after the raster's last point
    assert [line.split()[:2] for line in parking[:2]] == [["set", "stage_x"], ["set", "stage_y"]]
    assert parking[2:] == [
        "wait",
        "trigger stage_x",
        "trigger stage_y",
        "trigger tcspc_rates",
        "wait",
    ]
    assert lines[park + 1 :] == [
        "read stage_x",
        "read stage_y",
        "read tcspc_rates",
        "save",
        "close_run",
        "unstage stage",
        "unstage tcspc",
    ]
    x, y = sim.return_value
    assert x == pytest.approx(0.12, abs=0.03) and y == pytest.approx(0.1, abs=0.03)


def test_find_dot_without_a_dot_goes_back(inst, sim):
    sim.add_read_handler_for_multiple(
        inst.tcspc.rates, tcspc_count_rate0=100, tcspc_count_rate1=100
    )
    sim.add_read_handler_for(inst.stage.x, 1.5)
    sim.add_read_handler_for(inst.stage.y, -2.0)
    msgs = sim.simulate_plan(
        find_dot(inst.stage, inst.tcspc, x_range=(0, 0.2), y_range=(0, 0.2), step=0.1)
    )
    lines = script(msgs)
    assert lines[-6:] == [
        "set stage_x 1.5",
        "set stage_y -2",
        "wait",
        "close_run",
        "unstage stage",
        "unstage tcspc",
    ]
    assert f"create {DOT_STREAM}" not in lines and sim.return_value is None
