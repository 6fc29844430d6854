"""The potentiostat IOC on an EmStat over MethodSCRIPT, run against the emulator.

The emulator (:class:`qd_bluesky.iocs.EmStatEmulator`, in this process) speaks MethodSCRIPT on
a pseudo-terminal; the IOC is ``python -m qd_bluesky.iocs.potentiostat --backend emstat
--serial <pty>`` in a subprocess, exactly as on ``/dev/ttyACM0``; the test drives it with the
real :class:`~qd_bluesky.devices.Potentiostat` over Channel Access and checks what reached the
client against what the emulator sent.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from caproto.sync.client import write as ca_write

from qd_bluesky.devices import Potentiostat, StoppedError, UnsafeBiasError
from qd_bluesky.devices._pvs import documented_pvs
from qd_bluesky.iocs import EmStatEmulator

#: Resolution of the decoded current (A): the emulator encodes with the finest SI prefix that
#: holds the value, so a few 1e-15 A of rounding at most for the uA currents here.
CURRENT_TOLERANCE_A = 1e-12


def _cv_script(emulator: EmStatEmulator, first: int, loop: str) -> int:
    """Index of the one script since ``first`` that ran the CV with ``loop``."""
    found = [
        k
        for k, script in enumerate(emulator.scripts[first:], start=first)
        if any(line.startswith(loop) for line in script)
    ]
    assert len(found) == 1, emulator.scripts[first:]
    return found[0]


def _contains_in_order(values, expected, atol: float = 1e-9) -> bool:
    """True if ``expected`` appears in ``values`` as one contiguous run (a value repeated in
    a row counts once: a client may see one update twice)."""
    values, expected = _collapse(values), _collapse(expected)
    for start in range(len(values) - len(expected) + 1):
        if np.allclose(values[start : start + len(expected)], expected, rtol=0, atol=atol):
            return True
    return False


def _collapse(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.r_[True, np.diff(values) != 0]] if len(values) else values


@pytest.fixture(scope="module")
def emstat(ioc_subprocess):
    """(emulator, Potentiostat device, prefix) with the EmStat-backed IOC serving."""
    emulator = EmStatEmulator(seed=3).start()
    prefix = f"qde{uuid.uuid4().hex[:8]}:"
    cmd = [sys.executable, "-P", "-m", "qd_bluesky.iocs.potentiostat", "--prefix", prefix]
    ioc = ioc_subprocess([*cmd, "--backend", "emstat", "--serial", emulator.port]).start()
    pot = Potentiostat(f"{prefix}pot:", name="pot")
    pot.wait_for_connection(timeout=20)
    emulator.ioc_port = ioc.port  # for the conformance command
    yield emulator, pot, prefix
    pot.destroy()
    console = ioc.stop()
    emulator.close()
    assert "Traceback" not in console, console


def test_the_cell_starts_off_and_a_bias_move_reaches_the_instrument(emstat) -> None:
    emulator, pot, _ = emstat
    assert pot.cell_on.get() == "off"  # the instrument's real state at start-up
    assert pot.current_range.get() in {"1 nA", "10 nA", "100 nA", "1 uA"}
    pot.cell_on.set("on").wait(10)
    pot.move(-0.4, timeout=20)
    assert pot.position == pytest.approx(-0.4, abs=1e-9)
    assert emulator.applied_v == pytest.approx(-0.4, abs=1e-9) and emulator.cell_is_on
    # the current the client reads is one the emulator sent at -0.4 V
    current = pot.current.get(use_monitor=False)
    at_bias = [s.current_a for s in emulator.sent if s.bias_v == pytest.approx(-0.4)]
    assert min(abs(np.array(at_bias) - current)) < CURRENT_TOLERANCE_A


def test_an_unsafe_bias_is_refused_at_device_and_ioc(emstat) -> None:
    emulator, pot, prefix = emstat
    with pytest.raises(UnsafeBiasError, match="outside the safe window"):
        pot.move(-2.5)
    with pytest.raises(Exception, match="(?i)put|fail"):  # the IOC refuses a raw put too
        ca_write(f"{prefix}pot:bias", -2.5, notify=True, timeout=10, repeater=False)
    assert pot.status.get(use_monitor=False).startswith("refused")
    # nothing reached the instrument
    assert not any("-2500m" in line for script in emulator.scripts for line in script)
    assert min(s.bias_v for s in emulator.sent) >= -2.0


def test_a_cv_streams_the_instruments_points_to_the_client(emstat) -> None:
    emulator, pot, _ = emstat
    pot.cell_on.set("on").wait(10)
    pot.move(0.0, timeout=20)
    seen: list[float] = []
    currents: list[float] = []
    t1 = pot.readback.subscribe(lambda value, **kw: seen.append(value), run=False)
    t2 = pot.current.subscribe(lambda value, **kw: currents.append(value), run=False)
    for sig, value in ((pot.cv.start, 0.0), (pot.cv.vertex, -0.3), (pot.cv.end, 0.0)):
        sig.set(value).wait(5)
    pot.cv.rate.set(1.0).wait(5)
    pot.cv.cycles.set(1).wait(5)
    first = len(emulator.scripts)
    pot.cv.trigger().wait(30)
    time.sleep(0.3)  # the last monitors
    pot.readback.unsubscribe(t1)
    pot.current.unsubscribe(t2)
    cv = _cv_script(emulator, first, "meas_loop_cv")
    truth = [s for s in emulator.sent if s.script == cv]
    # 0 -> -0.3 -> 0 at 1 V/s in 20 mV steps: 15 points per leg (+ 1 for the closing leg)
    assert len(truth) >= 30
    true_e = np.array([s.bias_v for s in truth])
    assert true_e.min() == pytest.approx(-0.3, abs=1e-9)
    # every streamed point reached the client, in order (monitors are not dropped here)
    assert _contains_in_order(seen, true_e)
    true_i = np.array([s.current_a for s in truth])
    assert _contains_in_order(currents, true_i, atol=CURRENT_TOLERANCE_A)
    # the current is the double-layer charging of the cell, C dV/dt ~ 4 uF x 1 V/s
    sweep_down = true_i[: len(truth) // 3]
    assert np.median(sweep_down) == pytest.approx(-4e-6, rel=0.1)
    assert pot.cv.progress.get(use_monitor=False) == pytest.approx(1.0)


def test_a_trigger_pulse_starts_every_cv_leg(emstat) -> None:
    emulator, pot, _ = emstat
    pot.trigger_output.set("on").wait(5)
    try:
        count = pot.trigger_count.get(use_monitor=False)
        edges, first = len(emulator.trigger_edges), len(emulator.scripts)
        for sig, value in ((pot.cv.start, 0.0), (pot.cv.vertex, -0.1), (pot.cv.end, 0.05)):
            sig.set(value).wait(5)
        pot.cv.rate.set(1.0).wait(5)
        pot.cv.cycles.set(2).wait(5)
        pot.cv.trigger().wait(30)
        assert len(emulator.trigger_edges) - edges == 4  # 2 cycles x (start, vertex)
        cv = _cv_script(emulator, first, "meas_loop_lsv")
        assert sum(line.startswith("meas_loop_lsv") for line in emulator.scripts[cv]) == 4
        time.sleep(0.2)
        assert pot.trigger_count.get(use_monitor=False) - count == 4
    finally:
        pot.trigger_output.set("off").wait(5)


def test_abort_stops_the_instruments_sweep(emstat) -> None:
    emulator, pot, _ = emstat
    pot.move(0.0, timeout=20)
    for sig, value in ((pot.cv.start, 0.0), (pot.cv.vertex, -1.0), (pot.cv.end, 0.0)):
        sig.set(value).wait(5)
    pot.cv.rate.set(0.5).wait(5)
    pot.cv.cycles.set(1).wait(5)
    aborts, first = emulator.aborts, len(emulator.scripts)
    status = pot.cv.trigger()
    time.sleep(0.8)
    pot.stop()
    with pytest.raises(StoppedError):
        status.wait(10)
    assert emulator.aborts == aborts + 1
    cv = _cv_script(emulator, first, "meas_loop_cv")
    sent = sum(s.script == cv for s in emulator.sent)
    time.sleep(0.3)
    assert sum(s.script == cv for s in emulator.sent) == sent  # the sweep stopped
    assert 0 < sent < 0.5 * 2 * 1.0 / 0.01  # well before the end (10 mV steps at 0.5 V/s)
    stopped_at = emulator.applied_v
    assert -1.0 < stopped_at < -0.05
    assert pot.readback.get(use_monitor=False) == pytest.approx(stopped_at, abs=1e-9)
    assert pot.busy.get(use_monitor=False) == 0


def test_ir_compensation_is_refused_in_one_line(emstat) -> None:
    _, pot, prefix = emstat
    with pytest.raises(Exception, match="(?i)put|fail"):  # the reason is in status
        ca_write(f"{prefix}pot:ir_comp", 1, notify=True, timeout=10, repeater=False)
    assert pot.status.get(use_monitor=False) == (
        "refused: iR compensation is not supported by this potentiostat "
        "(the EmStat4 LR has no iR compensation in MethodSCRIPT)"
    )


def test_the_conformance_command_passes_the_emstat_ioc(emstat) -> None:
    """The emulator-backed IOC passes the same checks as the simulated instrument."""
    emulator, pot, prefix = emstat
    pot.cell_on.set("on").wait(10)
    check = [sys.executable, "-P", "-m", "qd_bluesky.cli", "check-instrument", "--prefix", prefix]
    check += ["--port", str(emulator.ioc_port), "--only", "pot"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "PASS  pot: connect"
    assert lines[1].startswith(f"PASS  pot: documented PVs: {len(documented_pvs('pot'))} PVs read")
    assert lines[-1] == f"{len(lines) - 1} checks, 0 failed"
    assert any(line.startswith("PASS  pot: IOC refuses an unsafe bias") for line in lines)
    # the refusal never reached the instrument
    assert min(s.bias_v for s in emulator.sent) >= -2.0
