"""ophyd devices of the single-dot set-up: potentiostat, TCSPC card, laser, piezo stage.

The same classes drive the simulated IOCs (``qd-bluesky sim``) and real ones that serve the
PVs listed in ``docs/hardware.md``. They use ophyd's caproto control layer (pure Python, no
libca) unless ``OPHYD_CONTROL_LAYER`` says otherwise or signals already exist.
"""

import os as _os

import ophyd as _ophyd
from ophyd.signal import EpicsSignalBase as _EpicsSignalBase

# Choose the control layer before the first signal exists, and only if the user has not.
if "OPHYD_CONTROL_LAYER" not in _os.environ and _ophyd.cl.name != "caproto":
    if not getattr(_EpicsSignalBase, "_EpicsSignalBase__any_instantiated", False):
        _ophyd.set_cl("caproto")

from ._errors import (  # noqa: E402
    InstrumentBusyError,
    InstrumentError,
    InstrumentNotConnectedError,
    InterlockOpenError,
    IocLostError,
    RefusedByAlarmError,
    StoppedError,
    UnsafeBiasError,
)
from ._instrument import (  # noqa: E402
    Instrument,
    connect_instrument,
    disconnect_channel_access,
    make_instrument,
)
from ._laser import Laser  # noqa: E402
from ._potentiostat import CyclicVoltammetry, Potentiostat  # noqa: E402
from ._stage import PiezoAxis, PiezoStage  # noqa: E402
from ._tcspc import PHOTON_FIELDS, TcspcCard  # noqa: E402

__all__ = [
    "PHOTON_FIELDS",
    "CyclicVoltammetry",
    "Instrument",
    "InstrumentBusyError",
    "InstrumentError",
    "InstrumentNotConnectedError",
    "RefusedByAlarmError",
    "InterlockOpenError",
    "IocLostError",
    "Laser",
    "PiezoAxis",
    "PiezoStage",
    "Potentiostat",
    "StoppedError",
    "TcspcCard",
    "UnsafeBiasError",
    "connect_instrument",
    "disconnect_channel_access",
    "make_instrument",
]
