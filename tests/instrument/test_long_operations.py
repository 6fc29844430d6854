"""Operations longer than a CA write timeout still complete (the put completion is not dropped)."""

from __future__ import annotations

import time

from qd_bluesky.devices._signals import WRITE_TIMEOUT_S


def test_cv_scan_longer_than_the_write_timeout_completes(instrument):
    pot = instrument.pot
    pot.move(0.0).wait(10)
    cv = pot.cv
    for signal, value in ((cv.start, 0.0), (cv.vertex, -0.6), (cv.end, 0.0), (cv.rate, 0.1)):
        signal.set(value).wait(5)
    cv.cycles.set(1).wait(5)
    expected = cv.waveform_duration()
    assert expected > WRITE_TIMEOUT_S  # the case that used to time out
    t0 = time.monotonic()
    status = cv.trigger()
    status.wait(expected * 1.5 + 10)
    elapsed = time.monotonic() - t0
    assert status.success
    # the waveform runs in real time on the IOC: its duration, plus ramp-in and ticks
    assert expected - 0.5 <= elapsed <= expected + 3.0
    assert abs(pot.position) < 0.01
