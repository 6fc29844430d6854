"""Operations longer than a CA write timeout still complete (the put completion is not dropped)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qd_bluesky.devices._signals import WRITE_TIMEOUT_S


def test_cv_scan_longer_than_the_write_timeout_completes(instrument, ramp_meter):
    pot = instrument.pot
    pot.move(0.0).wait(10)
    cv = pot.cv
    for signal, value in ((cv.start, 0.0), (cv.vertex, -0.6), (cv.end, 0.0), (cv.rate, 0.1)):
        signal.set(value).wait(5)
    cv.cycles.set(1).wait(5)
    expected = cv.waveform_duration()
    assert expected > WRITE_TIMEOUT_S  # the case that used to time out
    stamped: list[tuple[float, float]] = []
    token = pot.readback.subscribe(
        lambda value, timestamp, **kw: stamped.append((timestamp, value)), run=False
    )
    t0 = time.monotonic()
    status = cv.trigger()
    status.wait(expected * 3 + 10)
    elapsed = time.monotonic() - t0
    pot.readback.unsubscribe(token)
    assert status.success
    # The waveform runs in real time on the IOC: its programmed duration is a lower bound that
    # load cannot break, and the sweep rate (by the IOC's timestamps, 2 % for the per-tick
    # jitter) bounds it from above: a waveform run too fast or too slow fails one of them.
    assert elapsed >= expected
    slopes = ramp_meter(stamped, 0)
    assert np.median(slopes[slopes < 0]) == pytest.approx(-0.1, rel=0.02)
    assert np.median(slopes[slopes > 0]) == pytest.approx(0.1, rel=0.02)
    assert abs(pot.position) < 0.01
