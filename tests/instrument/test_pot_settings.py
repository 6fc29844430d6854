"""The potentiostat's settings PVs on the simulated instrument (issue 16, item 1)."""

from __future__ import annotations

import pytest
from caproto import ErrorResponseReceived
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from qd_bluesky.iocs._sim_backends import CURRENT_RANGES_A


@pytest.fixture
def pot(instrument):
    pot = instrument.pot
    yield pot
    pot.autorange.set("on").wait(5)
    pot.trigger_output.set("off").wait(5)
    pot.set(0.0).wait(10)


def _refused(pv: str, value) -> str:
    with pytest.raises(ErrorResponseReceived):
        ca_write(pv, value, notify=True, timeout=5, repeater=False)
    status = ca_read(pv.rsplit(":", 1)[0] + ":status", repeater=False, timeout=5)
    return bytes(status.data).rstrip(b"\0").decode()


def test_the_current_range_enum_and_a_fixed_range_overloads(pot, waiter) -> None:
    names = ca_read(pot.current_range.pvname, data_type="control", repeater=False).metadata
    assert [s.decode() for s in names.enum_strings] == [
        "1 nA", "10 nA", "100 nA", "1 uA", "10 uA", "100 uA", "1 mA"
    ]  # fmt: skip
    assert len(names.enum_strings) == len(CURRENT_RANGES_A)
    # At +0.9 V the anodic onset draws ~0.2 uA: beyond a fixed 1 nA range it reads full scale.
    pot.set(0.9).wait(10)
    pot.autorange.set("off").wait(5)
    pot.current_range.set("1 nA").wait(5)
    # the next reading (every 0.1 s) is clipped
    assert waiter(lambda: abs(pot.current.get(use_monitor=False)) == pytest.approx(1e-9), 3)
    pot.autorange.set("on").wait(5)
    assert waiter(lambda: abs(pot.current.get(use_monitor=False)) > 2e-9, 3)
    # with autorange the range holds the current: the reading is below full scale, in range
    current = pot.current.get(use_monitor=False)
    assert 1e-8 < abs(current) < 1e-6
    assert pot.current_range.get(use_monitor=False) == "1 uA"


def test_compliance_must_hold_the_safe_window(pot) -> None:
    assert pot.compliance.get() == pytest.approx(5.0)
    assert "compliance 1.5 V must be > 0 and hold the safe window" in _refused(
        pot.compliance.pvname, 1.5
    )
    assert pot.compliance.get(use_monitor=False) == pytest.approx(5.0)
    assert "refused: compliance 6.0 refused" in _refused(pot.compliance.pvname, 6.0)
    pot.compliance.set(2.5).wait(5)
    try:  # the window may not leave the compliance now
        assert "hardware range [-2.5, +2.5]" in _refused(pot.bias_low_limit.pvname, -3.0)
    finally:
        pot.compliance.set(5.0).wait(5)


def test_the_reference_offset_shifts_bias_and_window_together(pot) -> None:
    assert pot.reference.get() == "Pt quasi-reference"
    pot.set(-0.5).wait(10)
    try:
        pot.reference.set("Ag/AgCl").wait(5)
        pot.reference_offset.set(0.057).wait(5)  # Pt QRE is +57 mV vs Ag/AgCl
        assert pot.readback.get(use_monitor=False) == pytest.approx(-0.443)
        assert pot.bias_low_limit.get(use_monitor=False) == pytest.approx(-1.943)
        assert pot.bias_high_limit.get(use_monitor=False) == pytest.approx(1.057)
        pot.set(-0.2).wait(10)
        assert pot.readback.get(use_monitor=False) == pytest.approx(-0.2)
    finally:
        pot.reference_offset.set(0.0).wait(5)
        pot.reference.set("Pt quasi-reference").wait(5)
    # back in the Pt QRE frame: the applied potential was -0.257 V vs Pt QRE
    assert pot.readback.get(use_monitor=False) == pytest.approx(-0.257)
    assert pot.bias_low_limit.get(use_monitor=False) == pytest.approx(-2.0)


def test_trigger_pulses_at_each_bias_step_and_cv_leg(pot) -> None:
    count = pot.trigger_count.get(use_monitor=False)
    pot.set(-0.1).wait(10)
    assert pot.trigger_count.get(use_monitor=False) == count  # output off: no pulse
    pot.trigger_output.set("on").wait(5)
    pot.set(-0.2).wait(10)
    pot.set(-0.2).wait(10)  # no step, no pulse
    assert pot.trigger_count.get(use_monitor=False) == count + 1
    for sig, value in ((pot.cv.start, -0.2), (pot.cv.vertex, -0.4), (pot.cv.end, -0.2)):
        sig.set(value).wait(5)
    pot.cv.rate.set(2.0).wait(5)
    pot.cv.cycles.set(2).wait(5)
    pot.cv.trigger().wait(20)
    assert pot.trigger_count.get(use_monitor=False) == count + 1 + 4


def test_ir_compensation_is_kept(pot) -> None:
    pot.ir_comp_resistance.set(120.0).wait(5)
    pot.ir_comp.set("on").wait(5)
    try:
        assert pot.ir_comp.get(use_monitor=False) == "on"
        assert pot.ir_comp_resistance.get(use_monitor=False) == pytest.approx(120.0)
        assert "must be >= 0 ohm" in _refused(pot.ir_comp_resistance.pvname, -1.0)
    finally:
        pot.ir_comp.set("off").wait(5)
