"""IRF helpers for decay fits: a Gaussian IRF, a measured one, and the decay start.

Every array here lives on a microtime grid: bin ``j`` holds the photons that arrived in
``[j * unit, (j + 1) * unit)`` after the laser sync.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from ._errors import AnalysisError

#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def gaussian_irf(
    n_bins: int,
    microtime_unit_s: float,
    fwhm_s: float,
    *,
    center_s: float = 0.0,
    period_s: float | None = None,
) -> NDArray[np.float64]:
    """A Gaussian IRF integrated over each microtime bin, wrapped around the laser period.

    Parameters
    ----------
    n_bins
        Number of microtime bins of the window.
    microtime_unit_s
        Bin width in seconds.
    fwhm_s
        Full width at half maximum in seconds (the paper's set-up: 0.4 ns).
    center_s
        Position of the maximum in the window, in seconds.
    period_s
        Laser period; the Gaussian wraps around it (a pulse centred near the start of the window
        also shows its left flank at the end of the previous period). Default: the window,
        ``n_bins * microtime_unit_s``.

    Returns
    -------
    ndarray
        ``n_bins`` probabilities; they sum to 1 when the window covers the period, to less when
        part of the Gaussian falls outside a shorter window.
    """
    n_bins = int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    _check_positive("microtime_unit_s", microtime_unit_s)
    _check_positive("fwhm_s", fwhm_s)
    period = n_bins * microtime_unit_s if period_s is None else float(period_s)
    _check_positive("period_s", period)
    sigma = fwhm_s / FWHM_PER_SIGMA
    edges = np.arange(n_bins + 1) * microtime_unit_s
    center = math.fmod(center_s, period) % period
    # Images of the pulse in neighbouring periods, as many as 10 sigma can reach.
    reach = int(math.ceil(10.0 * sigma / period)) + 1
    cdf = np.zeros(n_bins + 1)
    for k in range(-reach, reach + 1):
        cdf += ndtr((edges - center - k * period) / sigma)
    return np.diff(cdf)


def resample_irf(
    irf: ArrayLike,
    irf_unit_s: float,
    microtime_unit_s: float,
    n_bins: int | None = None,
    *,
    subtract_background: bool = True,
) -> NDArray[np.float64]:
    """A measured IRF histogram, background-free, normalised to 1 and put on the microtime grid.

    Parameters
    ----------
    irf
        Counts of the measured response (e.g. scattered laser light) in bins of ``irf_unit_s``.
    irf_unit_s
        Bin width of ``irf`` in seconds.
    microtime_unit_s
        Bin width of the grid to put it on.
    n_bins
        Length of the result; default: the duration of ``irf`` in the new bins.
    subtract_background
        Remove the dark-count floor: subtract the mean of the bins that are not clearly above the
        median (the response is narrow, so most bins hold only the floor), then keep only the
        stretch around the maximum until the response first sinks to the floor on either side.
        Clipping the noise instead would leave a positive floor behind, which a fit reads as a
        response spread over the whole period.

    Returns
    -------
    ndarray
        Non-negative, summing to 1 (counts are redistributed by linear interpolation of their
        cumulative sum, so no photon is created or lost).
    """
    h = np.asarray(irf, dtype=np.float64).ravel()
    _check_positive("irf_unit_s", irf_unit_s)
    _check_positive("microtime_unit_s", microtime_unit_s)
    if h.size == 0 or not np.all(np.isfinite(h)) or not h.max() > 0:
        raise AnalysisError("the IRF must be a non-empty array of finite counts")
    if subtract_background:
        h = _strip_floor(h)
    if n_bins is None:
        n_bins = max(1, int(round(h.size * irf_unit_s / microtime_unit_s)))
    old_edges = np.arange(h.size + 1) * irf_unit_s
    cum = np.concatenate(([0.0], np.cumsum(h)))
    new_edges = np.arange(int(n_bins) + 1) * microtime_unit_s
    out = np.diff(np.interp(new_edges, old_edges, cum))
    total = out.sum()
    if not total > 0:
        raise AnalysisError("the IRF holds no counts above its background")
    return out / total


def _strip_floor(h: NDArray[np.float64]) -> NDArray[np.float64]:
    """The peak of ``h`` above its flat floor, zero elsewhere (the array is taken as periodic)."""
    med = float(np.median(h))
    signal = h > med + 5.0 * math.sqrt(med + 1.0)
    floor = float(h[~signal].mean()) if (~signal).any() else 0.0
    h = h - floor
    n = h.size
    peak = int(np.argmax(h))
    keep = np.zeros(n, dtype=bool)
    keep[peak] = True
    for direction in (1, -1):
        for k in range(1, n):
            i = (peak + direction * k) % n
            if h[i] <= 0 or keep[i]:
                break
            keep[i] = True
    return np.where(keep, h, 0.0)


def irf_fwhm(irf: ArrayLike, microtime_unit_s: float) -> float:
    """FWHM of a sampled IRF in seconds (linear interpolation of the half-maximum crossings).

    The IRF is taken as periodic over its length, so a peak at the window edge is measured whole.
    """
    h = np.asarray(irf, dtype=np.float64).ravel()
    if h.size == 0 or not np.nanmax(h) > 0:
        raise AnalysisError("the IRF holds no counts")
    n = h.size
    peak = int(np.argmax(h))
    half = 0.5 * h[peak]
    # Walk out of the peak on both sides until the curve drops below half maximum.
    right = left = None
    for k in range(1, n):
        if h[(peak + k) % n] < half:
            a, b = h[(peak + k - 1) % n], h[(peak + k) % n]
            right = k - 1 + (a - half) / (a - b)
            break
    for k in range(1, n):
        if h[(peak - k) % n] < half:
            a, b = h[(peak - k + 1) % n], h[(peak - k) % n]
            left = k - 1 + (a - half) / (a - b)
            break
    if right is None or left is None:
        raise AnalysisError("the IRF has no half-maximum crossing: it is flat")
    return float((left + right) * microtime_unit_s)


def estimate_decay_start(
    counts: ArrayLike,
    microtime_unit_s: float,
    *,
    smooth_s: float = 0.2e-9,
) -> float:
    """Time of the steepest rise of a decay histogram: where the excitation pulse (the IRF) sits.

    The rise at bin ``j`` and scale ``w`` is the difference between the photons in the ``w`` bins
    from ``j`` on and in the ``w`` bins before (the slope of a triangle-smoothed histogram),
    taken around the period so that a rise at the window start is found too. Its significance
    is that difference over its Poisson noise, ``sqrt(after + before)``. The most significant
    rise over all scales (powers of two) locates the decay even in sparse histograms, where a
    fixed narrow scale would pick up noise; the position is then refined at finer scales, down
    to ``smooth_s``, and to a fraction of a bin by a parabola through the maximum.

    Parameters
    ----------
    counts
        Decay histogram (photons per microtime bin).
    microtime_unit_s
        Bin width in seconds.
    smooth_s
        Finest scale of the refinement, in seconds.

    Returns
    -------
    float
        Seconds from the window start, in ``[0, n_bins * microtime_unit_s)``.
    """
    y = np.asarray(counts, dtype=np.float64).ravel()
    _check_positive("microtime_unit_s", microtime_unit_s)
    if y.size < 4:
        raise AnalysisError(f"a decay histogram needs at least 4 bins, got {y.size}")
    if not np.all(np.isfinite(y)) or not y.sum() > 0:
        raise AnalysisError("the decay histogram is empty")
    n = y.size
    cum = np.concatenate(([0.0], np.cumsum(np.concatenate((y, y)))))

    def rise(w: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        # after[j] = y[j:j+w].sum(), before[j] = y[j-w:j].sum(), circularly.
        after = cum[w : w + n] - cum[:n]
        before = np.roll(after, w)
        return after - before, after + before

    scales = [1 << k for k in range(int(math.log2(max(n // 4, 1))) + 1)]
    best_z, best = -np.inf, (scales[0], 0)
    for w in scales:
        diff, total = rise(w)
        z = diff / np.sqrt(total + 1.0)
        j = int(np.argmax(z))
        if z[j] > best_z:
            best_z, best = z[j], (w, j)
    w_best, j = best
    finest = max(1, int(round(smooth_s / microtime_unit_s)))
    w, diff = w_best, rise(w_best)[0]
    while w // 2 >= finest:
        # The step is within the coarser scale's reach of its best position: look there only,
        # and stop where the finer scale no longer sees the rise clearly above the noise.
        finer, total = rise(w // 2)
        near = (j + np.arange(-w, w + 1)) % n
        k = int(near[np.argmax(finer[near])])
        if finer[k] / math.sqrt(total[k] + 1.0) < 4.0:
            break
        w, diff, j = w // 2, finer, k
    # Sub-bin refinement by the vertex of the parabola through the maximum and its neighbours.
    a, b, c = diff[(j - 1) % n], diff[j], diff[(j + 1) % n]
    denom = a - 2.0 * b + c
    offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
    # diff[j] compares bins j..j+w-1 with j-w..j-1: the step sits at the lower edge of bin j.
    return float(((j + offset) % n) * microtime_unit_s)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
