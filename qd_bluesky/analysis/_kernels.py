"""Numba kernels behind the streaming accumulators.

Every kernel works on plain arrays and adds one chunk of photons to state owned by the caller,
so that feeding a stream in any number of chunks gives exactly the one-shot result. A photon's
bin depends on that photon alone (and on the absolute alignment ``t0``), never on where a chunk
starts. Kernels that write into a growing array stop at the first photon that does not fit and
return its index: the caller grows the array and calls again from there (amortised growth, one
pass over the data).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---------------------------------------------------------------------------------------------
# input checks


@njit(cache=True, nogil=True)
def first_decrease(macrotime):
    """Index of the first photon whose macrotime is below its predecessor's, or -1."""
    for i in range(1, macrotime.shape[0]):
        if macrotime[i] < macrotime[i - 1]:
            return i
    return -1


@njit(cache=True, nogil=True)
def max_value(values):
    """Largest value of a non-empty integer array (one pass, no temporaries)."""
    m = values[0]
    for i in range(1, values.shape[0]):
        if values[i] > m:
            m = values[i]
    return m


# ---------------------------------------------------------------------------------------------
# intensity trace and decay histogram


@njit(cache=True, nogil=True)
def trace_accumulate(macrotime, channel, t0, ticks_per_bin, counts, start):
    """Add photons ``start:`` to ``counts[time bin, channel]``.

    The time bin of a photon is ``floor((macrotime - t0) / ticks_per_bin)``. Photons before
    ``t0`` are skipped and counted.

    Returns
    -------
    stop : int
        Index of the first photon whose bin lies beyond ``counts`` (``len(macrotime)`` when all
        fitted).
    early : int
        Photons skipped because they came before ``t0``.
    top : int
        Highest bin written (-1 if none).
    """
    n_bins = counts.shape[0]
    early = 0
    top = -1
    for i in range(start, macrotime.shape[0]):
        d = macrotime[i] - t0
        if d < 0:
            early += 1
            continue
        b = np.int64(d / ticks_per_bin)
        if b >= n_bins:
            return i, early, top
        top = max(top, b)
        counts[b, channel[i]] += 1
    return macrotime.shape[0], early, top


@njit(cache=True, nogil=True)
def decay_accumulate(microtime, channel, counts):
    """Add photons to ``counts[channel, microtime]``; returns the number out of range."""
    n_bins = counts.shape[1]
    overflow = 0
    for i in range(microtime.shape[0]):
        u = microtime[i]
        if u < n_bins:
            counts[channel[i], u] += 1
        else:
            overflow += 1
    return overflow


# ---------------------------------------------------------------------------------------------
# FLID: per time bin, a photon count and a coarse microtime histogram


@njit(cache=True, nogil=True)
def flid_accumulate(macrotime, microtime, t0, ticks_per_bin, coarse_of, counts, hist, start):
    """Add photons ``start:`` to ``counts[time bin]`` and ``hist[time bin, coarse_of[microtime]]``.

    ``coarse_of`` maps a microtime bin to its coarse bin (a lookup beats an integer division).

    Returns
    -------
    stop : int
        As in :func:`trace_accumulate`.
    early : int
        Photons before ``t0`` (skipped).
    overflow : int
        Photons counted in ``counts`` whose microtime lies beyond ``coarse_of``.
    top : int
        Highest bin written (-1 if none).
    """
    n_bins = hist.shape[0]
    n_micro = coarse_of.shape[0]
    early = 0
    overflow = 0
    top = -1
    for i in range(start, macrotime.shape[0]):
        d = macrotime[i] - t0
        if d < 0:
            early += 1
            continue
        b = np.int64(d / ticks_per_bin)
        if b >= n_bins:
            return i, early, overflow, top
        top = max(top, b)
        counts[b] += 1
        u = microtime[i]
        if u < n_micro:
            hist[b, coarse_of[u]] += 1
        else:
            overflow += 1
    return macrotime.shape[0], early, overflow, top


@njit(cache=True, nogil=True)
def _flid_score(theta, n, edges, width_frac, period, sigma2, b, n_total):
    """Score dL/dtheta and Fisher information of the binned FLID likelihood at tau = e**theta.

    Cell 0 is the start region around the decay start; its probability is 1 minus the others.
    Cells 1.. lie between ``edges[c]`` and ``edges[c + 1]`` (delay from the decay start, seconds)
    where the signal density is ``K * exp(-s/tau) / (tau * (1 - exp(-P/tau)))``, with
    ``K = exp(sigma2 / (2 tau**2))`` the excess a Gaussian IRF pushes out of the start region.
    ``width_frac`` is each cell's width over the period (its share of a flat background).
    """
    inv_tau = math.exp(-theta)
    one_m_r = -math.expm1(-period * inv_tau)
    q = 1.0 / one_m_r
    dq = period * inv_tau * (1.0 - one_m_r) * q * q
    k = math.exp(0.5 * sigma2 * inv_tau * inv_tau)
    dk = -sigma2 * inv_tau * inv_tau * k
    # p = a * D + b * width_frac, dp = (a * dD + a2 * D) with D = e_lo - e_hi, dD its derivative
    a = (1.0 - b) * k * q
    a2 = (1.0 - b) * (dk * q + k * dq)
    score = 0.0
    info = 0.0
    p_sum = 0.0
    dp_sum = 0.0
    x_lo = edges[1] * inv_tau
    e_lo = math.exp(-x_lo)
    for c in range(1, n.shape[0]):
        x_hi = edges[c + 1] * inv_tau
        e_hi = math.exp(-x_hi)
        d = e_lo - e_hi
        p = a * d + b * width_frac[c]
        dp = a * (x_lo * e_lo - x_hi * e_hi) + a2 * d
        p_sum += p
        dp_sum += dp
        if p > 0.0:
            w = dp / p
            score += n[c] * w
            info += dp * w
        elif n[c] > 0.0:
            # photons where a tau this short predicts none (underflow): tau must grow
            return math.inf, 0.0
        e_lo = e_hi
        x_lo = x_hi
    p0 = 1.0 - p_sum
    if p0 > 0.0:
        w = dp_sum / p0
        score -= n[0] * w
        info += dp_sum * w
    elif n[0] > 0.0:
        # only when K * exp(-guard/tau) > 1, i.e. tau far below the IRF width
        return math.inf, 0.0
    return score, info * n_total


@njit(cache=True, nogil=True)
def flid_solve(
    hist,
    first_column,
    n_used,
    cell_start,
    edges,
    period,
    sigma2,
    bg_counts,
    min_counts,
    tau_lo,
    tau_hi,
    tau,
    stderr,
):
    """Maximum-likelihood lifetime of every time bin (row of ``hist``); see ``_flid.py``.

    The columns ``0:n_used`` of ``hist`` are read in rotated order from ``first_column``; cell
    c sums rotated columns ``cell_start[c]:cell_start[c + 1]``. The root of
    the score in theta = log(tau) is searched in [log tau_lo, log tau_hi] by Newton steps with
    the Fisher information as slope, falling back to bisection whenever a step would leave the
    bracket narrowed so far. A search that ends on the bracket's edge (the decay is shorter than
    the start cell or indistinguishable from flat) gives NaN, as does a bin with fewer than
    ``min_counts`` photons or with at least as much expected background as photons.
    """
    n_cells = edges.shape[0] - 1
    n = np.zeros(n_cells)
    width_frac = (edges[1:] - edges[:-1]) / period
    centres = 0.5 * (edges[:-1] + edges[1:])
    centres[0] = 0.0
    th_min = math.log(tau_lo)
    th_max = math.log(tau_hi)
    for t in range(hist.shape[0]):
        tau[t] = np.nan
        stderr[t] = np.nan
        total = 0.0
        first = 0.0
        row = hist[t]
        for c in range(n_cells):
            # columns first + k (mod n_used) for k in the cell: at most two contiguous runs
            k0 = first_column + cell_start[c]
            k1 = first_column + cell_start[c + 1]
            acc = 0
            for j in range(k0, min(k1, n_used)):
                acc += row[j]
            for j in range(max(k0, n_used) - n_used, k1 - n_used):
                acc += row[j]
            n[c] = acc
            total += acc
            first += acc * centres[c]
        if total < min_counts or total <= 0.0:
            continue
        b = max(bg_counts[t] / total, 0.0)
        if b >= 1.0:
            continue
        # Start: the truncated-exponential moment equation, mean = tau - P / (e^(P/tau) - 1),
        # on the background-corrected mean delay (a few fixed-point steps).
        mean = max((first / total - 0.5 * b * period) / (1.0 - b), tau_lo)
        guess = mean
        for _ in range(4):
            guess = mean + period / math.expm1(min(period / guess, 700.0))
        theta = math.log(min(max(guess, 1.01 * tau_lo), 0.99 * tau_hi))
        lo = th_min
        hi = th_max
        info = 0.0
        for _ in range(200):
            g, info = _flid_score(theta, n, edges, width_frac, period, sigma2, b, total)
            if g > 0.0:
                lo = theta
            else:
                hi = theta
            new = theta + g / info if info > 0.0 else 0.5 * (lo + hi)
            if not (lo < new < hi):
                new = 0.5 * (lo + hi)
            step = abs(new - theta)
            theta = new
            if step < 1e-9 or hi - lo < 1e-9:
                break
        if theta - th_min < 1e-6 or th_max - theta < 1e-6:
            continue
        tau[t] = math.exp(theta)
        if info > 0.0:
            stderr[t] = tau[t] / math.sqrt(info)


# ---------------------------------------------------------------------------------------------
# pulsed g2


@njit(cache=True, nogil=True)
def g2_accumulate(
    macrotime,
    microtime,
    channel,
    start,
    channel_a,
    channel_b,
    window_ticks,
    tick_s,
    micro_s,
    period_s,
    n_peaks,
    bins_per_period,
    peaks,
    hist,
):
    """Add the a-b coincidences of photons ``start:`` with all photons before them.

    Two-pointer sweep over photons in time order: for each new photon j of channel a or b, the
    earlier photons within ``window_ticks`` macrotime ticks of it are visited once. The delay is
    t_b - t_a = (m_b - m_a) * tick_s + (u_b - u_a) * micro_s; peak k counts delays in
    [kT - T/2, kT + T/2) for |k| <= n_peaks, and ``hist`` splits each peak window into
    ``bins_per_period`` equal bins (both from the same float, so a peak is exactly the sum of
    its bins). Cost: O(photons x photons within the window).
    """
    n_windows = 2 * n_peaks + 1
    lo = 0
    for j in range(start, macrotime.shape[0]):
        cj = channel[j]
        if cj != channel_a and cj != channel_b:
            continue
        mj = macrotime[j]
        while macrotime[lo] < mj - window_ticks:
            lo += 1
        uj = np.int64(microtime[j])
        for i in range(lo, j):
            ci = channel[i]
            if ci == cj or (ci != channel_a and ci != channel_b):
                continue
            dm = mj - macrotime[i]
            du = uj - np.int64(microtime[i])
            delay = dm * tick_s + du * micro_s
            if cj == channel_a:
                delay = -delay
            # x in [0, 2n+1) for delays in [-(n + 1/2) T, (n + 1/2) T)
            x = delay / period_s + (n_peaks + 0.5)
            w = math.floor(x)
            if 0 <= w < n_windows:
                peaks[w] += 1
                b = np.int64((x - w) * bins_per_period)
                hist[w * bins_per_period + min(b, bins_per_period - 1)] += 1
