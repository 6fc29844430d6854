"""Laser and stage over real Channel Access, and how they change what the card counts.

The truth comes from the simulator itself: a local ``Sample`` with the IOC's preset and seed
gives the expected count rate at any focus and laser state (the IOC is a separate process, so
this checks the coupling through CA, not the physics).
"""

from __future__ import annotations

import time

import pytest
from ophyd.utils import LimitError

from qd_bluesky.sim import Sample


@pytest.fixture(scope="module")
def truth(sim_ioc):
    sample = Sample(preset=sim_ioc.preset, seed=sim_ioc.seed)
    sample.set_laser(emission=True, power_w=30e-9, rep_rate_hz=2.5e6, t_s=0.0)
    return sample


def test_stage_starts_parked_on_the_dot(instrument, truth):
    stage = instrument.stage
    position = (stage.x.position, stage.y.position, stage.z.position)
    assert position == pytest.approx(truth.home_um)


def test_moving_off_the_dot_leaves_background(instrument, truth, rate_meter):
    stage, tcspc = instrument.stage, instrument.tcspc
    x0, y0, z0 = truth.home_um
    far = (x0 + 0.75, y0 + 0.75, z0)
    expected_far = truth.expected_rate_cps(*far)
    expected_home = truth.expected_rate_cps(x0, y0, z0)
    assert expected_far < 0.1 * expected_home  # the premise: a diffraction-limited spot
    velocity = stage.x.velocity.get()
    assert stage.y.velocity.get() == velocity
    t0 = time.monotonic()
    stage.x.set(far[0]).wait(10)
    stage.y.set(far[1]).wait(10)
    elapsed = time.monotonic() - t0
    # Two moves of 0.75 um at `velocity` um/s: the puts complete on arrival.
    assert elapsed >= 2 * 0.75 / velocity - 0.01
    assert stage.x.position == pytest.approx(far[0])
    rate, sigma = rate_meter(tcspc, 4)
    # Background and dark counts are Poisson: 5 sigma of the measured mean.
    assert rate == pytest.approx(expected_far, abs=5 * sigma)
    stage.x.set(x0).wait(10)
    stage.y.set(y0).wait(10)
    rate, sigma = rate_meter(tcspc, 2)
    # Back on the (blinking) dot: far above the background again.
    assert rate > expected_far + 20 * sigma


def test_soft_limits_refused_before_any_put(instrument):
    stage = instrument.stage
    x = stage.x.position
    assert stage.x.limits == (-100.0, 100.0)
    with pytest.raises(LimitError, match=r"150 um is outside the soft limits \[-100, 100\]"):
        stage.x.set(150.0)
    assert stage.x.user_setpoint.get(use_monitor=False) == pytest.approx(x)


def test_emission_off_leaves_dark_counts(instrument, truth, sim_ioc, rate_meter):
    truth_args = (sim_ioc.preset, sim_ioc.seed)
    laser, tcspc = instrument.laser, instrument.tcspc
    assert laser.read()["laser_emission"]["value"] == "on"
    assert laser.read_configuration()["laser_power"]["value"] == pytest.approx(30e-9)
    try:
        laser.emission.set("off").wait(5)
        rate, sigma = rate_meter(tcspc, 4)
    finally:
        laser.emission.set("on").wait(5)
    dark = Sample(preset=truth_args[0], seed=truth_args[1])
    dark.set_laser(emission=False, power_w=30e-9, rep_rate_hz=2.5e6, t_s=0.0)
    expected = dark.expected_rate_cps(*truth.home_um)
    assert rate == pytest.approx(expected, abs=5 * sigma)
