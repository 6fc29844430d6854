"""Second-order correlation g2 of a pulsed source between two detectors (HBT)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _kernels
from ._errors import AnalysisError

#: Number of lagging peaks on each side whose mean area normalises g2(0) (the paper's choice).
SIDE_PEAKS = 3
#: Default width of the g2(tau) histogram bins.
G2_BIN_S = 1e-9


@dataclass(frozen=True)
class G2Result:
    """Coincidence peak areas, g2(0) and the g2(tau) histogram.

    Attributes
    ----------
    peak_index
        k = -n_peaks .. n_peaks.
    peak_areas
        Coincidences with delay t_b - t_a in [kT - T/2, kT + T/2), T the laser period.
    g2_zero
        ``peak_areas[k=0]`` / mean of ``peak_areas[k=+-1, +-2, +-3]``, no background
        subtraction; NaN without side-peak coincidences.
    g2_zero_stderr
        Poisson standard error: ``g2_zero * sqrt(1/A_0 + 1/sum(A_side))`` (with A_0 = 0
        counted as one coincidence).
    tau_s
        Centres of the g2(tau) histogram bins, from -(n_peaks + 1/2) T.
    counts
        Coincidences per bin.
    g2
        ``counts`` divided by the mean side-peak area: a side peak sums to about 1 and the
        zero-delay peak to ``g2_zero``.
    period_s
        Laser period T.
    bin_s
        Width of the g2(tau) histogram bins.
    """

    peak_index: NDArray[np.int64]
    peak_areas: NDArray[np.int64]
    g2_zero: float
    g2_zero_stderr: float
    tau_s: NDArray[np.float64]
    counts: NDArray[np.int64]
    g2: NDArray[np.float64]
    period_s: float
    bin_s: float

    @property
    def side_peak_mean(self) -> float:
        """Mean area of the side peaks used as the normalisation."""
        return float(self.peak_areas[_side(len(self.peak_areas) // 2)].mean())


def _side(n_peaks: int) -> NDArray[np.intp]:
    """Indices into ``peak_areas`` of the peaks k = +-1 .. +-min(3, n_peaks)."""
    m = min(SIDE_PEAKS, n_peaks)
    k = np.concatenate((np.arange(-m, 0), np.arange(1, m + 1)))
    return k + n_peaks


class G2Pulsed:
    """Pulsed g2 between detector channels a and b, accumulated chunk by chunk.

    A coincidence is a pair (photon on a, photon on b); its delay is
    ``t_b - t_a = (m_b - m_a) * macrotime_unit_s + (u_b - u_a) * microtime_unit_s``. Peak k of
    the pulsed g2 is the number of coincidences with delay in [kT - T/2, kT + T/2), for
    |k| <= ``n_peaks``, and g2(0) is the area of peak 0 over the mean area of the first three
    lagging peaks on both sides (k = +-1, +-2, +-3), *without* background subtraction, as in
    Morozov et al. A perfect single-photon source whose lifetime is not short against T still
    gives g2(0) > 0: neighbouring peaks overlap the zero-delay window.

    The photons of the last ``n_peaks + 1`` periods are carried over to the next chunk, so the
    chunked result equals the one-shot result exactly. Photons must arrive in time order
    (macrotime non-decreasing, within and across chunks).

    Parameters
    ----------
    channel_a, channel_b
        The two detectors (distinct). Photons of other channels are ignored.
    macrotime_unit_s
        Macrotime tick (the sync period in T3 mode, the clock tick in T2 mode).
    microtime_unit_s
        TCSPC bin in T3 mode; ``None`` for T2 data (absolute times in macrotime ticks).
    n_peaks
        Peaks computed on each side of zero (at least 1; g2(0) uses min(3, n_peaks)).
    bin_s
        Width of the g2(tau) histogram bins, rounded so that a whole number of bins spans one
        period (each peak window is then exactly a group of bins).
    period_s
        Laser period; default ``macrotime_unit_s`` in T3 mode, required in T2 mode.
    """

    def __init__(
        self,
        channel_a: int,
        channel_b: int,
        *,
        macrotime_unit_s: float,
        microtime_unit_s: float | None,
        n_peaks: int = 3,
        bin_s: float = G2_BIN_S,
        period_s: float | None = None,
    ) -> None:
        if channel_a == channel_b:
            raise ValueError(f"g2 needs two different channels, got {channel_a} twice")
        if not (0 <= channel_a < 256 and 0 <= channel_b < 256):
            raise ValueError(f"channels must be in 0..255, got {channel_a} and {channel_b}")
        if n_peaks < 1:
            raise ValueError(f"n_peaks must be at least 1, got {n_peaks}")
        if not (math.isfinite(macrotime_unit_s) and macrotime_unit_s > 0):
            raise ValueError(f"macrotime_unit_s must be positive, got {macrotime_unit_s}")
        if microtime_unit_s is not None and not (
            math.isfinite(microtime_unit_s) and microtime_unit_s > 0
        ):
            raise ValueError(f"microtime_unit_s must be positive or None, got {microtime_unit_s}")
        if period_s is None:
            if microtime_unit_s is None:
                raise ValueError("T2 data (microtime_unit_s=None) need the laser period_s")
            period_s = macrotime_unit_s
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period_s must be positive, got {period_s}")
        if not (math.isfinite(bin_s) and 0 < bin_s <= period_s):
            raise ValueError(f"bin_s must be positive and at most the period, got {bin_s}")
        self.channel_a = int(channel_a)
        self.channel_b = int(channel_b)
        self.macrotime_unit_s = float(macrotime_unit_s)
        self.microtime_unit_s = None if microtime_unit_s is None else float(microtime_unit_s)
        self.n_peaks = int(n_peaks)
        self.period_s = float(period_s)
        #: Bins per period of the g2(tau) histogram (``bin_s`` rounded to divide the period).
        self.bins_per_period = max(1, round(self.period_s / bin_s))
        self.bin_s = self.period_s / self.bins_per_period
        half = (self.n_peaks + 0.5) * self.period_s
        # |delay| < half and |(u_b - u_a) * microtime_unit| < one macrotime tick (T3), so
        # |m_b - m_a| < half / tick + 1
        self._window_ticks = math.floor(half / self.macrotime_unit_s) + 1
        self._hist_lo = -half
        self._peaks = np.zeros(2 * self.n_peaks + 1, dtype=np.int64)
        self._hist = np.zeros(len(self._peaks) * self.bins_per_period, dtype=np.int64)
        self._tail_m = np.zeros(0, dtype=np.int64)
        self._tail_u = np.zeros(0, dtype=np.uint16)
        self._tail_c = np.zeros(0, dtype=np.uint8)
        self._last: int | None = None
        #: Photons seen on channel a and on channel b.
        self.n_a = 0
        self.n_b = 0

    def add(self, macrotime: ArrayLike, microtime: ArrayLike | None, channel: ArrayLike) -> None:
        """Accumulate one chunk of photons (in time order, after the previous chunk).

        ``microtime`` may be ``None`` for T2 data.
        """
        m = np.ascontiguousarray(macrotime, dtype=np.int64)
        c = np.ascontiguousarray(channel, dtype=np.uint8)
        if microtime is None or self.microtime_unit_s is None:
            u = np.zeros(len(m), dtype=np.uint16)
        else:
            u = np.ascontiguousarray(microtime, dtype=np.uint16)
        if not (m.ndim == u.ndim == c.ndim == 1 and len(m) == len(u) == len(c)):
            raise ValueError(
                f"photon columns must be 1-D of equal length: macrotime {m.shape}, "
                f"microtime {u.shape}, channel {c.shape}"
            )
        if len(m) == 0:
            return
        bad = _kernels.first_decrease(m)
        if bad >= 0:
            raise AnalysisError(
                f"photons out of time order: macrotime {m[bad]} follows {m[bad - 1]} "
                f"(photon {bad} of the chunk)"
            )
        if self._last is not None and m[0] < self._last:
            raise AnalysisError(
                f"chunk starts at macrotime {m[0]}, before the previous chunk's end "
                f"({self._last}); chunks must come in time order"
            )
        self._last = int(m[-1])
        self.n_a += int(np.count_nonzero(c == self.channel_a))
        self.n_b += int(np.count_nonzero(c == self.channel_b))
        start = len(self._tail_m)
        if start:
            m = np.concatenate((self._tail_m, m))
            u = np.concatenate((self._tail_u, u))
            c = np.concatenate((self._tail_c, c))
        _kernels.g2_accumulate(
            m,
            u,
            c,
            start,
            self.channel_a,
            self.channel_b,
            self._window_ticks,
            self.macrotime_unit_s,
            self.microtime_unit_s or 0.0,
            self.period_s,
            self.n_peaks,
            self.bins_per_period,
            self._peaks,
            self._hist,
        )
        # keep what a later photon (macrotime >= the last one) can still pair with
        first = int(np.searchsorted(m, m[-1] - self._window_ticks, side="left"))
        keep = (c[first:] == self.channel_a) | (c[first:] == self.channel_b)
        self._tail_m = m[first:][keep].copy()
        self._tail_u = u[first:][keep].copy()
        self._tail_c = c[first:][keep].copy()

    def result(self) -> G2Result:
        """Peak areas, g2(0) with its Poisson error, and the g2(tau) histogram."""
        peaks = self._peaks.copy()
        side = peaks[_side(self.n_peaks)]
        side_sum = int(side.sum())
        zero = int(peaks[self.n_peaks])
        if side_sum > 0:
            mean = side_sum / len(side)
            g2_zero = zero / mean
            g2_err = math.sqrt(max(zero, 1)) / mean * math.sqrt(1.0 + zero / side_sum)
        else:
            mean = g2_zero = g2_err = math.nan
        counts = self._hist.copy()
        tau = self._hist_lo + (np.arange(len(counts)) + 0.5) * self.bin_s
        with np.errstate(invalid="ignore", divide="ignore"):
            g2 = counts / mean
        return G2Result(
            np.arange(-self.n_peaks, self.n_peaks + 1),
            peaks,
            g2_zero,
            g2_err,
            tau,
            counts,
            g2,
            self.period_s,
            self.bin_s,
        )
