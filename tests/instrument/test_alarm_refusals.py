"""Item 5 of issue 16: a put that completes with a record alarm is a refusal.

The IOC (``base_record_ioc.py``, a real caproto server in a subprocess) refuses the way an
EPICS-base record does: alarm, old value, put callback completed with success.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from ophyd.status import StatusBase

from qd_bluesky.devices import RefusedByAlarmError
from qd_bluesky.devices._positioner import GuardedPositioner
from qd_bluesky.devices._signals import operation, ro, rw

IOC_SCRIPT = Path(__file__).with_name("base_record_ioc.py")


class Axis(GuardedPositioner):
    what = "axis"
    setpoint = operation("val")
    readback = ro("rbv")
    stop_signal = rw("abort")
    run = operation("run", put_complete=True)


@pytest.fixture(scope="module")
def base_ioc(ioc_subprocess):
    prefix = f"qdb{uuid.uuid4().hex[:8]}:"
    ioc = ioc_subprocess([sys.executable, "-P", str(IOC_SCRIPT), "--prefix", prefix]).start()
    axis = Axis(prefix, name="axis")
    axis.wait_for_connection(timeout=20)
    yield axis
    axis.destroy()
    ioc.stop()


def test_a_move_the_record_takes_succeeds(base_ioc) -> None:
    base_ioc.move(3.0, timeout=10)
    assert base_ioc.position == pytest.approx(3.0)


def test_a_minor_alarm_is_a_warning_not_a_refusal(base_ioc) -> None:
    base_ioc.move(9.0, timeout=10)  # the record takes it, in a MINOR HIGH alarm
    assert base_ioc.position == pytest.approx(9.0)


def test_a_put_completed_in_alarm_fails_the_move_with_the_reason(base_ioc) -> None:
    base_ioc.move(2.0, timeout=10)
    status = base_ioc.move(20.0, wait=False, timeout=10)
    with pytest.raises(RefusedByAlarmError) as err:
        status.wait(10)
    message = str(err.value)
    assert "\n" not in message
    assert "the move to 20" in message and "INVALID" in message and "HWLIMIT" in message
    assert "2.0" in message  # the value the record kept
    assert base_ioc.setpoint.get(use_monitor=False) == pytest.approx(2.0)
    assert base_ioc.readback.get(use_monitor=False) == pytest.approx(2.0)
    # the next request the record takes clears the alarm and succeeds
    base_ioc.move(1.0, timeout=10)
    assert base_ioc.position == pytest.approx(1.0)


def test_an_operation_completed_in_alarm_fails_its_status(base_ioc) -> None:
    def run(value: float) -> StatusBase:
        status = StatusBase(timeout=10)
        return base_ioc.follow_operation(
            status,
            lambda: base_ioc.run.set(value, timeout=None),
            during=f"the run at {value}",
            target=base_ioc.position,
            alarm_of=(base_ioc.run,),
        )

    run(5.0).wait(10)
    with pytest.raises(RefusedByAlarmError, match="the run at 50"):
        run(50.0).wait(10)
