"""Fake devices for the unit tier: the device classes with ophyd's fake signals, no IOC."""

from __future__ import annotations

from ophyd.sim import FakeEpicsSignal, FakeEpicsSignalRO, fake_device_cache

from qd_bluesky.devices._signals import TextSignal, TextSignalRO

# make_fake_device swaps the signal classes it knows; ours are EpicsSignal subclasses.
fake_device_cache.setdefault(TextSignal, FakeEpicsSignal)
fake_device_cache.setdefault(TextSignalRO, FakeEpicsSignalRO)
