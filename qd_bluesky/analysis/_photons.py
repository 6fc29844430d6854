"""The in-memory photon table that every reader returns and every kernel consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

MACROTIME_DTYPE = np.int64
MICROTIME_DTYPE = np.uint16
CHANNEL_DTYPE = np.uint8
#: dtype of ``PhotonTable.markers``: time in macrotime units and the marker bits
#: (external marker inputs of a PTU file, or the non-photon detector id of a Photon-HDF5 row).
MARKER_DTYPE = np.dtype([("macrotime", np.int64), ("bits", np.uint8)])


@dataclass
class PhotonTable:
    """Photon records of one measurement, overflow and marker records removed.

    T3 (``mode="T3"``): ``macrotime`` counts laser sync pulses, ``microtime`` is the delay
    after the sync pulse in bins of ``microtime_unit_s``, ``microtime_bins`` bins per period.
    T2 (``mode="T2"``): ``macrotime`` is the absolute arrival time in ticks of
    ``macrotime_unit_s``; ``microtime`` is all zero and ``microtime_unit_s`` is None.

    ``channel`` is the detector number, counted from 0.
    """

    macrotime: NDArray[np.int64]
    microtime: NDArray[np.uint16]
    channel: NDArray[np.uint8]
    macrotime_unit_s: float
    microtime_unit_s: float | None
    microtime_bins: int
    rep_rate_hz: float | None
    mode: Literal["T2", "T3"]
    format: str = "memory"
    source: str | None = None
    #: (macrotime, marker bits) of marker records, when the file has any.
    markers: NDArray | None = None
    #: Non-fatal problems found while reading (e.g. a file whose records stop mid-way).
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.macrotime = np.ascontiguousarray(self.macrotime, dtype=MACROTIME_DTYPE)
        self.microtime = np.ascontiguousarray(self.microtime, dtype=MICROTIME_DTYPE)
        self.channel = np.ascontiguousarray(self.channel, dtype=CHANNEL_DTYPE)
        n = len(self.macrotime)
        if len(self.microtime) != n or len(self.channel) != n:
            raise ValueError(
                f"photon columns differ in length: macrotime {n}, "
                f"microtime {len(self.microtime)}, channel {len(self.channel)}"
            )

    def __len__(self) -> int:
        return len(self.macrotime)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last photon (0 for fewer than two photons)."""
        if len(self) < 2:
            return 0.0
        return float(self.macrotime[-1] - self.macrotime[0]) * self.macrotime_unit_s

    @property
    def channels(self) -> list[int]:
        """Detector channels that recorded at least one photon, sorted."""
        return [int(c) for c in np.flatnonzero(np.bincount(self.channel, minlength=1))]

    @property
    def has_microtime(self) -> bool:
        return self.mode == "T3" and self.microtime_unit_s is not None

    @property
    def period_s(self) -> float | None:
        """Laser period, from the repetition rate."""
        return 1.0 / self.rep_rate_hz if self.rep_rate_hz else None

    def slice(self, start: int, stop: int) -> PhotonTable:
        """Rows ``start:stop`` as a new table sharing the units (views, no copy)."""
        return PhotonTable(
            self.macrotime[start:stop],
            self.microtime[start:stop],
            self.channel[start:stop],
            self.macrotime_unit_s,
            self.microtime_unit_s,
            self.microtime_bins,
            self.rep_rate_hz,
            self.mode,
            self.format,
            self.source,
        )
