"""The potentiostat's client-side logic on a fake device (no IOC): checks before any put and
the CV scan's status."""

from __future__ import annotations

import pytest
from ophyd.sim import make_fake_device

from qd_bluesky.devices import InstrumentBusyError, Potentiostat, StoppedError, UnsafeBiasError


@pytest.fixture
def pot():
    pot = make_fake_device(Potentiostat)("qd:pot:", name="pot")
    for signal, value in (
        (pot.bias_low_limit, -3.0),
        (pot.bias_high_limit, 3.0),
        (pot.cell_on, "on"),
        (pot.busy, 0),
        (pot.mode, "static"),
        (pot.slew_rate, 1.0),
        (pot.settle_time, 0.0),
    ):
        signal.sim_put(value)
    pot.mode.write_timeout = 1.0  # a fake signal drops the EPICS timeouts
    return pot


def test_the_window_is_the_narrower_of_client_and_ioc(pot):
    assert pot.limits == (-2.0, 1.0)  # the client's window inside the IOC's
    pot.bias_high_limit.sim_put(0.5)
    assert pot.limits == (-2.0, 0.5)


@pytest.mark.parametrize("bias", [-2.01, 0.6, float("nan"), "x"])
def test_an_unsafe_bias_is_refused_before_any_put(pot, bias):
    pot.bias_high_limit.sim_put(0.5)
    pot.setpoint.sim_put(0.0)
    with pytest.raises(UnsafeBiasError) as info:
        pot.set(bias)
    assert "\n" not in str(info.value) and "pot:" in str(info.value)
    assert pot.setpoint.get() == 0.0


def test_a_cv_scan_is_refused_while_the_cell_is_off(pot):
    configure_cv(pot, vertex=-1.0)
    pot.cell_on.sim_put("off")
    with pytest.raises(InstrumentBusyError, match="the cell is off"):
        pot.cv.trigger()


def configure_cv(pot, *, vertex: float) -> None:
    cv = pot.cv
    for signal, value in ((cv.start, 0.0), (cv.vertex, vertex), (cv.end, 0.0), (cv.rate, 1.0)):
        signal.sim_put(value)
    cv.cycles.sim_put(1)


def test_a_cv_vertex_outside_the_window_is_refused_before_any_put(pot):
    configure_cv(pot, vertex=-2.5)
    with pytest.raises(UnsafeBiasError, match="CV vertex -2.500 V is outside"):
        pot.cv.trigger()
    assert pot.cv.run.get() == 0 and pot.mode.get() == "static"


@pytest.mark.parametrize(("progress", "ok"), [(1.0, True), (0.4, False)])
def test_a_cv_scan_succeeds_only_when_the_ioc_ran_all_of_it(pot, progress, ok):
    configure_cv(pot, vertex=-1.0)
    pot.cv.progress.sim_put(progress)
    status = pot.cv.trigger()  # the fake put completes at once
    if ok:
        status.wait(3)
    else:
        with pytest.raises(StoppedError, match="stopped at 40 %"):
            status.wait(3)
    assert status.done and status.success is ok
    assert pot.mode.get() == "CV" and pot.cv.run.get() == 1
