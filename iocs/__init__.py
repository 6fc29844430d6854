"""caproto soft IOCs of the single-dot set-up, backed by the ``qd_bluesky.sim`` simulator.

One PVGroup per instrument, in the style of caproto's ``ioc_examples``; each also runs alone::

    python -m qd_bluesky.iocs.potentiostat --prefix qd: --list-pvs
    python -m qd_bluesky.iocs.potentiostat --backend emstat --serial /dev/ttyACM0
    python -m qd_bluesky.iocs.tcspc --prefix qd: --data-dir /tmp/photons
    python -m qd_bluesky.iocs.laser --prefix qd:
    python -m qd_bluesky.iocs.laser --backend sepia2 --calibration power.csv  # a Sepia II
    python -m qd_bluesky.iocs.stage --prefix qd:

and all four together on one simulated sample with ``qd-bluesky sim`` (or
``python -m qd_bluesky.iocs``).

Each PVGroup talks to its instrument through a backend (``PotentiostatBackend``,
``LaserBackend``, ``StageBackend``, ``TcspcBackend``): the simulated ones share one sample, a
``FaultInjectingBackend`` wraps any of them to make operations fail, and a real driver
implements the same protocol: ``EmStatPotentiostat`` (a PalmSens EmStat over MethodSCRIPT),
tested against ``EmStatEmulator`` (MethodSCRIPT on a pseudo-terminal); ``HarpTcspc`` drives a
PicoQuant TimeHarp 260 through TH260Lib (``Th260Library``; ``EmulatedTh260Lib`` replays PTU
recordings in its place)::

    python -m qd_bluesky.iocs.tcspc --backend th260 [--library PATH] --prefix qd:
"""

from ._backends import (
    BackendFault,
    LaserBackend,
    LaserLocks,
    NotSupportedError,
    PhotonBlock,
    PotentiostatBackend,
    PotentiostatSettings,
    StageBackend,
    StreamingCv,
    TcspcBackend,
)
from ._common import RefusedError
from ._emstat import EmStatPotentiostat
from ._emstat_emulator import EmStatEmulator
from ._faults import FaultInjectingBackend
from ._harp import HarpTcspc, Th260Library
from ._harp_emulator import EmulatedTh260Lib
from ._laser import LaserIOC
from ._potentiostat import CyclicVoltammetryIOC, PotentiostatIOC
from ._process import SimulatedInstrumentProcess, free_port_pair, use_loopback_ioc
from ._server import loopback_environment, serve
from ._sim_backends import (
    SimulatedLaser,
    SimulatedPotentiostat,
    SimulatedSample,
    SimulatedStage,
    SimulatedTcspc,
)
from ._simulated import SimulatedInstrument
from ._stage import StageIOC
from ._tcspc import TcspcIOC

__all__ = [
    "BackendFault",
    "CyclicVoltammetryIOC",
    "EmStatEmulator",
    "EmStatPotentiostat",
    "EmulatedTh260Lib",
    "FaultInjectingBackend",
    "HarpTcspc",
    "LaserBackend",
    "LaserIOC",
    "LaserLocks",
    "NotSupportedError",
    "PhotonBlock",
    "PotentiostatBackend",
    "PotentiostatIOC",
    "PotentiostatSettings",
    "RefusedError",
    "SimulatedInstrument",
    "SimulatedInstrumentProcess",
    "SimulatedLaser",
    "SimulatedPotentiostat",
    "SimulatedSample",
    "SimulatedStage",
    "SimulatedTcspc",
    "StageBackend",
    "StageIOC",
    "StreamingCv",
    "TcspcBackend",
    "TcspcIOC",
    "Th260Library",
    "free_port_pair",
    "loopback_environment",
    "serve",
    "use_loopback_ioc",
]
