"""The unit tier: plans, devices, analysis and callbacks without IOC or catalog.

Every test here takes well under a few seconds; the tier reuses the builders of the slower
tiers (``tests/callbacks/rawrun.py``, ``cycling.py``, ``tests/analysis/synthetic.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ophyd.sim import FakeEpicsSignal, FakeEpicsSignalRO, fake_device_cache

from qd_bluesky.devices._signals import TextSignal, TextSignalRO

# make_fake_device swaps only the signal classes it knows, and caches each fake device class:
# our long-string signals must be known before any unit test fakes a device (else a
# TcspcCard faked first keeps a real, unconnected file_path for the rest of the session).
fake_device_cache.setdefault(TextSignal, FakeEpicsSignal)
fake_device_cache.setdefault(TextSignalRO, FakeEpicsSignalRO)

_TESTS = Path(__file__).resolve().parents[1]
for helpers in (_TESTS / "callbacks", _TESTS / "analysis"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))
