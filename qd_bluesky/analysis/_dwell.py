"""On/off dwell times of grouped levels and their power-law statistics.

Dwells. A level is *on* when its group's intensity is above the threshold (by default midway
between the brightest and the dimmest group) and *off* otherwise; consecutive levels of the same
kind form one dwell. The first and the last dwell are cut by the recording, so they are dropped.

Power law (Clauset, Shalizi & Newman, SIAM Rev. 51, 661, 2009; continuous data). For dwells
``x >= xmin`` the density ``p(x) = (alpha - 1) / xmin * (x / xmin) ** -alpha`` has the
maximum-likelihood exponent ``alpha = 1 + n / sum(ln(x_i / xmin))`` with standard error
``(alpha - 1) / sqrt(n)``; ``xmin`` is the candidate (each observed dwell with at least
``min_tail`` dwells at or above it) whose fit has the smallest Kolmogorov-Smirnov distance to the
data above it. The standard error holds xmin fixed; with xmin chosen from the data the exponent
scatters about 1.2 times more (measured at 500 dwells; CSN recommend a bootstrap for that).

Truncated power law. ``p(x) ~ x ** -alpha * exp(-lambda x)`` for ``x >= xmin`` is fitted by
maximum likelihood on the same tail. The power law is its special case lambda = 0, so the two are
compared by the nested likelihood-ratio test of CSN (section 5): ``2 (ln L_trunc - ln L_pl)``
is chi-squared with one degree of freedom, halved because lambda >= 0 is on a boundary. A small
``p_value`` favours the truncated law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, optimize, stats

from ._levels import Levels

#: Fewest dwells above xmin for a power-law fit.
MIN_TAIL = 10


@dataclass(frozen=True)
class PowerLawFit:
    """Maximum-likelihood power law of the dwells above ``xmin``, and its truncated rival.

    Attributes
    ----------
    alpha, alpha_stderr
        Exponent and its standard error ``(alpha - 1) / sqrt(n)``.
    xmin
        Lower bound of the fitted tail (same unit as the dwells).
    n_tail, n_total
        Dwells at or above ``xmin``, and all dwells.
    ks_distance
        Kolmogorov-Smirnov distance of the fit to the tail.
    truncated_alpha, truncated_lambda
        Maximum-likelihood truncated power law on the same tail (lambda in 1 / unit of x).
    loglik_ratio
        ``ln L_trunc - ln L_pl`` (>= 0).
    p_value
        Of the power law against the truncated one (small: truncation is significant).
    """

    alpha: float
    alpha_stderr: float
    xmin: float
    n_tail: int
    n_total: int
    ks_distance: float
    truncated_alpha: float
    truncated_lambda: float
    loglik_ratio: float
    p_value: float


@dataclass(frozen=True)
class Blinking:
    """On and off dwells of a levels analysis and their power-law fits (None: too few dwells)."""

    threshold_cps: float
    on_s: NDArray[np.float64]
    off_s: NDArray[np.float64]
    on: PowerLawFit | None
    off: PowerLawFit | None


@numba.njit(cache=True)
def _scan_xmin(x, min_tail):
    """Over candidate xmin (sorted x): index of the least KS distance, its alpha and distance."""
    n = len(x)
    log_x = np.log(x)
    suffix = np.zeros(n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + log_x[i]
    best_i, best_alpha, best_d = -1, np.nan, np.inf
    i = 0
    while i <= n - min_tail:
        m = n - i
        s = suffix[i] - m * log_x[i]
        if s > 0.0:
            alpha = 1.0 + m / s
            d = 0.0
            for j in range(i, n):
                model = 1.0 - math.exp((1.0 - alpha) * (log_x[j] - log_x[i]))
                d = max(d, abs((j - i + 1) / m - model), abs((j - i) / m - model))
            if d < best_d:
                best_i, best_alpha, best_d = i, alpha, d
        # the next distinct value
        j = i + 1
        while j < n and x[j] == x[i]:
            j += 1
        i = j
    return best_i, best_alpha, best_d


def _truncated_loglik(alpha: float, mu: float, log_u: NDArray, u: NDArray) -> float:
    """ln L of ``u ** -alpha exp(-mu u)`` on u >= 1 (u = x / xmin), without the xmin Jacobian."""
    if mu <= 0.0 and alpha <= 1.0:
        return -math.inf
    norm, _ = integrate.quad(lambda v: v**-alpha * math.exp(-mu * (v - 1.0)), 1.0, math.inf)
    if not (norm > 0 and math.isfinite(norm)):
        return -math.inf
    # exp(-mu (u - 1)) keeps the integrand near 1 at the lower bound
    return float(-alpha * log_u.sum() - mu * (u - 1.0).sum() - len(u) * math.log(norm))


def fit_power_law(
    dwells: ArrayLike,
    *,
    xmin: float | None = None,
    min_tail: int = MIN_TAIL,
    truncated: bool = True,
) -> PowerLawFit | None:
    """Clauset-Shalizi-Newman power law of continuous data, with a truncated-law comparison.

    Parameters
    ----------
    dwells
        Positive durations.
    xmin
        Lower bound of the tail; default: chosen by the least Kolmogorov-Smirnov distance.
    min_tail
        Fewest dwells at or above ``xmin``.
    truncated
        Also fit the truncated power law and compare (NaN fields when False).

    Returns
    -------
    PowerLawFit or None
        None when fewer than ``min_tail`` dwells are available.

    Raises
    ------
    ValueError
        If a dwell is not positive and finite, or ``xmin`` is not positive.
    """
    x = np.sort(np.asarray(dwells, dtype=np.float64))
    if x.ndim != 1 or not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError("dwells must be a 1-D array of positive, finite durations")
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2, got {min_tail}")
    if xmin is not None:
        if not xmin > 0:
            raise ValueError(f"xmin must be positive, got {xmin}")
        i = int(np.searchsorted(x, xmin))
        if len(x) - i < min_tail:
            return None
        x_min = float(xmin)
    else:
        if len(x) < min_tail:
            return None
        i, _, _ = _scan_xmin(x, min_tail)
        if i < 0:
            return None
        x_min = float(x[i])
    tail = x[i:]
    m = len(tail)
    log_u = np.log(tail / x_min)
    alpha = 1.0 + m / log_u.sum()
    model = 1.0 - (tail / x_min) ** (1.0 - alpha)
    k = np.arange(m)
    ks = float(np.max(np.maximum(np.abs((k + 1) / m - model), np.abs(k / m - model))))
    u = tail / x_min
    ll_pl = m * math.log(alpha - 1.0) - alpha * log_u.sum()

    t_alpha, t_lambda, ratio, p_value = math.nan, math.nan, math.nan, math.nan
    if truncated:

        def neg(p):
            return -_truncated_loglik(p[0], math.exp(p[1]), log_u, u)

        res = optimize.minimize(neg, [alpha, math.log(0.1 / u.mean())], method="Nelder-Mead")
        ratio = max(-res.fun - ll_pl, 0.0) if math.isfinite(res.fun) else 0.0
        t_alpha, t_lambda = float(res.x[0]), float(math.exp(res.x[1]) / x_min)
        p_value = float(0.5 * stats.chi2.sf(2.0 * ratio, 1)) if ratio > 0 else 1.0
    return PowerLawFit(
        alpha=alpha,
        alpha_stderr=(alpha - 1.0) / math.sqrt(m),
        xmin=x_min,
        n_tail=m,
        n_total=len(x),
        ks_distance=ks,
        truncated_alpha=t_alpha,
        truncated_lambda=t_lambda,
        loglik_ratio=ratio,
        p_value=p_value,
    )


def dwell_times(
    levels: Levels, threshold_cps: float | None = None
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """On and off dwell times of grouped levels (the cut first and last dwells dropped).

    Parameters
    ----------
    levels
        From :func:`find_levels`.
    threshold_cps
        Group intensities above it are *on*; default: midway between the brightest and the
        dimmest group.

    Returns
    -------
    threshold_cps, on_s, off_s

    Raises
    ------
    ValueError
        If ``threshold_cps`` is given and not finite.
    """
    g_int = levels.group_intensity_cps
    if threshold_cps is None:
        threshold_cps = 0.5 * (g_int.max() + g_int.min()) if len(g_int) else math.nan
    elif not math.isfinite(threshold_cps):
        raise ValueError(f"threshold_cps must be finite, got {threshold_cps}")
    if len(levels) == 0:
        return float(threshold_cps), np.zeros(0), np.zeros(0)
    on = g_int[levels.group] > threshold_cps
    # a new dwell starts wherever on/off changes
    first = np.flatnonzero(np.concatenate(([True], on[1:] != on[:-1])))
    dwell = np.add.reduceat(levels.duration_s, first)
    dwell_on = on[first]
    inner = slice(1, len(first) - 1)
    dwell, dwell_on = dwell[inner], dwell_on[inner]
    return float(threshold_cps), dwell[dwell_on], dwell[~dwell_on]


def blinking_statistics(
    levels: Levels, threshold_cps: float | None = None, *, min_tail: int = MIN_TAIL
) -> Blinking:
    """On/off dwells of grouped levels and their power-law fits (see :func:`fit_power_law`).

    Raises
    ------
    ValueError
        If ``threshold_cps`` is given and not finite.
    """
    threshold, on, off = dwell_times(levels, threshold_cps)
    return Blinking(
        threshold_cps=threshold,
        on_s=on,
        off_s=off,
        on=fit_power_law(on, min_tail=min_tail),
        off=fit_power_law(off, min_tail=min_tail),
    )


@dataclass(frozen=True)
class SegmentBlinking:
    """Blinking per time segment (e.g. per bias step).

    Attributes
    ----------
    edges_s
        Segment boundaries (segment i is ``edges_s[i]`` to ``edges_s[i + 1]``).
    time_fraction
        Shape (segments, groups): fraction of each segment's recorded time in each group.
    switching_rate_hz
        On/off switches (changes across the threshold) per second of each segment.
    threshold_cps
        The on/off threshold used.
    """

    edges_s: NDArray[np.float64]
    time_fraction: NDArray[np.float64]
    switching_rate_hz: NDArray[np.float64]
    threshold_cps: float


def segment_blinking(
    levels: Levels, edges_s: ArrayLike, threshold_cps: float | None = None
) -> SegmentBlinking:
    """Group time fractions and on/off switching rate within each time segment.

    Parameters
    ----------
    levels
        From :func:`find_levels`.
    edges_s
        Increasing segment boundaries, seconds since macrotime 0 (e.g. the bias steps).
    threshold_cps
        As for :func:`dwell_times`.

    Returns
    -------
    SegmentBlinking
        A segment outside the recording has NaN fractions and a zero rate.

    Raises
    ------
    ValueError
        If ``edges_s`` has fewer than two values or does not increase.
    """
    edges = np.asarray(edges_s, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError("edges_s must hold at least two increasing times")
    threshold, _, _ = dwell_times(levels, threshold_cps)
    n_groups = len(levels.group_intensity_cps)
    # overlap of every level with every segment
    lo = np.maximum(levels.start_s[:, None], edges[None, :-1])
    hi = np.minimum(levels.end_s[:, None], edges[None, 1:])
    overlap = np.clip(hi - lo, 0.0, None)
    in_group = np.zeros((n_groups, len(levels)))
    in_group[levels.group, np.arange(len(levels))] = 1.0
    per_group = (in_group @ overlap).T
    covered = per_group.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = per_group / covered
    on = levels.group_intensity_cps[levels.group] > threshold
    switches = levels.change_points_s[on[1:] != on[:-1]]
    counts = np.histogram(switches, bins=edges)[0]
    return SegmentBlinking(edges, fraction, counts / np.maximum(covered[:, 0], 1e-300), threshold)
