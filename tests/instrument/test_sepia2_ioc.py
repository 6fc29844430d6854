"""The laser IOC on the Sepia II backend and the fake Sepia II library, over Channel Access.

The IOC serves from a thread of the test process (so a test can turn the fake's key switch);
the real ``Laser`` device and plain CA puts drive it as they would a lab's IOC. The last test
starts the documented command, ``python -m qd_bluesky.iocs.laser --backend sepia2``, as a
process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from caproto import ErrorResponseReceived
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from qd_bluesky.devices import Laser
from qd_bluesky.iocs import LaserIOC, loopback_environment, use_loopback_ioc
from qd_bluesky.iocs._power_calibration import PowerCalibration
from qd_bluesky.iocs._sepia2 import Sepia2Laser
from qd_bluesky.iocs._sepia2_fake import FakeSepia2Lib

CALIBRATION = PowerCalibration((0, 400, 600, 1000), (0.0, 0.0, 2e-8, 3e-7))


@pytest.fixture
def sepia(serve_in_thread):
    """(fake library, prefix, Laser device) with the IOC on the fake serving."""
    fake = FakeSepia2Lib()
    prefix = f"qdsep{uuid.uuid4().hex[:8]}:"
    serve_in_thread(LaserIOC(prefix=f"{prefix}laser:", backend=Sepia2Laser(fake, CALIBRATION)))
    laser = Laser(f"{prefix}laser:", name="laser")
    laser.wait_for_connection(timeout=20)
    yield fake, prefix, laser
    laser.destroy()


def _answers(pv: str) -> bool:
    try:
        ca_read(pv, repeater=False, timeout=0.5)
    except TimeoutError:
        return False
    return True


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_power_rate_and_emission_reach_the_sepia(sepia):
    fake, prefix, laser = sepia
    # A real laser starts locked (emission off), at 2.5 MHz.
    assert laser.emission.get(use_monitor=False) == "off"
    assert fake.soft_locked and fake.freq_index == 5
    laser.power.set(30e-9).wait(5)
    expected = CALIBRATION.permille_for(30e-9)
    assert fake.intensity_permille == expected
    assert ca_read(f"{prefix}laser:intensity", repeater=False, timeout=5).data[0] == expected
    laser.rep_rate.set(40e6).wait(5)
    assert fake.freq_index == 1
    frequency = ca_read(f"{prefix}laser:frequency", data_type="native", repeater=False, timeout=5)
    assert frequency.data[0] == 1  # "40 MHz" in the list 80, 40, 20, 10, 5, 2.5 MHz
    ca_write(f"{prefix}laser:frequency", "10 MHz", notify=True, repeater=False, timeout=5)
    assert fake.freq_index == 3
    assert laser.rep_rate.get(use_monitor=False) == pytest.approx(10e6)
    laser.emission.set("on").wait(5)
    assert fake.emitting and not fake.soft_locked
    assert _wait(lambda: ca_read(f"{prefix}laser:soft_lock", repeater=False).data[0] == b"off")
    laser.emission.set("off").wait(5)
    assert fake.soft_locked and not fake.emitting


def test_refusals_are_one_line_and_change_nothing(sepia):
    fake, prefix, laser = sepia
    with pytest.raises(ErrorResponseReceived, match="rep_rate 3e\\+07 Hz is not one of 80 MHz"):
        ca_write(f"{prefix}laser:rep_rate", 30e6, notify=True, repeater=False, timeout=5)
    assert fake.freq_index == 5 and laser.rep_rate.get(use_monitor=False) == pytest.approx(2.5e6)
    with pytest.raises(ErrorResponseReceived, match="outside the calibrated range"):
        ca_write(f"{prefix}laser:power", 5e-7, notify=True, repeater=False, timeout=5)
    assert laser.power.get(use_monitor=False) == pytest.approx(30e-9)
    with pytest.raises(ErrorResponseReceived, match="interlock is an input"):
        ca_write(f"{prefix}laser:interlock", "open", notify=True, repeater=False, timeout=5)
    assert laser.interlock.get(use_monitor=False) == "closed"


def test_key_and_power_failure_open_the_interlock_and_stop_emission(sepia):
    fake, prefix, laser = sepia

    def cause():
        return ca_read(f"{prefix}laser:interlock_cause", repeater=False).data[0]

    laser.emission.set("on").wait(5)
    fake.turn_key(locked=True)
    assert _wait(lambda: laser.interlock.get(use_monitor=False) == "open")
    assert cause() == b"key"
    assert _wait(lambda: laser.emission.get(use_monitor=False) == "off")
    assert fake.soft_locked and not fake.emitting
    assert laser.interlock_open
    # Emission is refused while the key locks the laser; the soft lock stays set.
    with pytest.raises(ErrorResponseReceived, match="interlock is open"):
        ca_write(f"{prefix}laser:emission", "on", notify=True, repeater=False, timeout=5)
    assert fake.soft_locked
    fake.turn_key(locked=False)
    laser.emission.set("on").wait(5)  # unlocking re-reads the key: closed now
    assert fake.emitting
    assert _wait(lambda: laser.interlock.get(use_monitor=False) == "closed")
    fake.fail_power(failed=True)
    assert _wait(lambda: cause() == b"power failure")
    assert laser.interlock.get(use_monitor=False) == "open"
    assert _wait(lambda: laser.emission.get(use_monitor=False) == "off")
    fake.fail_power(failed=False)
    assert _wait(lambda: laser.interlock.get(use_monitor=False) == "closed")


def test_a_lock_set_at_the_laser_switches_emission_off(sepia):
    fake, prefix, laser = sepia
    laser.emission.set("on").wait(5)
    fake.soft_locked = True  # e.g. PicoQuant's own GUI on the same device
    assert _wait(lambda: laser.emission.get(use_monitor=False) == "off")
    assert ca_read(f"{prefix}laser:soft_lock", repeater=False).data[0] == b"on"


def test_a_library_error_alarms_the_status_and_refuses_the_put(sepia):
    fake, prefix, laser = sepia
    fake.inject_error("SEPIA2_SLM_SetIntensityFineStep", -6002)
    with pytest.raises(ErrorResponseReceived, match="SEPIA2_SLM_SetIntensityFineStep failed"):
        ca_write(f"{prefix}laser:power", 40e-9, notify=True, repeater=False, timeout=5)
    status = ca_read(f"{prefix}laser:status", data_type="time", repeater=False, timeout=5)
    assert status.metadata.severity == 2  # MAJOR: a fault of the laser driver
    assert b"SLM: illegal intensity" in bytes(status.data)
    assert laser.power.get(use_monitor=False) == pytest.approx(30e-9)
    laser.power.set(40e-9).wait(5)  # the next request goes through and clears the alarm
    status = ca_read(f"{prefix}laser:status", data_type="time", repeater=False, timeout=5)
    assert status.metadata.severity == 0
    assert fake.intensity_permille == CALIBRATION.permille_for(40e-9)


def test_the_start_command_serves_the_sepia_backend_and_passes_the_checks(tmp_path, free_port):
    calibration = tmp_path / "cal.csv"
    calibration.write_text("intensity_permille,power_w\n0,0\n400,0\n600,2e-8\n1000,3e-7\n")
    prefix, port = f"qdsep{uuid.uuid4().hex[:8]}:", free_port()
    cmd = [sys.executable, "-P", "-m", "qd_bluesky.iocs.laser", "--backend", "sepia2"]
    cmd += ["--calibration", str(calibration), "--library", "fake", "--prefix", prefix]
    cmd += ["--interfaces", "127.0.0.1"]
    env = {**os.environ, **loopback_environment(port)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        use_loopback_ioc(port)
        # Short searches, repeated: the first answers as soon as the process serves.
        assert _wait(lambda: _answers(f"{prefix}laser:intensity"), timeout=60)
        reading = ca_read(f"{prefix}laser:intensity", repeater=False, timeout=5)
        assert reading.data[0] == CALIBRATION.permille_for(30e-9)
        emission = ca_read(f"{prefix}laser:emission", repeater=False, timeout=5)
        assert emission.data[0] == b"off"
        # The conformance command passes the emulator-backed IOC as it passes the simulation.
        check = [sys.executable, "-P", "-m", "qd_bluesky.cli", "check-instrument"]
        check += ["--prefix", prefix, "--port", str(port), "--only", "laser"]
        done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "PASS  laser: connect",
        "PASS  laser: documented PVs: 10 PVs read, types as documented",
        "PASS  laser: rep_rate off the list refused: 3.14159e+06 Hz refused",
        "SKIP  laser: emission refused with the interlock open: the interlock is an input of "
        "this laser: it cannot be opened",
        "4 checks, 0 failed",
    ]
    assert proc.returncode == 0, out
    assert "put refused: the Sepia II interlock is an input" in out
