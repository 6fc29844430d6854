"""The simulated stage as EPICS motor records, driven over Channel Access.

ophyd's own ``EpicsMotor`` (not the qd subclass) moves it, as it would move a PI controller
under motorPIGCS2; then the qd stage device on explicitly named motor records, as a lab would
configure its own. The stage IOC runs alone (``python -m qd_bluesky.iocs.stage``), so a test
can kill it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write
from ophyd import EpicsMotor
from ophyd.utils import LimitError

from qd_bluesky.devices import InstrumentError, IocLostError, PiezoStage, StoppedError
from qd_bluesky.iocs import loopback_environment
from qd_bluesky.iocs._stage import TRAVEL_UM, VELOCITY_UM_S


class StageProcess:
    """``python -m qd_bluesky.iocs.stage`` on its own loopback port and PV prefix."""

    def __init__(self, port: int) -> None:
        self.prefix = f"qdm{uuid.uuid4().hex[:8]}:"
        self.port = port
        env = {**os.environ, **loopback_environment(port)}
        cmd = [sys.executable, "-P", "-m", "qd_bluesky.iocs.stage", "--prefix", self.prefix]
        self.proc = subprocess.Popen(
            [*cmd, "--interfaces", "127.0.0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        started = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if "Server startup complete" in line:
                    started.set()
            started.set()

        threading.Thread(target=pump, daemon=True).start()
        assert started.wait(60) and self.proc.poll() is None, "".join(self.lines)
        os.environ["EPICS_CA_ADDR_LIST"] += f" 127.0.0.1:{port}"

    def record(self, axis: str) -> str:
        return f"{self.prefix}stage:{axis}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(15)


@pytest.fixture(scope="module")
def stage_ioc() -> Iterator[StageProcess]:
    from qd_bluesky.iocs import free_port_pair

    ioc = StageProcess(free_port_pair())
    yield ioc
    ioc.kill()


def _caget(pv: str):
    return ca_read(pv, repeater=False, timeout=10).data[0]


def test_ophyd_epics_motor_moves_the_simulated_stage(stage_ioc, waiter):
    motor = EpicsMotor(stage_ioc.record("x"), name="mx")
    motor.wait_for_connection(timeout=20)
    try:
        assert motor.egu == "um" and motor.limits == TRAVEL_UM
        assert motor.velocity.get() == pytest.approx(VELOCITY_UM_S)
        start = motor.position
        # A 1 um move at 10 um/s: DMOV 0 and MOVN 1 while it moves, the put completes there.
        motor.velocity.put(10.0, wait=True)
        t0 = time.monotonic()
        status = motor.set(start + 1.0)
        assert waiter(
            lambda: (motor.motor_done_move.get(), motor.motor_is_moving.get()) == (0, 1),
            timeout=5,
            period=0.01,
        )
        assert not status.done
        status.wait(10)
        assert status.success
        assert time.monotonic() - t0 >= 1.0 / 10.0 - 0.01
        assert motor.position == pytest.approx(start + 1.0, abs=1e-9)
        assert _caget(f"{stage_ioc.record('x')}.RBV") == pytest.approx(start + 1.0, abs=1e-9)
        assert _caget(f"{stage_ioc.record('x')}.DMOV") == 1
        assert motor.read()["mx"]["value"] == pytest.approx(start + 1.0, abs=1e-9)

        # Stopped mid-move: the axis stays between start and target, the record is done
        # (EpicsMotor's status finishes on DMOV 1) and VAL becomes where it stopped.
        motor.velocity.put(2.0, wait=True)
        here = motor.position
        status = motor.set(here + 4.0)  # 2 s
        time.sleep(0.4)
        motor.stop()
        status.wait(5)
        assert motor.motor_done_move.get() == 1
        stopped = motor.position
        assert here + 0.2 < stopped < here + 4.0 - 0.5
        time.sleep(0.3)  # nothing moves any more
        assert motor.position == stopped
        assert motor.user_setpoint.get(use_monitor=False) == pytest.approx(stopped)

        # Beyond HLM: EpicsMotor refuses before any put (the limits are VAL's control limits).
        with pytest.raises(LimitError):
            motor.set(TRAVEL_UM[1] + 50.0)
        # A client that puts anyway: the record sets LVIO and does not move.
        ca_write(stage_ioc.record("x"), [TRAVEL_UM[1] + 50.0], notify=True, timeout=10)
        assert _caget(f"{stage_ioc.record('x')}.LVIO") == 1
        assert _caget(stage_ioc.record("x")) == pytest.approx(stopped)
        assert motor.position == stopped
        # A new HLM reaches the client's limits at once (EpicsMotor watches HLM).
        motor.high_limit_travel.put(stopped + 0.5, wait=True)
        assert waiter(lambda: motor.limits[1] == pytest.approx(stopped + 0.5), timeout=5)
        with pytest.raises(LimitError):
            motor.set(stopped + 1.0)
        motor.set(stopped + 0.25).wait(10)
        assert _caget(f"{stage_ioc.record('x')}.LVIO") == 0
    finally:
        motor.high_limit_travel.put(TRAVEL_UM[1], wait=True)
        motor.velocity.put(VELOCITY_UM_S, wait=True)
        motor.destroy()


@pytest.fixture
def lab_stage(stage_ioc) -> Iterator[PiezoStage]:
    """The qd stage device on the records named in full, as a lab gives its motors."""
    stage = PiezoStage("nothing:", name="stage", motors=[stage_ioc.record(axis) for axis in "xyz"])
    stage.wait_for_connection(timeout=20)
    yield stage
    stage.destroy()


def test_the_stage_device_on_named_motor_records(stage_ioc, lab_stage, waiter):
    x = lab_stage.x
    assert x.user_readback.pvname == f"{stage_ioc.record('x')}.RBV"
    assert x.limits == TRAVEL_UM
    with pytest.raises(LimitError, match=r"stage_x: 150 um is outside the soft limits"):
        x.set(150.0)
    start = x.position
    x.set(start - 0.5).wait(10)
    assert x.read()["stage_x"]["value"] == pytest.approx(start - 0.5, abs=1e-9)

    # Another client stops the move (.STOP): the move fails, saying where it stopped.
    x.velocity.set(2.0).wait(5)
    try:
        status = x.set(start + 3.5)
        time.sleep(0.4)
        ca_write(f"{stage_ioc.record('x')}.STOP", [1], notify=True, timeout=10)
        with pytest.raises(StoppedError, match=r"the move to .* um was stopped at"):
            status.wait(10)
        assert start - 0.5 < x.position < start + 3.5

        # SPMG Stop: the record moves nothing; the device says so before any put.
        ca_write(f"{stage_ioc.record('x')}.SPMG", ["Stop"], notify=True, timeout=10)
        assert waiter(lambda: x.stop_pause_move_go.get() == "Stop", timeout=5)
        with pytest.raises(InstrumentError, match=r"in Stop mode .*SPMG"):
            x.set(start)
        ca_write(f"{stage_ioc.record('x')}.SPMG", ["Go"], notify=True, timeout=10)
        # Servo off (.CNEN): refused before any put too.
        x.servo.set("Disable").wait(5)
        with pytest.raises(InstrumentError, match=r"the servo is off"):
            x.set(start)
        x.servo.set("Enable").wait(5)
        assert waiter(lambda: x.stop_pause_move_go.get() == "Go", timeout=5)
    finally:
        x.velocity.set(VELOCITY_UM_S).wait(5)
    x.set(start).wait(10)
    assert x.position == pytest.approx(start, abs=1e-9)


def test_lost_stage_ioc_fails_the_move_fast(free_port):
    ioc = StageProcess(free_port())
    stage = PiezoStage(f"{ioc.prefix}stage:", name="stage")
    try:
        stage.wait_for_connection(timeout=20)
        stage.y.velocity.set(1.0).wait(5)
        status = stage.y.set(stage.y.position + 5.0)  # 5 s
        time.sleep(0.3)
        assert not status.done
        ioc.kill()
        # A loss, reported when the circuit closes, not at the 12 s timeout of the move.
        t0 = time.monotonic()
        with pytest.raises(IocLostError, match=r"stage_y: the stage IOC .* was lost during"):
            status.wait(30)
        assert time.monotonic() - t0 < 5.0
        with pytest.raises(IocLostError, match="not connected"):
            stage.y.set(0.0)
    finally:
        ioc.kill()
        stage.destroy()
