"""``bias_switching``'s message order and its checks, without any IOC."""

import sys
from pathlib import Path

import pytest
from bluesky.utils import FailedStatus, RequestAbort

from qd_bluesky.devices import UnsafeBiasError
from qd_bluesky.plans import bias_switching

sys.path.insert(0, str(Path(__file__).parent))
from msg_script import script, simulate  # noqa: E402
from test_messages import MARKER, PHOTONS_END, PHOTONS_START, READ_FIRST, _at  # noqa: E402


def test_bias_switching_order(inst, sim):
    msgs = sim.simulate_plan(
        bias_switching(inst.tcspc, inst.pot, -1.8, 0.0, period=200e-6, duration=2.0)
    )
    lines = script(msgs)
    assert lines == [
        *READ_FIRST,
        "read pot",  # the bias to return to
        "open_run",
        *PHOTONS_START,
        "set pot -1.8",  # settle at low first, then the marker
        "wait",
        *MARKER,
        "set pot_switching_low -1.8",
        "set pot_switching_high 0",
        "set pot_switching_period 0.0002",
        "set pot_switching_cycles 10000",
        "wait",
        "trigger pot_switching",  # the IOC plays the whole wave
        "acquire",
        *PHOTONS_END,
        "set pot -0.3",  # back to where the bias was
        "wait",
    ]
    (opened,) = [m for m in msgs if m.command == "open_run"]
    md = opened.kwargs
    assert md["plan_name"] == "bias_switching"
    assert md["plan_args"]["cycles"] == 10000 and md["plan_args"]["low"] == -1.8
    assert md["qd"]["switching"] == {"period_s": 200e-6, "bin_s": 0.0, "trigger_channel": 1}
    assert md["qd"]["segments"] == "steps" and md["qd"]["bias_setpoints"] == [-1.8]


def test_bias_switching_failure_stops_the_wave_and_returns_the_bias(inst, sim):
    wave = object()
    sim.add_handler("trigger", lambda msg: wave, "pot_switching")
    sim.add_read_handler_for(inst.pot.switching.progress, 0.4)
    abort = RequestAbort()
    out = simulate(
        sim,
        bias_switching(inst.tcspc, inst.pot, -1.0, 0.0, period=1e-3, cycles=100),
        [(_at("wait", nth=4), abort), (_at("sleep"), FailedStatus(wave))],
    )
    assert out.error is abort
    lines = script(out.messages)
    stop = lines.index("stop pot")
    assert lines[stop:] == [
        "stop pot",
        "read pot_switching_progress",  # not over: poll until the IOC lets go
        "acquire",  # the stopped wave's failure arrives here and is absorbed
        *PHOTONS_END,
        "set pot -0.3",
        "wait",
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"low": -3.0}, UnsafeBiasError, r"^bias_switching: pot: low -3\.000 V is outside"),
        ({"low": 0.5}, ValueError, r"low \(0\.5 V\) must be below high"),
        ({"period": 1e-6}, ValueError, r"period must be at least 1e-05 s"),
        ({"cycles": 5}, ValueError, r"either cycles or duration"),
        ({"duration": None}, ValueError, r"either cycles or duration"),
        ({"trigger_channel": 5}, ValueError, r"trigger_channel must be an input 1-4"),
    ],
)
def test_bias_switching_checks_at_the_call(inst, kwargs, error, match):
    args = {"low": -1.0, "high": 0.0, "period": 1e-3, "duration": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        bias_switching(inst.tcspc, inst.pot, **args)
