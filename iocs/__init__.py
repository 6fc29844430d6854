"""caproto soft IOCs of the single-dot set-up, backed by the ``qd_bluesky.sim`` simulator.

One PVGroup per instrument, in the style of caproto's ``ioc_examples``; each also runs alone::

    python -m qd_bluesky.iocs.potentiostat --prefix qd: --list-pvs
    python -m qd_bluesky.iocs.tcspc --prefix qd: --data-dir /tmp/photons
    python -m qd_bluesky.iocs.laser --prefix qd:
    python -m qd_bluesky.iocs.stage --prefix qd:

and all four together on one simulated sample with ``qd-bluesky sim`` (or
``python -m qd_bluesky.iocs``).
"""

from ._common import RefusedError
from ._laser import LaserIOC
from ._potentiostat import CyclicVoltammetryIOC, PotentiostatIOC
from ._process import SimulatedInstrumentProcess, free_port_pair, use_loopback_ioc
from ._server import loopback_environment, serve
from ._simulated import SimulatedInstrument, SimulatedSample
from ._stage import StageIOC
from ._tcspc import TcspcIOC

__all__ = [
    "CyclicVoltammetryIOC",
    "LaserIOC",
    "PotentiostatIOC",
    "RefusedError",
    "SimulatedInstrument",
    "SimulatedInstrumentProcess",
    "SimulatedSample",
    "StageIOC",
    "TcspcIOC",
    "free_port_pair",
    "loopback_environment",
    "serve",
    "use_loopback_ioc",
]
