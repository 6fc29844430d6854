"""FLID: per time bin, the intensity and a maximum-likelihood lifetime.

Accumulation (:class:`Flid`) keeps, per time bin (20 ms in the paper), the photon count and a
coarse microtime histogram. That state is a plain sum over photons, so it is exact and
independent of how the stream was chunked, and the lifetime is estimated afterwards
(:meth:`Flid.result`, :func:`flid_lifetimes`) once the decay start and background are known.

The per-bin estimator
---------------------
With ``s`` the photon delay after the decay start, taken modulo the laser period ``P``, one
time bin's photons have the density (a truncated exponential with its periodic tail, plus a
flat background)::

    f(s) = (1 - b) * exp(-s/tau) / (tau * (1 - exp(-P/tau))) + b / P,     0 <= s < P,

where ``b`` = (expected background counts in the bin) / (counts in the bin), with the
expected background = ``background_cps * bin_s`` (a constant rate such as dark counts, so b
differs from bin to bin). ``tau`` maximises the multinomial likelihood of the binned delays;
the score is solved in log(tau) by bracketed Newton steps (bisection as fall-back).

The decay start and the IRF. The IRF smears photons around the decay start, some to slightly
*before* it, where a naive ``mod P`` would move them to the end of the period and inflate tau.
So the delay window starts a guard interval before the decay start, ``[-guard, P - guard)``,
and all photons within ``guard`` of the decay start on either side form one *start cell* that
enters the likelihood through its count only (its probability is one minus that of all other
cells). Outside the start cell a Gaussian IRF of known FWHM changes the density by the factor
``K = exp(sigma**2 / (2 tau**2))`` alone (the tail of an exponential convolved with a Gaussian);
``K`` is part of the model, so the estimate stays unbiased down to lifetimes of a few IRF
widths. The guard must be at least two IRF FWHM (default: the larger of 1 ns and three FWHM);
a small error in the decay start or a small delay between detectors is absorbed by it too.
The price is that the shape inside the start cell is not used: negligible for lifetimes much
longer than the guard, a loss of efficiency (not a bias) for lifetimes of about 1 ns.

For speed, the coarse bins beyond the start cell are merged into cells whose width grows to
a tenth of their delay (about 60 cells per period); with exact bin probabilities, merging
costs <1 % of the information for any lifetime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _kernels
from ._accumulators import grown, needed_bins, photon_columns, ticks_per_bin
from ._errors import AnalysisError
from ._threads import on_second_thread

#: Default width of the coarse microtime bins kept per FLID time bin.
COARSE_BIN_S = 0.5e-9
#: Default minimum number of photons for a lifetime.
MIN_COUNTS = 20
#: Fewer time bins are not split between two threads.
MIN_SPLIT_ROWS = 256
# Cells beyond the start cell grow to this fraction of their delay.
_CELL_GROWTH = 0.1
# Lifetimes are searched between the start region / this and this x the period.
_TAU_LO_DIVISOR = 10.0
_TAU_HI_PERIODS = 100.0


@dataclass(frozen=True)
class FlidResult:
    """Intensity and lifetime per FLID time bin.

    Attributes
    ----------
    times_s
        Start of each time bin, in seconds of the macrotime clock.
    intensity_cps
        Count rate of each bin (all photons, no background subtraction).
    lifetime_s
        Maximum-likelihood lifetime; NaN where the bin has too few photons or no resolvable
        decay.
    lifetime_stderr_s
        Standard error of ``lifetime_s`` from the Fisher information.
    counts
        Photons per bin.
    bin_s
        Width of the time bins.
    """

    times_s: NDArray[np.float64]
    intensity_cps: NDArray[np.float64]
    lifetime_s: NDArray[np.float64]
    lifetime_stderr_s: NDArray[np.float64]
    counts: NDArray[np.int64]
    bin_s: float

    def __len__(self) -> int:
        return len(self.counts)

    def occurrence(
        self,
        *,
        intensity_bins: int | ArrayLike = 50,
        lifetime_bins: int | ArrayLike = 50,
        intensity_range: tuple[float, float] | None = None,
        lifetime_range: tuple[float, float] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """2-D occurrence histogram (intensity x lifetime) of the bins with a lifetime.

        Parameters
        ----------
        intensity_bins, lifetime_bins
            Number of bins or bin edges (cps, seconds), as for ``numpy.histogram2d``.
        intensity_range, lifetime_range
            Ranges when a number of bins is given; default: the data's range.

        Returns
        -------
        counts, intensity_edges, lifetime_edges
            ``counts[i, j]`` is the number of time bins with intensity in bin i and lifetime
            in bin j.
        """
        ok = np.isfinite(self.lifetime_s)
        counts, xe, ye = np.histogram2d(
            self.intensity_cps[ok],
            self.lifetime_s[ok],
            bins=[intensity_bins, lifetime_bins],
            range=[intensity_range, lifetime_range],
        )
        return counts.astype(np.int64), xe, ye


class Flid:
    """Accumulates the FLID state: per time bin a photon count and a coarse decay histogram.

    Parameters
    ----------
    bin_s
        Time-bin width (20 ms in the paper).
    macrotime_unit_s
        Duration of one macrotime tick (the laser period in T3 mode).
    microtime_unit_s
        TCSPC bin width.
    microtime_bins
        Microtime bins per laser period.
    t0_ticks
        Macrotime of the left edge of time bin 0 (absolute, so live and replay bin alike).
    coarse_bin_s
        Width of the coarse microtime bins, rounded to a whole number of TCSPC bins. Memory is
        ``4 * bins * ceil(period / coarse_bin_s)`` bytes (3.2 kB per bin at 400 ns and 0.5 ns).

    Notes
    -----
    All photons passed to :meth:`add` are used, whatever their detector: the two detectors of
    an HBT set-up see the same decay (a delay between them smaller than the guard of
    :func:`flid_lifetimes` does no harm).
    """

    def __init__(
        self,
        bin_s: float,
        macrotime_unit_s: float,
        microtime_unit_s: float,
        microtime_bins: int,
        *,
        t0_ticks: int = 0,
        coarse_bin_s: float = COARSE_BIN_S,
    ) -> None:
        if not (microtime_unit_s and math.isfinite(microtime_unit_s) and microtime_unit_s > 0):
            raise ValueError(f"a FLID needs T3 microtimes; microtime_unit_s is {microtime_unit_s}")
        if microtime_bins < 1:
            raise ValueError(f"microtime_bins must be at least 1, got {microtime_bins}")
        if not (math.isfinite(coarse_bin_s) and coarse_bin_s > 0):
            raise ValueError(f"coarse_bin_s must be positive, got {coarse_bin_s}")
        self.bin_s = float(bin_s)
        self.macrotime_unit_s = float(macrotime_unit_s)
        self.ticks_per_bin = ticks_per_bin(bin_s, macrotime_unit_s)
        self.microtime_unit_s = float(microtime_unit_s)
        self.microtime_bins = int(microtime_bins)
        self.t0_ticks = int(t0_ticks)
        #: Microtime bins per coarse bin.
        self.coarse_factor = max(1, round(coarse_bin_s / microtime_unit_s))
        self.coarse_bin_s = self.coarse_factor * self.microtime_unit_s
        n_coarse = -(-self.microtime_bins // self.coarse_factor)
        self._coarse_of = (np.arange(self.microtime_bins) // self.coarse_factor).astype(np.int32)
        #: Photons before ``t0_ticks`` (not binned).
        self.early = 0
        #: Photons with a microtime ``>= microtime_bins`` (counted, not in the histogram).
        self.overflow = 0
        self._counts = np.zeros(0, dtype=np.int64)
        self._hist = np.zeros((0, n_coarse), dtype=np.uint32)
        self._n_bins = 0

    def add(self, macrotime: ArrayLike, microtime: ArrayLike) -> None:
        """Accumulate one chunk of photons."""
        macrotime, microtime = photon_columns(
            1, ("macrotime", macrotime, np.int64), ("microtime", microtime, np.uint16)
        )
        start = 0
        while start < len(macrotime):
            stop, early, overflow, top = _kernels.flid_accumulate(
                macrotime,
                microtime,
                self.t0_ticks,
                self.ticks_per_bin,
                self._coarse_of,
                self._counts,
                self._hist,
                start,
            )
            self.early += early
            self.overflow += overflow
            self._n_bins = max(self._n_bins, top + 1)
            if stop < len(macrotime):
                needed = needed_bins(macrotime[stop:], self.t0_ticks, self.ticks_per_bin)
                self._counts = grown(self._counts, needed)
                self._hist = grown(self._hist, needed)
            start = stop

    def reserve(self, n_bins: int) -> None:
        """Allocate ``n_bins`` time bins now (a caller that knows the stream's length)."""
        if n_bins > self._hist.shape[0]:
            self._counts = grown(self._counts, n_bins)
            self._hist = grown(self._hist, n_bins)

    @property
    def counts(self) -> NDArray[np.int64]:
        """Photons per time bin."""
        return self._counts[: self._n_bins]

    @property
    def histograms(self) -> NDArray[np.uint32]:
        """Coarse microtime histogram per time bin, shape (bins, coarse bins)."""
        return self._hist[: self._n_bins]

    @property
    def times_s(self) -> NDArray[np.float64]:
        """Start of each time bin, in seconds of the macrotime clock."""
        i = np.arange(self._n_bins)
        return (self.t0_ticks + i * self.ticks_per_bin) * self.macrotime_unit_s

    def result(
        self,
        *,
        decay_start_s: float,
        background_cps: float = 0.0,
        period_s: float,
        min_counts: int = MIN_COUNTS,
        irf_fwhm_s: float = 0.0,
        guard_s: float | None = None,
        workers: int = 1,
    ) -> FlidResult:
        """Intensity and lifetime of every time bin.

        Parameters
        ----------
        decay_start_s
            Time of zero delay in the microtime frame (the IRF centre).
        background_cps
            Flat background rate (e.g. dark counts), all detectors together.
        period_s
            Laser period.
        min_counts
            Bins with fewer photons get a NaN lifetime.
        irf_fwhm_s, guard_s, workers
            See :func:`flid_lifetimes`.
        """
        bin_s = self.ticks_per_bin * self.macrotime_unit_s
        tau, err = flid_lifetimes(
            self.histograms,
            coarse_bin_s=self.coarse_bin_s,
            period_s=period_s,
            decay_start_s=decay_start_s,
            background_counts=background_cps * bin_s,
            min_counts=min_counts,
            irf_fwhm_s=irf_fwhm_s,
            guard_s=guard_s,
            workers=workers,
        )
        counts = self.counts.copy()
        return FlidResult(self.times_s, counts / bin_s, tau, err, counts, bin_s)


@dataclass(frozen=True)
class _Cells:
    """How coarse bins group into the likelihood's cells (cell 0: the start region).

    The first ``n_used`` columns (those starting within the period), rotated to start at
    ``first_column``, are cut at ``cell_start``; cell c covers delays ``edges[c]`` to
    ``edges[c + 1]`` after the decay start.
    """

    first_column: int
    n_used: int
    cell_start: NDArray[np.int64]
    edges: NDArray[np.float64]


def _cells(
    n_coarse: int, coarse_bin_s: float, period_s: float, decay_start_s: float, guard_s: float
) -> _Cells:
    """Rotate the coarse bins to start ``guard_s`` before the decay start; group them in cells."""
    h = coarse_bin_s
    # columns that start inside the period; the last one reaches to the period's end
    n_in = min(math.ceil(period_s / h - 1e-9), n_coarse)
    if n_in * h < period_s - h * (1 + 1e-9):
        raise AnalysisError(
            f"the microtime range ({n_coarse * h * 1e9:.4g} ns) does not cover the laser "
            f"period ({period_s * 1e9:.4g} ns)"
        )
    if 4 * guard_s + 4 * h > period_s:
        raise AnalysisError(
            f"the FLID guard ({guard_s * 1e9:.3g} ns) and coarse bins ({h * 1e9:.3g} ns) "
            f"leave no room in a {period_s * 1e9:.4g} ns period"
        )
    start = (decay_start_s - guard_s) % period_s
    j_start = min(int(start // h), n_in - 1)
    rotated = (j_start + np.arange(n_in)) % n_in
    widths = np.where(rotated == n_in - 1, period_s - (n_in - 1) * h, h)
    lo = -(guard_s + (start - j_start * h)) + np.concatenate(([0.0], np.cumsum(widths)[:-1]))
    # cell 0: every bin starting less than a guard after the decay start
    starts = [0]
    k = int(np.searchsorted(lo, guard_s))
    while k < n_in:
        starts.append(k)
        target = max(h, _CELL_GROWTH * lo[k])
        m = k + 1
        while m < n_in and lo[m] + widths[m] - lo[k] <= target + 1e-6 * h:
            m += 1
        k = m
    starts = np.array(starts + [n_in])
    edges = np.append(lo, lo[-1] + widths[-1])[starts]
    return _Cells(j_start, n_in, starts.astype(np.int64), edges)


def flid_lifetimes(
    histograms: ArrayLike,
    *,
    coarse_bin_s: float,
    period_s: float,
    decay_start_s: float,
    background_counts: float | ArrayLike = 0.0,
    min_counts: int = MIN_COUNTS,
    irf_fwhm_s: float = 0.0,
    guard_s: float | None = None,
    workers: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Maximum-likelihood lifetime of each row of a (time bins x coarse microtime bins) histogram.

    The model and the handling of the IRF are described in the module docstring of
    ``qd_bluesky.analysis._flid``: a truncated single exponential with its periodic tail and a
    flat background, the IRF region around the decay start lumped into one cell.

    Parameters
    ----------
    histograms
        Counts, shape (time bins, coarse bins); column j holds delays
        ``[j, j+1) * coarse_bin_s`` after the laser sync.
    coarse_bin_s
        Width of the columns.
    period_s
        Laser period; columns starting at or after it are ignored.
    decay_start_s
        Time of zero delay (the IRF centre) after the sync.
    background_counts
        Expected flat-background counts per time bin (scalar or one per row).
    min_counts
        Rows with fewer photons get NaN.
    irf_fwhm_s
        FWHM of a Gaussian IRF; 0 ignores the IRF outside the start cell (a bias of order
        (sigma/tau)**2 / 2, negligible for tau >> IRF).
    guard_s
        Half-width of the start cell; at least two IRF FWHM; default max(1 ns, 3 FWHM).
    workers
        1 or 2 threads: with 2, the second half of the rows is estimated on a second thread
        (every row is independent, so the result is the same).

    Returns
    -------
    lifetime_s, stderr_s
        One per row; NaN where the row has too few photons or no resolvable decay.
    """
    hist = np.asarray(histograms)
    if hist.ndim != 2:
        raise ValueError(f"histograms must be 2-D (time bins x coarse bins), got {hist.shape}")
    for name, value in (("coarse_bin_s", coarse_bin_s), ("period_s", period_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}")
    if not math.isfinite(decay_start_s):
        raise ValueError(f"decay_start_s must be finite, got {decay_start_s}")
    if not (math.isfinite(irf_fwhm_s) and irf_fwhm_s >= 0):
        raise ValueError(f"irf_fwhm_s must be >= 0, got {irf_fwhm_s}")
    if guard_s is None:
        guard_s = max(1e-9, 3.0 * irf_fwhm_s)
    if not (math.isfinite(guard_s) and guard_s >= 2.0 * irf_fwhm_s and guard_s > 0):
        raise ValueError(
            f"guard_s ({guard_s}) must be positive and at least two IRF FWHM ({irf_fwhm_s})"
        )
    n_rows = hist.shape[0]
    bg = np.broadcast_to(np.asarray(background_counts, dtype=np.float64), (n_rows,))
    if not np.all(np.isfinite(bg) & (bg >= 0)):
        raise ValueError("background_counts must be finite and >= 0")
    tau = np.full(n_rows, np.nan)
    err = np.full(n_rows, np.nan)
    if n_rows == 0:
        return tau, err
    cells = _cells(hist.shape[1], coarse_bin_s, period_s, decay_start_s, guard_s)
    sigma = irf_fwhm_s / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    tau_lo = cells.edges[1] / _TAU_LO_DIVISOR
    tau_hi = _TAU_HI_PERIODS * period_s
    hist = np.ascontiguousarray(hist)
    bg = np.ascontiguousarray(bg)

    def solve(rows: slice) -> None:
        _kernels.flid_solve(
            hist[rows],
            cells.first_column,
            cells.n_used,
            cells.cell_start,
            cells.edges,
            float(period_s),
            sigma * sigma,
            bg[rows],
            float(min_counts),
            tau_lo,
            tau_hi,
            tau[rows],
            err[rows],
        )

    if workers > 1 and n_rows >= MIN_SPLIT_ROWS:
        half = n_rows // 2
        second = on_second_thread(solve, slice(half, n_rows))
        solve(slice(0, half))
        second.result()
    else:
        solve(slice(0, n_rows))
    return tau, err
