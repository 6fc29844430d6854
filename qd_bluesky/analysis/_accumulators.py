"""Streaming intensity trace and decay histograms, exact under any chunking of the stream."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _kernels
from ._errors import AnalysisError

# Initial number of time bins of a growing array; it doubles as needed.
_INITIAL_BINS = 1024


def ticks_per_bin(bin_s: float, macrotime_unit_s: float) -> float:
    """Bin width in macrotime ticks; snapped to a whole number when it is one up to rounding.

    Snapping makes ``1 ms / 400 ns`` exactly 2500, so that bin edges fall on ticks.
    """
    if not (math.isfinite(bin_s) and bin_s > 0):
        raise ValueError(f"bin width must be a positive number of seconds, got {bin_s}")
    if not (math.isfinite(macrotime_unit_s) and macrotime_unit_s > 0):
        raise ValueError(f"macrotime unit must be positive, got {macrotime_unit_s}")
    ticks = bin_s / macrotime_unit_s
    if abs(ticks - round(ticks)) <= 1e-9 * ticks:
        ticks = float(round(ticks))
    if ticks < 1.0:
        raise ValueError(
            f"bin width {bin_s} s is shorter than one macrotime tick ({macrotime_unit_s} s)"
        )
    return ticks


def photon_columns(n_channels: int, *columns: tuple[str, ArrayLike, type]) -> tuple[NDArray, ...]:
    """Contiguous arrays of the wanted dtypes, of equal length, channels below ``n_channels``."""
    arrays = tuple(np.ascontiguousarray(a, dtype=dt) for _, a, dt in columns)
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        sizes = ", ".join(
            f"{name} {len(a)}" for (name, _, _), a in zip(columns, arrays, strict=True)
        )
        raise ValueError(f"photon columns differ in length: {sizes}")
    for (name, _, _), a in zip(columns, arrays, strict=True):
        if a.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
        if name == "channel" and len(a) and (top := int(_kernels.max_value(a))) >= n_channels:
            raise AnalysisError(
                f"photon on channel {top}, but the accumulator has n_channels={n_channels}"
            )
    return arrays


def needed_bins(macrotime: NDArray[np.int64], t0_ticks: int, ticks_per_bin: float) -> int:
    """Bins needed to hold all of ``macrotime``, with one to spare."""
    last = int(_kernels.max_value(macrotime)) - t0_ticks
    return int(last / ticks_per_bin) + 2


def grown(array: NDArray, needed: int) -> NDArray:
    """``array`` with at least ``needed`` rows (doubling, so that growth is amortised)."""
    rows = max(needed, 2 * array.shape[0], _INITIAL_BINS)
    out = np.zeros((rows,) + array.shape[1:], dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


class IntensityTrace:
    """Photon counts per time bin and channel, accumulated chunk by chunk.

    Bins are aligned to the absolute macrotime ``t0_ticks`` (e.g. the start of the
    acquisition), not to the first photon, so that a live acquisition and its replay bin alike.
    Bin ``i`` holds macrotimes in ``[t0 + i*w, t0 + (i+1)*w)`` with ``w = bin_s /
    macrotime_unit_s`` ticks; photons before ``t0_ticks`` are not binned (see ``early``).

    Parameters
    ----------
    bin_s
        Bin width in seconds (1 ms in the paper).
    macrotime_unit_s
        Duration of one macrotime tick (the laser period in T3 mode).
    t0_ticks
        Macrotime of the left edge of bin 0.
    n_channels
        Number of detector channels (channels are numbered from 0).

    Notes
    -----
    The array covers bins up to the last photon seen; the last bin is still filling while a
    stream is live.
    """

    def __init__(
        self, bin_s: float, macrotime_unit_s: float, *, t0_ticks: int = 0, n_channels: int = 2
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels must be at least 1, got {n_channels}")
        self.bin_s = float(bin_s)
        self.macrotime_unit_s = float(macrotime_unit_s)
        self.ticks_per_bin = ticks_per_bin(bin_s, macrotime_unit_s)
        self.t0_ticks = int(t0_ticks)
        self.n_channels = int(n_channels)
        #: Photons that came before ``t0_ticks`` and were not binned.
        self.early = 0
        self._counts = np.zeros((0, self.n_channels), dtype=np.int64)
        self._n_bins = 0

    def add(self, macrotime: ArrayLike, channel: ArrayLike) -> None:
        """Accumulate one chunk of photons."""
        macrotime, channel = photon_columns(
            self.n_channels, ("macrotime", macrotime, np.int64), ("channel", channel, np.uint8)
        )
        start = 0
        while start < len(macrotime):
            stop, early, top = _kernels.trace_accumulate(
                macrotime, channel, self.t0_ticks, self.ticks_per_bin, self._counts, start
            )
            self.early += early
            self._n_bins = max(self._n_bins, top + 1)
            if stop < len(macrotime):
                needed = needed_bins(macrotime[stop:], self.t0_ticks, self.ticks_per_bin)
                self._counts = grown(self._counts, needed)
            start = stop

    @property
    def counts(self) -> NDArray[np.int64]:
        """Counts per bin and channel, shape (bins, channels), up to the last photon's bin."""
        return self._counts[: self._n_bins]

    @property
    def total(self) -> NDArray[np.int64]:
        """Counts per bin, all channels together."""
        return self.counts.sum(axis=1)

    @property
    def times_s(self) -> NDArray[np.float64]:
        """Start of each bin, in seconds of the macrotime clock."""
        i = np.arange(len(self.counts))
        return (self.t0_ticks + i * self.ticks_per_bin) * self.macrotime_unit_s

    @property
    def rate_cps(self) -> NDArray[np.float64]:
        """Count rate per bin, all channels together, in counts per second."""
        return self.total / (self.ticks_per_bin * self.macrotime_unit_s)


class DecayHistogram:
    """Microtime histogram per channel (the decay histogram), accumulated chunk by chunk.

    Parameters
    ----------
    microtime_bins
        Number of microtime bins (bins per laser period).
    n_channels
        Number of detector channels.
    """

    def __init__(self, microtime_bins: int, n_channels: int = 2) -> None:
        if microtime_bins < 1:
            raise ValueError(f"microtime_bins must be at least 1, got {microtime_bins}")
        if n_channels < 1:
            raise ValueError(f"n_channels must be at least 1, got {n_channels}")
        self.microtime_bins = int(microtime_bins)
        self.n_channels = int(n_channels)
        #: Photons whose microtime was ``>= microtime_bins`` (counted, not histogrammed).
        self.overflow = 0
        self._counts = np.zeros((self.n_channels, self.microtime_bins), dtype=np.int64)

    def add(self, microtime: ArrayLike, channel: ArrayLike) -> None:
        """Accumulate one chunk of photons."""
        microtime, channel = photon_columns(
            self.n_channels, ("microtime", microtime, np.uint16), ("channel", channel, np.uint8)
        )
        self.overflow += int(_kernels.decay_accumulate(microtime, channel, self._counts))

    @property
    def counts(self) -> NDArray[np.int64]:
        """Counts, shape (channels, microtime bins)."""
        return self._counts

    @property
    def summed(self) -> NDArray[np.int64]:
        """Counts of all channels together, shape (microtime bins,)."""
        return self._counts.sum(axis=0)
