"""adaptive_bias_map's messages (RunEngineSimulator, fake devices) and its argument checks.

The simulator answers the probe's reads with a synthetic dot: lifetime and intensity drop by
a step at ``STEP_V``, so the biases the plan visits after its uniform pass must close in on it.
"""

import math
import sys
from pathlib import Path

import pytest
from bluesky.utils import FailedStatus

from qd_bluesky.devices import UnsafeBiasError
from qd_bluesky.plans import ADAPTIVE_STREAM, adaptive_bias_map

sys.path.insert(0, str(Path(__file__).parent))
from msg_script import script, simulate  # noqa: E402

READ_FIRST = ["read pot_bias_low_limit", "read pot_bias_high_limit", "read tcspc_mode"]
PHOTONS_START = ["clear_checkpoint", "declare_stream tcspc photons", "kickoff tcspc", "wait"]
PHOTONS_END = ["complete tcspc", "wait", "acquire", "close_run"]
MARKER = ["create primary", "read tcspc_rates", "read pot", "save"]
PROBE = ["trigger dot_probe", "wait", f"create {ADAPTIVE_STREAM}", "read dot_probe", "save"]
STEP_V = -0.62


class Probe:
    """A stand-in for PhotonProbe: readable and triggerable, never read without a handler."""

    name = "dot_probe"
    parent = None

    def trigger(self):
        raise AssertionError("the simulator answers the trigger")

    def read(self):
        raise AssertionError("the simulator answers the read")

    def describe(self):
        return {}


@pytest.fixture
def probe():
    return Probe()


@pytest.fixture
def dot(inst, sim, probe):
    """The simulator's dot: the pot reads back the last bias set, the probe reads a step."""
    state = {"bias": -0.3}

    def set_bias(msg):
        state["bias"] = float(msg.args[0])

    def read_pot(msg):
        return {"pot": {"value": state["bias"], "timestamp": 0.0}}

    def read_probe(msg):
        below = state["bias"] < STEP_V
        values = {
            "intensity_cps": 2e4 if below else 3e4,
            "lifetime_ns": 40.0 if below else 110.0,
            "photons": 30_000,
        }
        return {f"dot_probe_{k}": {"value": v, "timestamp": 0.0} for k, v in values.items()}

    sim.add_handler("set", set_bias, "pot")
    sim.add_handler("read", read_pot, "pot")
    sim.add_handler("read", read_probe, "dot_probe")
    return state


def _set_biases(msgs):
    return [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "pot"]


def test_order_and_refinement(inst, sim, probe, dot):
    plan = adaptive_bias_map(inst.tcspc, inst.pot, probe, 0.0, -1.0, 1.0, initial_points=5)
    msgs = sim.simulate_plan(plan)
    biases = _set_biases(msgs)[:-1]  # the last one returns the bias
    point = lambda v: [f"set pot {v:g}", "wait", *MARKER, "acquire", *PROBE]  # noqa: E731
    assert script(msgs) == [
        *READ_FIRST,
        "read pot",  # the bias to return to
        "open_run",
        *PHOTONS_START,
        *[line for v in biases for line in point(v)],
        *PHOTONS_END,
        "set pot -0.3",
        "wait",
    ]
    # The uniform pass, then halvings of the interval that holds the step until its midpoint
    # places the step to 50 mV (an interval of at most 100 mV); nowhere else.
    assert biases[:5] == [0.0, -0.25, -0.5, -0.75, -1.0]
    assert biases[5:] == [-0.625, -0.5625]
    below = max(v for v in biases if v < STEP_V)
    above = min(v for v in biases if v > STEP_V)
    assert above - below <= 0.1 and abs((above + below) / 2 - STEP_V) <= 0.05

    # The probe reads up to the last announced row: a collect right before each trigger.
    triggers = [i for i, m in enumerate(msgs) if m.command == "trigger"]
    assert len(triggers) == len(biases)
    assert all(msgs[i - 1].command == "collect" for i in triggers)

    (opened,) = [m for m in msgs if m.command == "open_run"]
    md = opened.kwargs
    assert md["plan_name"] == "adaptive_bias_map"
    assert md["plan_args"]["start"] == 0.0 and md["plan_args"]["stop"] == -1.0
    assert md["plan_args"]["probe"] == repr(probe)
    assert md["qd"]["segments"] == "steps" and md["qd"]["bias_setpoints"] is None


def test_max_points_bounds_the_run(inst, sim, probe, dot):
    plan = adaptive_bias_map(
        inst.tcspc, inst.pot, probe, 0.0, -1.0, 1.0, initial_points=5, max_points=6
    )
    assert len(_set_biases(sim.simulate_plan(plan))) == 6 + 1


def test_a_failed_move_completes_photons_and_returns_the_bias(inst, sim, probe, dot):
    broken = FailedStatus("the third move failed")
    moves = []

    def third_move_wait(msg):
        if msg.command == "set" and msg.obj.name == "pot":
            moves.append(msg)
        return len(moves) == 3 and msg.command == "wait"

    out = simulate(
        sim,
        adaptive_bias_map(inst.tcspc, inst.pot, probe, 0.0, -1.0, 1.0, initial_points=5),
        [(third_move_wait, broken)],
    )
    assert out.error is broken
    lines = script(out.messages)
    failed = lines.index("set pot -0.5") + 1
    assert lines[failed:] == ["wait", *PHOTONS_END, "set pot -0.3", "wait"]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"stop": -2.5}, UnsafeBiasError, r"^adaptive_bias_map: pot: stop -2\.500 V is outside"),
        ({"stop": 0.0}, ValueError, r"^adaptive_bias_map: start and stop are both 0 V"),
        ({"dwell": 0}, ValueError, r"^adaptive_bias_map: dwell must be > 0 s, not 0$"),
        ({"tolerance": -0.1}, ValueError, r"^adaptive_bias_map: tolerance must be > 0 V"),
        ({"initial_points": 1}, ValueError, r"^adaptive_bias_map: initial_points must be a whole"),
        ({"max_points": 3}, ValueError, r"^adaptive_bias_map: max_points must be a whole .* >= 11"),
        ({"probe": object()}, ValueError, r"^adaptive_bias_map: probe .* is not a triggerable"),
        ({"md": "x"}, ValueError, r"^adaptive_bias_map: md"),
    ],
)
def test_bad_arguments_fail_at_the_call(inst, probe, kwargs, error, pattern):
    args = {"probe": probe, "start": 0.0, "stop": -1.0, "dwell": 1.0, **kwargs}
    with pytest.raises(error, match=pattern):
        adaptive_bias_map(inst.tcspc, inst.pot, **args)


def test_without_a_run_engine_the_uniform_pass_is_all(inst, probe):
    """list(plan) (queueserver's checks): no readings, so no change to refine."""
    msgs = list(adaptive_bias_map(inst.tcspc, inst.pot, probe, 0.0, -1.0, 1.0, initial_points=4))
    biases = [m.args[0] for m in msgs if m.command == "set"][:-1]  # then the way back
    assert biases == pytest.approx([0.0, -1 / 3, -2 / 3, -1.0])
    assert math.isfinite(sum(m.args[0] for m in msgs if m.command == "sleep"))
