"""The ``/user`` groups the TCSPC IOC writes into a photon file: the bias markers
(``/user/bias``), which the live analysis reads, the card's own marker records (``/user/markers``)
and the FIFO overruns (``/user/overflow``).

Photon row ``k`` saw the bias of the last marker with ``photon_index <= k``. The TCSPC IOC
appends a marker at the start, at every bias change and at the end of every photon tick.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from .._photons import MARKER_DTYPE

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

#: Group under ``/user`` where the TCSPC IOC records the card's marker records (edges on its
#: marker inputs, e.g. the potentiostat's trigger output at every bias step and CV vertex).
CARD_MARKER_GROUP = "markers"
#: HDF5 path of that group.
CARD_MARKER_PATH = f"user/{CARD_MARKER_GROUP}"
#: One row per marker record: ``timestamp`` in the units of ``/photon_data/timestamps`` (sync
#: counts in T3, ticks in T2), ``channel`` the marker input (1-4), ``photon_index`` the photon
#: rows written before it (so photon ``k`` comes after the marker when ``photon_index <= k``).
CARD_MARKER_COLUMNS = MappingProxyType(
    {
        "timestamp": np.dtype(np.int64),
        "channel": np.dtype(np.uint8),
        "photon_index": np.dtype(np.int64),
    }
)

#: Marker inputs a ``bits`` mask of :data:`~qd_bluesky.analysis.MARKER_DTYPE` can name.
MARKER_INPUTS = 8


def card_marker_rows(markers: NDArray, macrotime: NDArray[np.int64]) -> dict[str, NDArray]:
    """``/user/markers`` columns of a table's markers: one row per input set in ``bits``.

    ``macrotime`` (the photons' timestamps, sorted) gives each row's ``photon_index``.
    """
    bits = np.asarray(markers["bits"], dtype=np.uint8)
    times = np.asarray(markers["macrotime"], dtype=np.int64)
    inputs = np.arange(MARKER_INPUTS, dtype=np.uint8)
    record, bit = np.nonzero((bits[:, None] >> inputs[None, :]) & 1)
    timestamp = times[record]
    return {
        "timestamp": timestamp,
        "channel": (bit + 1).astype(np.uint8),
        "photon_index": np.searchsorted(macrotime, timestamp, side="left").astype(np.int64),
    }


def table_markers(columns: dict[str, NDArray]) -> NDArray | None:
    """Markers (``MARKER_DTYPE``) from ``/user/markers`` columns, either schema.

    The card's schema (``timestamp``, ``channel``) gives one marker per row with the channel's
    bit; files written before it hold ``macrotime`` and ``bits``. None without either.
    """
    if {"timestamp", "channel"} <= set(columns):
        times = np.asarray(columns["timestamp"])
        channel = np.asarray(columns["channel"]).astype(np.int64)
        if channel.shape != times.shape or np.any((channel < 1) | (channel > MARKER_INPUTS)):
            return None
        bits = (1 << (channel - 1)).astype(np.uint8)
    elif {"macrotime", "bits"} <= set(columns):
        times, bits = np.asarray(columns["macrotime"]), np.asarray(columns["bits"])
    else:
        return None
    if times.shape != bits.shape or times.ndim != 1 or not times.size:
        return None
    markers = np.empty(times.size, dtype=MARKER_DTYPE)
    markers["macrotime"] = times
    markers["bits"] = bits
    return markers
