"""The stage axis' client-side logic on a fake motor record (no IOC): checks before any put,
and how a move the record reports done is judged; the lab's own motor records."""

from __future__ import annotations

import pytest
from caproto import AlarmSeverity, AlarmStatus
from ophyd.sim import make_fake_device
from ophyd.utils import LimitError

from qd_bluesky.devices import (
    InstrumentError,
    PiezoStage,
    StoppedError,
    make_instrument,
)


@pytest.fixture
def x(monkeypatch):
    stage = make_fake_device(PiezoStage)("qd:stage:", name="stage")
    axis = stage.x
    # EpicsMotor reads the readback's alarm when DMOV returns to 1; a fake signal has none.
    for attr, default in (("alarm_severity", AlarmSeverity.NO_ALARM), ("alarm_status", 0)):
        alarm = property(lambda sig, a=attr[6:], d=default: sig._metadata.get(a) or d)
        monkeypatch.setattr(type(axis.user_readback), attr, alarm, raising=False)
    axis.user_setpoint.sim_set_limits((-100.0, 100.0))
    for signal, value in (
        (axis.servo, "Enable"),
        (axis.stop_pause_move_go, "Go"),
        (axis.velocity, 10.0),
        (axis.acceleration, 0.0),
        (axis.retry_deadband, 1e-4),
        (axis.motor_egu, "um"),
        (axis.user_readback, 1.0),
        (axis.motor_done_move, 1),
    ):
        signal.sim_put(value)
    return axis


def _record_moves(axis, *path: float) -> None:
    """What the motor record posts: DMOV 0, the readbacks, DMOV 1."""
    axis.motor_done_move.sim_put(0)
    for position in path:
        axis.user_readback.sim_put(position)
    axis.motor_done_move.sim_put(1)


@pytest.mark.parametrize("target", [100.5, -101.0, float("nan")])
def test_outside_the_soft_limits_is_refused_before_any_put(x, target):
    with pytest.raises(
        LimitError, match=r"stage_x: .* um is outside the soft limits \[-100, 100\]"
    ):
        x.set(target)
    assert x.user_setpoint.get() == 0.0  # nothing put


@pytest.mark.parametrize(
    ("signal", "value", "pattern"),
    [
        ("servo", "Disable", r"servo is off \(qd:stage:x.CNEN"),
        ("stop_pause_move_go", "Pause", "in Pause mode"),
    ],
)
def test_a_record_that_cannot_move_is_refused_before_any_put(x, signal, value, pattern):
    getattr(x, signal).sim_put(value)
    with pytest.raises(InstrumentError, match=pattern):
        x.set(5.0)
    assert x.user_setpoint.get() == 0.0


def test_a_move_is_done_when_the_record_arrives(x):
    status = x.set(3.0)
    assert x.user_setpoint.get() == 3.0 and not status.done
    # The timeout is finite: 2 um at 10 um/s, with the margin of every operation.
    assert 0.2 < status.timeout < 60
    _record_moves(x, 2.0, 3.0)
    status.wait(1)
    assert status.success and x.position == 3.0


def test_a_move_that_ends_short_fails_as_stopped(x):
    status = x.set(3.0)
    _record_moves(x, 1.5, 2.2)  # e.g. .STOP or .SPMG from another client
    with pytest.raises(StoppedError, match=r"stage_x: the move to 3 um was stopped at 2.2 um"):
        status.wait(1)


def test_a_move_that_ends_in_a_record_alarm_fails_naming_it(x):
    status = x.set(3.0)
    x.motor_done_move.sim_put(0)
    x.user_readback._metadata.update(severity=AlarmSeverity.MAJOR_ALARM, status=AlarmStatus.STATE)
    x.user_readback.sim_put(1.7)
    x.motor_done_move.sim_put(1)
    with pytest.raises(InstrumentError, match=r"ended with a MAJOR STATE alarm .* at 1.7 um"):
        status.wait(1)


def test_stop_fails_the_move_and_puts_stop(x):
    status = x.set(3.0)
    x.user_readback.sim_put(1.4)
    x.stop()
    with pytest.raises(StoppedError, match=r"the move to 3 um was stopped at 1.4 um"):
        status.wait(1)
    assert x.motor_stop.get() == 1


@pytest.fixture
def fake_devices(monkeypatch):
    """make_instrument builds fakes: nothing searches for PVs in the unit tier."""
    from qd_bluesky.devices import _instrument

    for name in ("Laser", "PiezoStage", "Potentiostat", "TcspcCard"):
        monkeypatch.setattr(_instrument, name, make_fake_device(getattr(_instrument, name)))


def test_a_lab_names_its_own_motor_records(fake_devices):
    inst = make_instrument("lab:", stage_motors=("PI:m1", "PI:m2", "PI:m3.VAL"))
    stage = inst.stage
    assert stage.motors == ("PI:m1", "PI:m2", "PI:m3")
    # The axes are the records (EpicsMotor adds .RBV, .VAL, .DMOV ...).
    assert (stage.x.prefix, stage.y.prefix, stage.z.prefix) == stage.motors
    assert inst.pot.prefix == "lab:pot:"
    default = make_instrument("qd:").stage
    assert default.motors == ("qd:stage:x", "qd:stage:y", "qd:stage:z")
    assert default.x.prefix == "qd:stage:x"


@pytest.mark.parametrize("motors", [("PI:m1", "PI:m2"), "PI:m1", ("PI:m1", "", "PI:m3")])
def test_stage_motors_must_be_three_record_names(fake_devices, motors):
    with pytest.raises(ValueError, match="stage motors must be three motor record names"):
        make_instrument("lab:", stage_motors=motors)
