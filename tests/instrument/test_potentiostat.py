"""The potentiostat over real Channel Access: settled moves, the safe window, CV scans."""

from __future__ import annotations

import time

import numpy as np
import pytest
from caproto import ErrorResponseReceived
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from qd_bluesky.devices import InstrumentBusyError, StoppedError, UnsafeBiasError


@pytest.fixture
def pot(instrument):
    """The potentiostat at 0 V, static mode, default window and speed; restored afterwards."""
    pot = instrument.pot
    yield pot
    pot.bias_low_limit.set(-2.0).wait(5)
    pot.bias_high_limit.set(1.0).wait(5)
    pot.slew_rate.set(10.0).wait(5)
    if pot.busy.get():
        pot.stop()
        time.sleep(0.3)
    pot.set(0.0).wait(10)


def _text(pvname: str) -> str:
    return bytes(ca_read(pvname, repeater=False, timeout=5).data).rstrip(b"\0").decode()


def test_move_completes_when_settled(pot, ramp_meter):
    pot.slew_rate.set(2.0).wait(5)
    slew, settle = pot.slew_rate.get(), pot.settle_time.get()
    pot.set(0.0).wait(10)
    samples: list[tuple[float, float]] = []
    token = pot.readback.subscribe(
        lambda value, timestamp, **kw: samples.append((timestamp, value)), run=False
    )
    t0 = time.monotonic()
    status = pot.set(-1.4)
    updates: list[dict] = []
    status.watch(lambda **kw: updates.append(kw))
    status.wait(30)
    elapsed = time.monotonic() - t0
    pot.readback.unsubscribe(token)
    # The put completes only after the ramp (1.4 V at `slew` V/s) and the settle time; load can
    # only lengthen this, so the programmed time is a lower bound (a ramp too fast fails it).
    assert elapsed >= 1.4 / slew + settle - 0.01
    # The ramp runs at the programmed rate by the IOC's own timestamps (a ramp too slow or too
    # fast fails this whatever the load); 2 % covers the per-tick jitter of the stamps.
    inside = [(t, v) for t, v in samples if -1.4 < v < 0.0]
    assert len(inside) >= 10
    assert ramp_meter(inside) == pytest.approx(-slew, rel=0.02)
    assert pot.position == pytest.approx(-1.4, abs=1e-9)
    assert pot.readback.get(use_monitor=False) == pytest.approx(-1.4, abs=1e-9)
    assert pot.status.get(use_monitor=False) == "settled at -1.4000 V"
    # Progress reached watchers while ramping: the remaining fraction falls to 0.
    fractions = [u["fraction"] for u in updates if u.get("fraction") is not None]
    assert len(fractions) >= 3
    assert fractions[-1] == pytest.approx(0.0)
    assert np.all(np.diff(fractions) <= 1e-12)
    reading = pot.read()
    assert reading["pot"]["value"] == pytest.approx(-1.4)
    assert "pot_current" in reading


def test_unsafe_bias_refused_before_any_put(pot):
    before_status = pot.status.get(use_monitor=False)
    for bad in (-2.5, 1.2, float("nan")):
        with pytest.raises(UnsafeBiasError, match="outside the safe window"):
            pot.set(bad)
    with pytest.raises(UnsafeBiasError, match="must be a number"):
        pot.set("minus two")
    # The IOC never saw a request: its refusal bookkeeping did not move.
    assert pot.limit_violation.get(use_monitor=False) == 0
    assert pot.status.get(use_monitor=False) == before_status
    assert pot.readback.get(use_monitor=False) == pytest.approx(0.0)


def test_ioc_refuses_unsafe_bias_and_keeps_readback(pot, sim_ioc):
    pot.set(-0.5).wait(10)
    bias_pv = f"{sim_ioc.prefix}pot:bias"
    with pytest.raises(ErrorResponseReceived, match="outside the safe window"):
        ca_write(bias_pv, -2.6, notify=True, repeater=False, timeout=5)
    assert pot.readback.get(use_monitor=False) == pytest.approx(-0.5)
    assert ca_read(bias_pv, repeater=False, timeout=5).data[0] == pytest.approx(-0.5)
    assert pot.limit_violation.get(use_monitor=False) == 1
    assert "-2.600 V is outside the safe window" in _text(f"{sim_ioc.prefix}pot:status")


def test_narrowed_ioc_window_is_enforced_by_device_and_ioc(pot, monkeypatch):
    pot.bias_low_limit.set(-1.5).wait(5)
    time.sleep(0.2)  # monitor of the new limit
    assert pot.limits == (-1.5, 1.0)
    with pytest.raises(UnsafeBiasError, match=r"\[-1.500, \+1.000\]"):
        pot.set(-1.7)
    # A client that skips the check (another program, a stale limit) is refused by the IOC,
    # and the device's move fails at once with the IOC's reason, not at its timeout.
    monkeypatch.setattr(pot, "check_value", lambda value, **kw: None)
    status = pot.set(-1.7)
    # The IOC's own reason, not a timeout error: the move failed on the refusal itself.
    with pytest.raises(UnsafeBiasError, match="refused.*outside the safe window"):
        status.wait(30)
    assert pot.readback.get(use_monitor=False) == pytest.approx(0.0)


def test_window_must_stay_inside_hardware_range(pot, sim_ioc):
    with pytest.raises(ErrorResponseReceived, match="hardware range"):
        ca_write(f"{sim_ioc.prefix}pot:bias_low_limit", -7.0, notify=True, repeater=False)
    assert pot.bias_low_limit.get(use_monitor=False) == pytest.approx(-2.0)


def test_cv_scan_runs_on_ioc_with_progress(pot, ramp_meter):
    start, vertex, end, rate, cycles = -0.2, -0.6, -0.2, 2.0, 2
    for sig, value in (
        (pot.cv.start, start),
        (pot.cv.vertex, vertex),
        (pot.cv.end, end),
        (pot.cv.rate, rate),
        (pot.cv.cycles, cycles),
    ):
        sig.set(value).wait(5)
    expected = cycles * (abs(vertex - start) + abs(end - vertex)) / rate  # 0.8 s
    assert pot.cv.waveform_duration() == pytest.approx(expected)
    biases: list[float] = []
    currents: list[float] = []
    stamped: list[tuple[float, float]] = []

    def on_bias(value, timestamp, **kw):
        biases.append(value)
        stamped.append((timestamp, value))

    token = pot.readback.subscribe(on_bias, run=False)
    token_i = pot.current.subscribe(lambda value, **kw: currents.append(value), run=False)
    updates: list[dict] = []
    t0 = time.monotonic()
    status = pot.cv.trigger()
    status.watch(lambda **kw: updates.append(kw))
    with pytest.raises(InstrumentBusyError, match="in progress"):
        time.sleep(0.3)
        pot.set(0.0)
    status.wait(30)
    elapsed = time.monotonic() - t0
    pot.readback.unsubscribe(token)
    pot.current.unsubscribe(token_i)
    # Approach to `start` at 10 V/s (0.02 s) + waveform: the programmed time is a lower bound
    # that load cannot break; the sweep rate, by the IOC's timestamps, bounds it from above.
    assert elapsed >= expected
    slopes = ramp_meter(stamped[next(i for i, (_, b) in enumerate(stamped) if b <= start) :], 0)
    assert np.median(slopes[slopes < 0]) == pytest.approx(-rate, rel=0.02)
    assert np.median(slopes[slopes > 0]) == pytest.approx(rate, rel=0.02)
    assert pot.cv.duration.get(use_monitor=False) == pytest.approx(expected)
    assert pot.cv.progress.get(use_monitor=False) == pytest.approx(1.0)
    assert pot.position == pytest.approx(end)
    # After the approach from 0 V, the waveform stays in [vertex, start] and turns at the
    # vertex once per cycle (and at the start between cycles).
    sweep = np.array(biases[next(i for i, b in enumerate(biases) if b <= start + 1e-9) :])
    assert sweep.min() == pytest.approx(vertex, abs=1e-9)
    assert sweep.max() <= start + 1e-9
    direction = np.sign(np.diff(sweep))
    direction = direction[direction != 0]
    assert np.count_nonzero(np.diff(direction)) == 2 * cycles - 1
    # Double-layer charging: I = C dV/dt = 4 uF x (-/+ 2 V/s) = -/+ 8 uA on the way down/up
    # (noise 2 nA, faradaic current negligible above -0.6 V); the approach ramp at 10 V/s
    # gives -40 uA, the holds ~0.
    currents = np.array(currents)
    down = np.isclose(currents, -8e-6, rtol=0.01)
    up = np.isclose(currents, 8e-6, rtol=0.01)
    assert down.sum() >= 10 and up.sum() >= 10  # 0.2 s per sweep at 50 ticks/s
    remaining = [u["fraction"] for u in updates if u.get("current") is not None]
    assert remaining and remaining[-1] == pytest.approx(0.0, abs=0.15)
    assert pot.mode.get() == "CV"
    # A static move afterwards puts the potentiostat back into static mode by itself.
    pot.set(0.0).wait(10)
    assert pot.mode.get(use_monitor=False) == "static"


def test_cv_with_unsafe_vertex_refused_before_any_put(pot):
    pot.cv.vertex.set(-1.9).wait(5)
    pot.bias_low_limit.set(-1.5).wait(5)
    time.sleep(0.2)
    with pytest.raises(UnsafeBiasError, match="CV vertex -1.900 V"):
        pot.cv.trigger()
    assert pot.cv.running.get(use_monitor=False) == 0
    assert pot.mode.get(use_monitor=False) == "static"


def test_abort_stops_a_ramp(pot, waiter):
    pot.slew_rate.set(0.25).wait(5)
    status = pot.set(-1.0)  # a 4 s ramp
    # Stop once the ramp is under way (by the readback, not by a sleep that load stretches).
    assert waiter(lambda: pot.readback.get(use_monitor=False) <= -0.1, timeout=10, period=0.01)
    pot.stop()
    with pytest.raises(StoppedError, match=r"pot: the move to -1 V was stopped at -0\.\d+ V"):
        status.wait(10)
    assert waiter(lambda: pot.busy.get(use_monitor=False) == 0, timeout=10)
    stopped_at = pot.readback.get(use_monitor=False)
    # Stopped on the way: past the -0.1 V seen before the stop, short of the -1.0 V target
    # (3.6 s of ramp left: the stop would have to be delayed that long to miss).
    assert -1.0 < stopped_at <= -0.1
    # and it stays there: the ramp does not resume
    time.sleep(0.2)
    assert pot.readback.get(use_monitor=False) == stopped_at


def test_abort_ends_a_cv_scan_as_a_failure(pot, waiter):
    for sig, value in ((pot.cv.start, 0.0), (pot.cv.vertex, -1.0), (pot.cv.end, 0.0)):
        sig.set(value).wait(5)
    pot.cv.rate.set(0.25).wait(5)
    pot.cv.cycles.set(1).wait(5)
    status = pot.cv.trigger()  # an 8 s waveform
    # Stop once the scan has reported some progress (not after a sleep that load stretches).
    assert waiter(lambda: pot.cv.progress.get(use_monitor=False) >= 0.02, timeout=10, period=0.01)
    pot.cv.stop()
    with pytest.raises(StoppedError, match=r"stopped at \d+ % \(CV aborted at"):
        status.wait(10)
    assert waiter(lambda: pot.busy.get(use_monitor=False) == 0, timeout=10)
    # Stopped part-way: at least the 2 % seen, and not finished (7.8 s of scan were left).
    assert 0.02 <= pot.cv.progress.get(use_monitor=False) < 1.0
    assert -1.0 < pot.readback.get(use_monitor=False) < 0.0
