"""The dot's response to a bias step at microsecond resolution, over many steps.

A square wave of bias (``bias_switching``) steps the cell between two biases thousands of times;
the potentiostat's trigger puts a marker record into the photon file at every step
(``/user/markers``). Each photon is filed by the time since the last step before it, in bins of
whole timestamp units (laser periods in T3, where the dot is excited), separately for the steps
to the high bias (``rising``) and to the low bias (``falling``): counts and microtime sums per
bin, in integers, so any chunking of the rows gives the same numbers. The intensity against
that time, divided by how many steps reached each bin, rises like the bias at the dot; the fit
(:func:`fit_step_response`) gives its time constant and 10-90 % rise time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

#: Polarity index of a step: to the high bias, to the low bias.
RISING, FALLING = 0, 1
EDGE_NAMES = ("rising", "falling")


@numba.njit(cache=True, nogil=True)
def switching_accumulate(
    row0: int,
    timestamps: NDArray[np.int64],
    nanotimes: NDArray[np.uint16],
    marker_row: NDArray[np.int64],
    marker_ts: NDArray[np.int64],
    marker_pol: NDArray[np.int64],
    bin_units: int,
    counts: NDArray[np.int64],
    micro_sum: NDArray[np.int64],
    micro_sq: NDArray[np.int64],
) -> None:
    """Add photon rows ``row0 ...`` to the per-bin counts and microtime sums (in place).

    Photon row ``k`` comes after marker ``i`` when ``marker_row[i] <= k``; it is filed under
    the last such marker, at bin ``(timestamp - marker_ts[i]) // bin_units`` of polarity
    ``marker_pol[i]`` (-1: not a step of the wave, skipped). ``counts`` etc. are ``(2, n_bins)``.
    """
    n_bins = counts.shape[1]
    n_markers = len(marker_row)
    lo, hi = 0, n_markers
    while lo < hi:  # the last marker at or before row0
        mid = (lo + hi) // 2
        if marker_row[mid] <= row0:
            lo = mid + 1
        else:
            hi = mid
    i = lo - 1
    for k in range(len(timestamps)):
        row = row0 + k
        while i + 1 < n_markers and marker_row[i + 1] <= row:
            i += 1
        if i < 0:
            continue
        pol = marker_pol[i]
        if pol < 0:
            continue
        dt = timestamps[k] - marker_ts[i]
        if dt < 0:
            continue
        b = dt // bin_units
        if b >= n_bins:
            continue
        m = np.int64(nanotimes[k])
        counts[pol, b] += 1
        micro_sum[pol, b] += m
        micro_sq[pol, b] += m * m


def step_exposure(
    marker_ts: NDArray[np.int64],
    marker_pol: NDArray[np.int64],
    end_ts: int,
    bin_units: int,
    n_bins: int,
) -> NDArray[np.int64]:
    """``(2, n_bins)``: how many steps of each polarity reached each bin before the next
    marker (or ``end_ts``, the last timestamp read)."""
    out = np.zeros((2, n_bins), dtype=np.int64)
    if len(marker_ts) == 0:
        return out
    nxt = np.append(marker_ts[1:], max(int(end_ts) + 1, int(marker_ts[-1])))
    span = (nxt - marker_ts) // bin_units  # whole bins before the next marker
    span = np.clip(span, 0, n_bins)
    for pol in (RISING, FALLING):
        s = span[marker_pol == pol]
        # bins [0, s) of each step: a count of steps with s > b, for every b
        out[pol] = len(s) - np.searchsorted(np.sort(s), np.arange(n_bins), side="right")
    return out


class SwitchingAccumulator:
    """Counts and microtime sums against the time since each step of a bias square wave.

    Parameters
    ----------
    bin_units
        Width of a time bin in timestamp units (laser periods in T3), >= 1.
    n_bins
        Bins after each step (they should cover half the wave's period).
    """

    def __init__(self, bin_units: int, n_bins: int) -> None:
        if int(bin_units) < 1 or int(n_bins) < 2:
            raise ValueError(f"need bin_units >= 1 and n_bins >= 2, got {bin_units}, {n_bins}")
        self.bin_units = int(bin_units)
        self.n_bins = int(n_bins)
        self.counts = np.zeros((2, self.n_bins), dtype=np.int64)
        self.micro_sum = np.zeros_like(self.counts)
        self.micro_sq = np.zeros_like(self.counts)
        self.last_ts: int | None = None

    def add(
        self,
        row0: int,
        timestamps: NDArray[np.int64],
        nanotimes: NDArray[np.uint16] | None,
        marker_row: NDArray[np.int64],
        marker_ts: NDArray[np.int64],
        marker_pol: NDArray[np.int64],
    ) -> None:
        """Photon rows ``[row0, row0 + len(timestamps))`` with every marker that precedes them."""
        if len(timestamps) == 0:
            return
        micro = np.zeros(len(timestamps), np.uint16) if nanotimes is None else nanotimes
        switching_accumulate(
            int(row0),
            np.ascontiguousarray(timestamps, dtype=np.int64),
            np.ascontiguousarray(micro, dtype=np.uint16),
            np.ascontiguousarray(marker_row, dtype=np.int64),
            np.ascontiguousarray(marker_ts, dtype=np.int64),
            np.ascontiguousarray(marker_pol, dtype=np.int64),
            self.bin_units,
            self.counts,
            self.micro_sum,
            self.micro_sq,
        )
        last = int(timestamps[-1])
        self.last_ts = last if self.last_ts is None else max(self.last_ts, last)


@dataclass(frozen=True)
class StepResponse:
    """The fit of one polarity's intensity against the time since the step.

    ``y(t) = end + (start - end) exp(-(t - delay) / tau)`` for ``t > delay``, ``start`` before
    (a bias that must cross a threshold first shows as a delay); ``rise_time_s`` is the
    10-90 % time of the exponential, ``tau ln 9``.
    """

    tau_s: float
    tau_stderr_s: float
    delay_s: float
    start_cps: float
    end_cps: float
    problem: str | None = None

    @property
    def rise_time_s(self) -> float:
        return self.tau_s * math.log(9.0)

    @property
    def rise_time_stderr_s(self) -> float:
        return self.tau_stderr_s * math.log(9.0)


def _model(p: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    start, end, delay, log_tau = p
    x = np.maximum(t - delay, 0.0) * math.exp(-min(max(log_tau, -60.0), 60.0))
    return end + (start - end) * np.exp(-x)


def fit_step_response(
    t_s: NDArray[np.float64], counts: NDArray[np.int64], exposure_s: NDArray[np.float64]
) -> StepResponse:
    """Fit the delayed exponential to the counts of each bin (Poisson, via scipy).

    ``t_s`` is the start of each bin after the step, ``exposure_s`` the seconds of data in it
    (steps that reached it times the bin width).
    """
    from scipy.optimize import least_squares

    nan = StepResponse(math.nan, math.nan, math.nan, math.nan, math.nan)
    ok = exposure_s > 0
    t, c, e = t_s[ok], counts[ok].astype(float), exposure_s[ok]
    if len(t) < 6 or c.sum() < 50:
        return StepResponse(**{**nan.__dict__, "problem": "too few photons after the steps"})
    rate = c / e
    k = max(3, len(t) // 10)
    start, end = rate[:1].mean(), rate[-k:].mean()
    if start == end:
        return StepResponse(**{**nan.__dict__, "problem": "no change of intensity at the steps"})
    # Starting values: the time the intensity is 1/e of the way done, a delay of one bin.
    frac = (rate - end) / (start - end)
    crossing = t[np.argmax(frac < math.exp(-1.0))] if np.any(frac < math.exp(-1.0)) else t[-1]
    dt = t[1] - t[0]
    tau0 = max(crossing - t[0], dt)

    def residuals(p):
        mu = np.maximum(_model(p, t) * e, 1e-12)
        # Poisson deviance residuals: the likelihood fit as least squares.
        dev = 2.0 * (mu - c + np.where(c > 0, c * np.log(np.maximum(c, 1e-300) / mu), 0.0))
        return np.sign(c - mu) * np.sqrt(np.maximum(dev, 0.0))

    best = None
    for delay0 in (t[0], t[0] + 0.5 * tau0, t[0] + tau0):
        p0 = np.array([start, end, delay0, math.log(tau0)])
        fit = least_squares(residuals, p0, method="lm", x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    p = best.x
    try:
        cov = np.linalg.inv(best.jac.T @ best.jac)
        log_tau_err = math.sqrt(max(cov[3, 3], 0.0))
    except np.linalg.LinAlgError:
        log_tau_err = math.nan
    tau = math.exp(min(max(p[3], -60.0), 60.0))
    problem = None
    if not (0.1 * dt <= tau <= 10.0 * t[-1]) or not math.isfinite(log_tau_err):
        # A step the dot does not follow, or one faster than a bin: no time constant here.
        problem = "no response resolved between one bin and the half period"
    return StepResponse(tau, tau * log_tau_err, float(p[2]), float(p[0]), float(p[1]), problem)
