"""The ``/user`` groups the TCSPC IOC writes into a photon file: the bias markers
(``/user/bias``), which the live analysis reads, and the FIFO overruns (``/user/overflow``).

Photon row ``k`` saw the bias of the last marker with ``photon_index <= k``. The TCSPC IOC
appends a marker at the start, at every bias change and at the end of every photon tick.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

#: Group under ``/user`` that holds the markers (a ``user_columns`` key of the writer).
BIAS_MARKER_GROUP = "bias"
#: HDF5 path of that group.
BIAS_MARKER_PATH = f"user/{BIAS_MARKER_GROUP}"
#: Growable columns of the group and their dtypes, as the TCSPC IOC declares them:
#: ``photon_index`` the first photon row detected after the marker, ``sync`` the laser pulse
#: count from which it holds, ``t_s`` seconds since the acquisition started, ``bias_v`` and
#: ``current_a`` the potentiostat's bias and current.
BIAS_MARKER_COLUMNS = MappingProxyType(
    {
        "photon_index": np.dtype(np.int64),
        "sync": np.dtype(np.int64),
        "t_s": np.dtype(np.float64),
        "bias_v": np.dtype(np.float64),
        "current_a": np.dtype(np.float64),
    }
)
#: The columns a reader needs to give each photon row its bias.
BIAS_MARKER_REQUIRED = ("photon_index", "bias_v")

#: Group under ``/user`` where the TCSPC IOC records photons lost to FIFO overruns.
OVERFLOW_GROUP = "overflow"
#: HDF5 path of that group.
OVERFLOW_PATH = f"user/{OVERFLOW_GROUP}"
#: One row per overrun: ``photon_index`` the row after which photons are missing, ``t_s``
#: seconds since the acquisition started, ``dropped`` the photons lost.
OVERFLOW_COLUMNS = MappingProxyType(
    {
        "photon_index": np.dtype(np.int64),
        "t_s": np.dtype(np.float64),
        "dropped": np.dtype(np.int64),
    }
)
