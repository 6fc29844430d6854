"""The EmStat driver's failures: one line naming the port and the problem (no IOC needed)."""

from __future__ import annotations

import os
import tty

import pytest

from qd_bluesky.iocs import BackendFault, EmStatEmulator, EmStatPotentiostat
from qd_bluesky.iocs._emstat import open_emstat


def test_a_missing_port_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^EmStat on /dev/qd-no-such-port: cannot open") as err:
        open_emstat("/dev/qd-no-such-port")
    assert "\n" not in str(err.value)


def test_a_silent_port_is_not_an_instrument() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(ValueError, match="no MethodSCRIPT instrument answers"):
            open_emstat(os.ttyname(slave), timeout_s=0.3)
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture
def emstat():
    emulator = EmStatEmulator(seed=1).start()
    backend = EmStatPotentiostat(emulator.port)
    yield emulator, backend
    backend.close()
    emulator.close()


def test_the_instrument_refusing_a_script_is_a_backend_fault(emstat) -> None:
    emulator, backend = emstat
    backend.compliance_v = 3.0  # the model's limit; the driver lets 2.9 V through
    backend.apply_bias(2.9)
    assert emulator.applied_v == pytest.approx(2.9)
    with pytest.raises(BackendFault, match=r"beyond the compliance \+-3.0 V"):
        backend.apply_bias(3.2)
    with pytest.raises(ValueError, match="the EmStat4 LR applies at most"):
        backend.compliance_v = 4.0
    # a script the instrument rejects (here: a potential beyond its range) is one line
    with pytest.raises(BackendFault, match=r"refused the script \(!4004: Line 1"):
        backend._run(["set_e 5"])


def test_a_static_bias_reads_the_current_the_instrument_sent(emstat) -> None:
    emulator, backend = emstat
    backend.apply_bias(-0.3)
    assert backend.bias_v == pytest.approx(-0.3) and backend.cell_is_on
    assert backend.current_a == emulator.sent[-1].current_a
    # autorange: the range the instrument reports is the smallest that holds the current
    assert backend.current_range_a >= abs(backend.current_a)
    assert backend.current_range_a / 10 < max(abs(backend.current_a), 1e-9)
