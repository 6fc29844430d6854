"""Intensity levels between change points, and their grouping into states.

Levels. Between consecutive change points (:mod:`._changepoints`) the rate is constant: a level's
intensity is its photons over its duration, and its lifetime is the FLID's background-aware
maximum-likelihood estimate (:func:`._flid.flid_lifetimes`) on the level's own microtime
histogram, NaN when the level has fewer than ``min_counts`` photons.

Groups (Watkins & Yang 2005). Levels are merged agglomeratively: every level starts as its own
group and, at each step, the two groups whose merger costs the least Poisson log-likelihood
(photons given one rate per group) are merged. Merges are between groups adjacent in intensity,
so each group is an intensity interval (the 1-D form of the clustering). For every number of
groups G the Bayesian information criterion is::

    BIC(G) = 2 ln L(G) - (2 G - 1) ln m,

with m levels and ``ln L(G)`` = the photons' Poisson log-likelihood with one rate per group plus
the levels' assignment log-likelihood (``sum over levels of ln(m_g / m)``): 2 G - 1 free
parameters (G rates, G - 1 group weights). The G with the largest BIC is kept.

Limitation: BIC treats a level's intensity as random given its group, but the change-point search
places cuts where they maximise the contrast, and a level may straddle a blink too short to
resolve. A few such short levels can form a small group of their own (in tests: three levels of a
few ms, under 0.1 % of the time); read groups by their time fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._changepoints import ChangePoints, find_change_points
from ._flid import COARSE_BIN_S, MIN_COUNTS, flid_lifetimes


@dataclass(frozen=True)
class Levels:
    """Levels of a photon stream and their groups.

    Attributes
    ----------
    change_points
        The change points the levels lie between (photon indices, confidence intervals).
    change_points_s
        Time of each change point (its first photon), seconds since macrotime 0.
    start_s, end_s
        Start and end of each level.
    photons
        Photons per level.
    intensity_cps
        Photons over duration.
    lifetime_s, lifetime_stderr_s
        Per-level lifetime and its standard error; NaN for too few photons or without
        microtimes.
    group
        Group of each level (0 = brightest).
    group_intensity_cps, group_lifetime_s, group_lifetime_stderr_s
        Per group, brightest first; a group's lifetime comes from all its levels' photons.
    group_time_fraction, group_num_levels
        Per group: fraction of the recording, and number of levels.
    bic
        BIC(G) for G = 1 .. number of levels.
    """

    change_points: ChangePoints
    change_points_s: NDArray[np.float64]
    start_s: NDArray[np.float64]
    end_s: NDArray[np.float64]
    photons: NDArray[np.int64]
    intensity_cps: NDArray[np.float64]
    lifetime_s: NDArray[np.float64]
    lifetime_stderr_s: NDArray[np.float64]
    group: NDArray[np.int64]
    group_intensity_cps: NDArray[np.float64]
    group_lifetime_s: NDArray[np.float64]
    group_lifetime_stderr_s: NDArray[np.float64]
    group_time_fraction: NDArray[np.float64]
    group_num_levels: NDArray[np.int64]
    bic: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.photons)

    @property
    def duration_s(self) -> NDArray[np.float64]:
        return self.end_s - self.start_s


@numba.njit(cache=True)
def _merge_sequence(counts, durations):
    """Agglomerate intensity-sorted levels; returns the removed boundary per step and ln L(G).

    Groups are runs of the sorted levels; boundary b separates level b - 1 from level b. Step s
    removes ``removed[s]``. ``loglik[G - 1]`` is ln L with G groups: the photons' Poisson
    log-likelihood (without the constant -sum n) plus the levels' assignment log-likelihood.
    """
    m = len(counts)
    n = counts.astype(np.float64).copy()
    t = durations.copy()
    size = np.ones(m)
    # group g starts at sorted level g; the alive groups form a linked list through nxt
    nxt = np.arange(1, m + 1)
    ll = 0.0
    for g in range(m):
        ll += n[g] * math.log(n[g] / t[g]) + math.log(1.0 / m)
    loglik = np.empty(m)
    loglik[m - 1] = ll
    removed = np.empty(max(m - 1, 0), dtype=np.int64)
    for step in range(m - 1):
        best = np.inf
        best_g = -1
        g = 0
        while nxt[g] < m:
            h = nxt[g]
            nn = n[g] + n[h]
            cost = (
                n[g] * math.log(n[g] / t[g])
                + n[h] * math.log(n[h] / t[h])
                - nn * math.log(nn / (t[g] + t[h]))
            )
            if cost < best:
                best = cost
                best_g = g
            g = h
        h = nxt[best_g]
        removed[step] = h
        a, b = size[best_g], size[h]
        assign_gain = (a + b) * math.log((a + b) / m) - a * math.log(a / m) - b * math.log(b / m)
        n[best_g] += n[h]
        t[best_g] += t[h]
        size[best_g] += b
        nxt[best_g] = nxt[h]
        ll += assign_gain - best
        loglik[m - 2 - step] = ll
    return removed, loglik


def group_levels(
    photons: ArrayLike, durations_s: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Group levels by agglomerative clustering with the number of groups chosen by BIC.

    Parameters
    ----------
    photons
        Photons per level (each at least 1).
    durations_s
        Duration of each level (each positive).

    Returns
    -------
    group, bic
        Group of each level (0 = brightest group) and BIC(G) for G = 1 .. number of levels.

    Raises
    ------
    ValueError
        If the arrays differ in length, a level has no photon or a non-positive duration.
    """
    counts = np.asarray(photons, dtype=np.int64)
    durations = np.asarray(durations_s, dtype=np.float64)
    if counts.shape != durations.shape or counts.ndim != 1:
        raise ValueError(f"photons {counts.shape} and durations {durations.shape} differ")
    m = len(counts)
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if np.any(counts < 1) or not np.all(durations > 0):
        raise ValueError("every level needs at least one photon and a positive duration")
    order = np.argsort(counts / durations, kind="stable")
    removed, loglik = _merge_sequence(counts[order], durations[order])
    n_groups = np.arange(1, m + 1)
    bic = 2.0 * loglik - (2 * n_groups - 1) * math.log(m)
    best = int(np.argmax(bic)) + 1
    bounds = np.setdiff1d(np.arange(1, m), removed[: m - best])
    sorted_group = np.searchsorted(bounds, np.arange(m), side="right")
    # brightest first
    group = np.empty(m, dtype=np.int64)
    group[order] = best - 1 - sorted_group
    return group, bic


def grouped_levels(
    start_s: ArrayLike,
    end_s: ArrayLike,
    photons: ArrayLike,
    *,
    min_duration_s: float = 0.0,
    confidence: float = math.nan,
) -> Levels:
    """Contiguous levels (each ends where the next starts) grouped by intensity (BIC).

    For levels found elsewhere (the live analyzer's, a derived run's ``levels`` stream): the
    change points are the levels' ends but the last, and lifetimes are NaN (the blinking
    statistics need intensities and times only).

    Parameters
    ----------
    start_s, end_s, photons
        Per level, in time order.
    min_duration_s
        A level lasts at least this (one tick: photons sharing one tick).
    confidence
        Of the change-point test that found the levels (recorded only).

    Raises
    ------
    ValueError
        If the arrays differ in length, are empty, or a level has no photon or no duration.
    """
    start = np.asarray(start_s, dtype=np.float64)
    end = np.asarray(end_s, dtype=np.float64)
    counts = np.asarray(photons, dtype=np.int64)
    if not (start.shape == end.shape == counts.shape) or start.ndim != 1 or not len(start):
        raise ValueError("start_s, end_s and photons must be equal-length, non-empty 1-D arrays")
    duration = np.maximum(end - start, min_duration_s)
    group, bic = group_levels(counts, duration)
    n_groups = int(group.max()) + 1
    g_time = np.bincount(group, duration, n_groups)
    cp_s = end[:-1]
    nan_levels, nan_groups = np.full(len(counts), np.nan), np.full(n_groups, np.nan)
    return Levels(
        change_points=ChangePoints(np.cumsum(counts)[:-1], cp_s, cp_s, cp_s, confidence),
        change_points_s=cp_s,
        start_s=start,
        end_s=end,
        photons=counts,
        intensity_cps=counts / duration,
        lifetime_s=nan_levels,
        lifetime_stderr_s=nan_levels,
        group=group,
        group_intensity_cps=np.bincount(group, counts, n_groups) / g_time,
        group_lifetime_s=nan_groups,
        group_lifetime_stderr_s=nan_groups,
        group_time_fraction=g_time / g_time.sum(),
        group_num_levels=np.bincount(group, minlength=n_groups).astype(np.int64),
        bic=bic,
    )


def find_levels(
    macrotime: ArrayLike,
    macrotime_unit_s: float,
    *,
    confidence: float = 0.95,
    microtime: ArrayLike | None = None,
    microtime_unit_s: float | None = None,
    period_s: float | None = None,
    decay_start_s: float = 0.0,
    background_cps: float = 0.0,
    irf_fwhm_s: float = 0.0,
    min_counts: int = MIN_COUNTS,
) -> Levels:
    """Change points, levels and groups of a photon stream (all detectors merged).

    Parameters
    ----------
    macrotime
        Arrival times in ticks, non-decreasing.
    macrotime_unit_s
        Duration of one tick.
    confidence
        Of the change-point test (0.69, 0.90, 0.95 or 0.99).
    microtime, microtime_unit_s, period_s
        T3 microtimes, their bin and the laser period; without them lifetimes are NaN.
    decay_start_s, background_cps, irf_fwhm_s
        As for :func:`flid_lifetimes` (from a whole-decay fit); the background is a rate, so a
        level of duration d expects ``background_cps * d`` background photons.
    min_counts
        Levels and groups with fewer photons get a NaN lifetime.

    Returns
    -------
    Levels

    Raises
    ------
    ValueError
        For a bad confidence, unsorted times, or microtimes of another length than macrotimes.
    """
    if not (math.isfinite(macrotime_unit_s) and macrotime_unit_s > 0):
        raise ValueError(f"macrotime_unit_s must be positive, got {macrotime_unit_s}")
    ticks = np.ascontiguousarray(macrotime, dtype=np.int64)
    cps = find_change_points(ticks, confidence)
    n = len(ticks)
    if n < 2:
        raise ValueError(f"levels need at least two photons, got {n}")
    # level i ends with photon edges[i + 1] (a change point closes its old level)
    edges = np.concatenate(([0], cps.index, [n - 1]))
    photons = np.diff(edges)
    photons[0] += 1  # the first level also holds the first photon
    start = ticks[edges[:-1]] * macrotime_unit_s
    end = ticks[edges[1:]] * macrotime_unit_s
    # photons sharing one tick: a level lasts at least one tick
    durations = np.maximum(end - start, macrotime_unit_s)
    group, bic = group_levels(photons, durations)
    n_groups = int(group.max()) + 1
    g_photons = np.bincount(group, photons, n_groups)
    g_time = np.bincount(group, durations, n_groups)
    tau = tau_err = np.full(len(photons), np.nan)
    g_tau = g_tau_err = np.full(n_groups, np.nan)
    if microtime is not None:
        micro = np.asarray(microtime)
        if micro.shape != ticks.shape:
            raise ValueError(f"microtime {micro.shape} and macrotime {ticks.shape} differ")
        if microtime_unit_s is None or period_s is None:
            raise ValueError("lifetimes need microtime_unit_s and period_s")
        hist, coarse_bin_s = level_histograms(photons, micro, microtime_unit_s, period_s)
        fit = dict(
            coarse_bin_s=coarse_bin_s,
            period_s=period_s,
            decay_start_s=decay_start_s,
            min_counts=min_counts,
            irf_fwhm_s=irf_fwhm_s,
        )
        tau, tau_err = flid_lifetimes(hist, background_counts=background_cps * durations, **fit)
        g_hist = np.zeros((n_groups, hist.shape[1]), dtype=np.uint32)
        np.add.at(g_hist, group, hist)
        g_tau, g_tau_err = flid_lifetimes(g_hist, background_counts=background_cps * g_time, **fit)
    return Levels(
        change_points=cps,
        change_points_s=cps.time * macrotime_unit_s,
        start_s=start,
        end_s=end,
        photons=photons.astype(np.int64),
        intensity_cps=photons / durations,
        lifetime_s=tau,
        lifetime_stderr_s=tau_err,
        group=group,
        group_intensity_cps=g_photons / g_time,
        group_lifetime_s=g_tau,
        group_lifetime_stderr_s=g_tau_err,
        group_time_fraction=g_time / g_time.sum(),
        group_num_levels=np.bincount(group, minlength=n_groups).astype(np.int64),
        bic=bic,
    )


def level_histograms(
    photons: NDArray[np.int64], microtime: NDArray, microtime_unit_s: float, period_s: float
) -> tuple[NDArray[np.uint32], float]:
    """Coarse microtime histogram of each level (the FLID's coarse bins) and the bins' width.

    Level i holds the next ``photons[i]`` microtimes (the levels tile ``microtime`` in order);
    give the result to :func:`flid_lifetimes` with the returned ``coarse_bin_s``.
    """
    factor = max(1, round(COARSE_BIN_S / microtime_unit_s))
    n_coarse = math.ceil(period_s / (factor * microtime_unit_s) - 1e-9)
    coarse = microtime.astype(np.int64) // factor
    level = np.repeat(np.arange(len(photons)), photons)
    keep = coarse < n_coarse  # microtimes beyond the period are not part of the decay
    flat = np.bincount(
        level[keep] * n_coarse + coarse[keep], minlength=len(photons) * n_coarse
    ).astype(np.uint32)
    return flat.reshape(len(photons), n_coarse), factor * microtime_unit_s
