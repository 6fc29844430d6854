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


@njit(cache=True, nogil=True)
def channel_set(channel):
    """The distinct values of a uint8 array, ascending (a store per photon, no sort)."""
    seen = np.zeros(256, dtype=np.bool_)
    for i in range(channel.shape[0]):
        seen[channel[i]] = True
    return np.flatnonzero(seen)


@njit(cache=True, nogil=True)
def bin_span(b, ticks_per_bin):
    """Delays ``[lo, hi)`` (ticks) whose bin ``int64(d / ticks_per_bin)`` is ``b``.

    The same float expression as the per-photon division, so a photon inside the span is in
    bin ``b`` bit for bit; the photons of one bin then need no division.
    """
    lo = np.int64(math.ceil(b * ticks_per_bin))
    while lo > 0 and np.int64((lo - 1) / ticks_per_bin) >= b:
        lo -= 1
    while np.int64(lo / ticks_per_bin) < b:
        lo += 1
    hi = np.int64(math.ceil((b + 1) * ticks_per_bin))
    while hi > lo and np.int64((hi - 1) / ticks_per_bin) > b:
        hi -= 1
    while np.int64(hi / ticks_per_bin) <= b:
        hi += 1
    return lo, hi


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
    b, lo, hi = np.int64(0), np.int64(0), np.int64(-1)
    for i in range(start, macrotime.shape[0]):
        d = macrotime[i] - t0
        if d < 0:
            early += 1
            continue
        if d < lo or d >= hi:
            b = np.int64(d / ticks_per_bin)
            lo, hi = bin_span(b, ticks_per_bin)
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
    b, lo, hi = np.int64(0), np.int64(0), np.int64(-1)
    for i in range(start, macrotime.shape[0]):
        d = macrotime[i] - t0
        if d < 0:
            early += 1
            continue
        if d < lo or d >= hi:
            b = np.int64(d / ticks_per_bin)
            lo, hi = bin_span(b, ticks_per_bin)
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


# ---------------------------------------------------------------------------------------------
# one pass over a chunk feeding the trace, decay, FLID and g2 at once

#: Photons per block of :func:`sorted_accumulate` (~700 kB of photon columns: in L2 cache).
BLOCK = 1 << 16
#: Slots of the ``status`` array of :func:`stream_accumulate`.
ST_TRACE_EARLY, ST_FLID_EARLY, ST_DECAY_OVERFLOW, ST_FLID_OVERFLOW = 0, 1, 2, 3
ST_TRACE_TOP, ST_FLID_TOP, ST_BAD_ORDER, ST_BAD_CHANNEL = 4, 5, 6, 7
N_STATUS = 8


@njit(cache=True, nogil=True)
def first_at_or_after(values, stop, x):
    """First index ``i < stop`` with ``values[i] >= x`` in sorted ``values`` (``stop`` if none)."""
    lo = 0
    hi = stop
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _g2_pair(dm, du, j_is_a, tick_s, micro_s, period_s, n_peaks, bins_per_period, peaks, hist):
    """Count one a-b coincidence (as in :func:`g2_accumulate`, the same float expressions)."""
    delay = dm * tick_s + du * micro_s
    if j_is_a:
        delay = -delay
    x = delay / period_s + (n_peaks + 0.5)
    w = math.floor(x)
    if 0 <= w < 2 * n_peaks + 1:
        peaks[w] += 1
        b = np.int64((x - w) * bins_per_period)
        hist[w * bins_per_period + min(b, bins_per_period - 1)] += 1


@njit(cache=True, nogil=True)
def stream_accumulate(
    macrotime,
    microtime,
    channel,
    start,
    stop,
    trace_t0,
    trace_tpb,
    trace_counts,
    trace_offset,
    decay_counts,
    flid_t0,
    flid_tpb,
    coarse_of,
    flid_counts,
    flid_hist,
    flid_offset,
    channel_a,
    channel_b,
    window_ticks,
    tick_s,
    micro_s,
    period_s,
    n_peaks,
    bins_per_period,
    peaks,
    g2_hist,
    tail_m,
    tail_u,
    tail_c,
    channel_counts,
    status,
):
    """Add photons ``start:stop`` to every accumulator of a stream in one pass.

    The same sums as :func:`trace_accumulate` (``trace_tpb > 0``), :func:`decay_accumulate`
    (``decay_counts`` with columns), :func:`flid_accumulate` (``flid_tpb > 0``) and
    :func:`g2_accumulate` (``channel_a >= 0``; ``tail_*`` are the earlier photons a and b
    within ``window_ticks`` of the chunk's start), and adds the photons on channels a and b
    to ``channel_counts``. Time bins are
    found without a division for all but a bin's first photon (:func:`bin_span`). Trace and
    FLID rows are ``bin - offset`` (a worker filling a later stretch of the stream).

    ``status`` (int64, :data:`N_STATUS`) accumulates the early and overflow counts, keeps the
    highest rows written, and gets the index of the first photon out of time order (with g2)
    or on a channel beyond the arrays (-1 if none; the pass stops there).

    Returns
    -------
    int
        Index of the first photon not added: ``stop``, or one whose trace or FLID row lies
        beyond its array (grow it and call again from there) or that ``status`` names.
    """
    do_trace = trace_tpb > 0.0
    do_decay = decay_counts.shape[1] > 0
    do_flid = flid_tpb > 0.0
    do_g2 = channel_a >= 0
    n_ch = channel_counts.shape[0]
    if do_trace:
        n_ch = min(n_ch, trace_counts.shape[1])
    if do_decay:
        n_ch = min(n_ch, decay_counts.shape[0])
    n_micro = decay_counts.shape[1]
    n_coarse_of = coarse_of.shape[0]
    t_rows = trace_counts.shape[0]
    f_rows = flid_hist.shape[0]
    # bins of the previous photon and their spans (empty: the first photon computes them)
    tb, t_lo, t_hi = np.int64(0), np.int64(0), np.int64(-1)
    fb, f_lo, f_hi = np.int64(0), np.int64(0), np.int64(-1)
    n_tail = tail_m.shape[0]
    t_early = f_early = d_over = f_over = np.int64(0)
    # Photons of the current trace row on channels 0 and 1, and of the current FLID row, are
    # counted in registers and written when the row changes: incrementing one memory cell
    # photon after photon would chain every photon to the previous one's store.
    # (branch-free where the channel is random: run_all, run1 and run_other give channel 0)
    run_all = run1 = run_other = run_f = np.int64(0)
    row_t = row_f = np.int64(-1)
    n_a = n_b = np.int64(0)
    t_top = status[ST_TRACE_TOP]
    f_top = status[ST_FLID_TOP]
    end = stop
    lo = 0
    if do_g2 and start > 0:
        lo = first_at_or_after(macrotime, start, macrotime[start] - window_ticks)
    for i in range(start, stop):
        c = channel[i]
        if c >= n_ch:
            status[ST_BAD_CHANNEL] = i
            end = i
            break
        mi = macrotime[i]
        if do_g2 and i > 0 and mi < macrotime[i - 1]:
            status[ST_BAD_ORDER] = i
            end = i
            break
        d_t = mi - trace_t0
        d_f = mi - flid_t0
        if do_trace and d_t >= 0 and (d_t < t_lo or d_t >= t_hi):
            tb = np.int64(d_t / trace_tpb)
            t_lo, t_hi = bin_span(tb, trace_tpb)
            new_row = tb - trace_offset
            if new_row < 0:  # a worker's stretch out of time order
                status[ST_BAD_ORDER] = i
            if new_row < 0 or new_row >= t_rows:
                t_lo, t_hi = np.int64(0), np.int64(-1)
                end = i
                break
            if row_t >= 0:
                trace_counts[row_t, 0] += run_all - run1 - run_other
                if n_ch > 1:
                    trace_counts[row_t, 1] += run1
            run_all = run1 = run_other = 0
            row_t = new_row
            t_top = max(t_top, row_t)
        if do_flid and d_f >= 0 and (d_f < f_lo or d_f >= f_hi):
            fb = np.int64(d_f / flid_tpb)
            f_lo, f_hi = bin_span(fb, flid_tpb)
            new_row = fb - flid_offset
            if new_row < 0:
                status[ST_BAD_ORDER] = i
            if new_row < 0 or new_row >= f_rows:
                end = i
                break
            if row_f >= 0:
                flid_counts[row_f] += run_f
            run_f = 0
            row_f = new_row
            f_top = max(f_top, row_f)
        # the photon is taken from here on
        n_a += c == channel_a
        n_b += c == channel_b
        u = microtime[i]
        if do_trace:
            if d_t < 0:
                t_early += 1
            else:
                run_all += 1
                run1 += c == 1
                if c > 1:
                    run_other += 1
                    trace_counts[row_t, c] += 1
        if do_flid:
            if d_f < 0:
                f_early += 1
            else:
                run_f += 1
                if u < n_coarse_of:
                    flid_hist[row_f, coarse_of[u]] += 1
                else:
                    f_over += 1
        if do_decay:
            if u < n_micro:
                decay_counts[c, u] += 1
            else:
                d_over += 1
        if do_g2 and (c == channel_a or c == channel_b):
            edge = mi - window_ticks
            if i == 0 or macrotime[i - 1] < edge:
                lo = i  # no earlier photon of the chunk is close enough (the common case)
            else:
                while macrotime[lo] < edge:
                    lo += 1
            uj = np.int64(u)
            j_is_a = c == channel_a
            for k in range(lo, i):
                ck = channel[k]
                if ck == c or (ck != channel_a and ck != channel_b):
                    continue
                _g2_pair(
                    mi - macrotime[k],
                    uj - np.int64(microtime[k]),
                    j_is_a,
                    tick_s,
                    micro_s,
                    period_s,
                    n_peaks,
                    bins_per_period,
                    peaks,
                    g2_hist,
                )
            if lo == 0:
                k = n_tail - 1
                while k >= 0 and tail_m[k] >= edge:
                    if tail_c[k] != c:
                        _g2_pair(
                            mi - tail_m[k],
                            uj - np.int64(tail_u[k]),
                            j_is_a,
                            tick_s,
                            micro_s,
                            period_s,
                            n_peaks,
                            bins_per_period,
                            peaks,
                            g2_hist,
                        )
                    k -= 1
    if row_t >= 0:
        trace_counts[row_t, 0] += run_all - run1 - run_other
        if n_ch > 1:
            trace_counts[row_t, 1] += run1
    if row_f >= 0:
        flid_counts[row_f] += run_f
    if channel_a >= 0:
        channel_counts[channel_a] += n_a
    if channel_b >= 0:
        channel_counts[channel_b] += n_b
    status[ST_TRACE_EARLY] += t_early
    status[ST_FLID_EARLY] += f_early
    status[ST_DECAY_OVERFLOW] += d_over
    status[ST_FLID_OVERFLOW] += f_over
    status[ST_TRACE_TOP] = t_top
    status[ST_FLID_TOP] = f_top
    return end


@njit(cache=True, nogil=True)
def _first_from(values, lo, stop, x):
    """First index in ``lo:stop`` with ``values[i] >= x`` in sorted ``values`` (galloping from
    ``lo``, so cheap when it is near)."""
    step = 1
    hi = lo
    while hi < stop and values[hi] < x:
        lo = hi + 1
        hi = min(hi + step, stop)
        step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _binned_limit(macrotime, start, stop, t0, tpb, rows, offset):
    """First photon of ``start:stop`` (in time order) whose row ``bin - offset`` is ``rows``
    or more, and the first one at or after ``t0``."""
    first = _first_from(macrotime, start, stop, t0)
    lo, _ = bin_span(np.int64(rows + offset), tpb)
    return first, _first_from(macrotime, first, stop, t0 + lo)


@njit(cache=True, nogil=True)
def sorted_accumulate(
    macrotime,
    microtime,
    channel,
    start,
    stop,
    trace_t0,
    trace_tpb,
    trace_counts,
    trace_offset,
    decay_counts,
    flid_t0,
    flid_tpb,
    coarse_of,
    flid_counts,
    flid_hist,
    flid_offset,
    channel_a,
    channel_b,
    window_ticks,
    tick_s,
    micro_s,
    period_s,
    n_peaks,
    bins_per_period,
    peaks,
    g2_hist,
    tail_m,
    tail_u,
    tail_c,
    channel_counts,
    status,
):
    """:func:`stream_accumulate` for photons in time order, stage by stage over blocks.

    With the photons sorted, a time bin is a run of photons found by a galloping search, so the
    trace and FLID counts are run lengths and sums, the microtime histograms tight scatter
    loops, and g2 visits only photons with a predecessor within the window (a branch-free
    pre-pass lists them). The stages run over blocks of :data:`BLOCK` photons, which stay in
    the core's cache between them. A block out of time order, or with a channel beyond the
    arrays, is passed to :func:`stream_accumulate` (which reports it).
    """
    for b0 in range(start, stop, BLOCK):
        b1 = min(b0 + BLOCK, stop)
        n_ch = channel_counts.shape[0]
        if trace_tpb > 0.0:
            n_ch = min(n_ch, trace_counts.shape[1])
        if decay_counts.shape[1] > 0:
            n_ch = min(n_ch, decay_counts.shape[0])
        # (loops run over slices from 0: an index numba cannot prove non-negative costs a
        # wrap-around test per access and stops LLVM from vectorising)
        ms = macrotime[b0:b1]
        prev = macrotime[max(b0 - 1, 0)]
        bad = 0
        for i in range(ms.shape[0]):
            x = ms[i]
            bad += x < prev
            prev = x
        cs = channel[b0:b1]
        top_c = np.uint8(0)
        for i in range(cs.shape[0]):
            top_c = max(top_c, cs[i])
        if bad > 0 or top_c >= n_ch:
            end = stream_accumulate(
                macrotime, microtime, channel, b0, b1, trace_t0, trace_tpb, trace_counts,
                trace_offset, decay_counts, flid_t0, flid_tpb, coarse_of, flid_counts, flid_hist,
                flid_offset, channel_a, channel_b, window_ticks, tick_s, micro_s, period_s, n_peaks,
                bins_per_period, peaks, g2_hist, tail_m, tail_u, tail_c, channel_counts, status,
            )  # fmt: skip
            if end < b1:
                return end
            continue
        end = b1
        t_first = f_first = b1
        if trace_tpb > 0.0:
            t_first, lim = _binned_limit(
                macrotime, b0, b1, trace_t0, trace_tpb, trace_counts.shape[0], trace_offset
            )
            end = min(end, lim)
        if flid_tpb > 0.0:
            f_first, lim = _binned_limit(
                macrotime, b0, b1, flid_t0, flid_tpb, flid_hist.shape[0], flid_offset
            )
            end = min(end, lim)
        # photons before t0 (a prefix, in time order)
        if trace_tpb > 0.0:
            status[ST_TRACE_EARLY] += min(t_first, end) - b0
            i = min(t_first, end)
            while i < end:
                b = np.int64((macrotime[i] - trace_t0) / trace_tpb)
                _, hi = bin_span(b, trace_tpb)
                j = _first_from(macrotime, i + 1, end, trace_t0 + hi)
                row = b - trace_offset
                if row < 0:
                    status[ST_BAD_ORDER] = i
                    return i
                if row >= trace_counts.shape[0]:
                    return i
                cs = channel[i:j]
                ones = 0
                for q in range(cs.shape[0]):
                    ones += cs[q] == 1
                trace_counts[row, 0] += (j - i) - ones
                if trace_counts.shape[1] > 1:
                    trace_counts[row, 1] += ones
                if top_c > 1:
                    for q in range(cs.shape[0]):  # channels beyond 1: move them from channel 0
                        cq = cs[q]
                        if cq > 1:
                            trace_counts[row, 0] -= 1
                            trace_counts[row, cq] += 1
                status[ST_TRACE_TOP] = max(status[ST_TRACE_TOP], row)
                i = j
        if flid_tpb > 0.0:
            status[ST_FLID_EARLY] += min(f_first, end) - b0
            n_coarse_of = coarse_of.shape[0]
            over = 0
            i = min(f_first, end)
            while i < end:
                b = np.int64((macrotime[i] - flid_t0) / flid_tpb)
                _, hi = bin_span(b, flid_tpb)
                j = _first_from(macrotime, i + 1, end, flid_t0 + hi)
                row = b - flid_offset
                if row < 0:
                    status[ST_BAD_ORDER] = i
                    return i
                if row >= flid_hist.shape[0]:
                    return i
                flid_counts[row] += j - i
                h = flid_hist[row]
                us = microtime[i:j]
                for q in range(us.shape[0]):
                    uq = us[q]
                    if uq < n_coarse_of:
                        h[coarse_of[uq]] += 1
                    else:
                        over += 1
                status[ST_FLID_TOP] = max(status[ST_FLID_TOP], row)
                i = j
            status[ST_FLID_OVERFLOW] += over
        if decay_counts.shape[1] > 0:
            n_micro = decay_counts.shape[1]
            over = 0
            us = microtime[b0:end]
            cs = channel[b0:end]
            for i in range(us.shape[0]):
                ui = us[i]
                if ui < n_micro:
                    decay_counts[cs[i], ui] += 1
                else:
                    over += 1
            status[ST_DECAY_OVERFLOW] += over
        if channel_a >= 0:
            n_a = n_b = 0
            cs = channel[b0:end]
            for i in range(cs.shape[0]):
                n_a += cs[i] == channel_a
                n_b += cs[i] == channel_b
            channel_counts[channel_a] += n_a
            channel_counts[channel_b] += n_b
            _g2_sorted(
                macrotime, microtime, channel, b0, end, channel_a, channel_b, window_ticks,
                tick_s, micro_s, period_s, n_peaks, bins_per_period, peaks, g2_hist, tail_m,
                tail_u, tail_c,
            )  # fmt: skip
        if end < b1:
            return end
    return stop


@njit(cache=True, nogil=True)
def _g2_sorted(
    macrotime, microtime, channel, start, end, channel_a, channel_b, window_ticks, tick_s,
    micro_s, period_s, n_peaks, bins_per_period, peaks, g2_hist, tail_m, tail_u, tail_c,
):  # fmt: skip
    """The g2 pairs of photons ``start:end`` (in time order) with all earlier photons."""
    block = 4096
    near = np.empty(block, dtype=np.int64)
    n_tail = tail_m.shape[0]
    for b0 in range(start, end, block):
        b1 = min(b0 + block, end)
        # photons with an earlier photon within the window (branch-free list)
        k = 0
        ms = macrotime[b0:b1]
        prev = macrotime[max(b0 - 1, 0)]
        for i in range(ms.shape[0]):
            near[k] = b0 + i
            x = ms[i]
            k += x - prev <= window_ticks
            prev = x
        # (the chunk's first photon, compared with itself above, has only the tail before it)
        for q in range(k):
            j = near[q]
            cj = channel[j]
            if cj != channel_a and cj != channel_b:
                continue
            mj = macrotime[j]
            edge = mj - window_ticks
            uj = np.int64(microtime[j])
            j_is_a = cj == channel_a
            i = j - 1
            while i >= 0 and macrotime[i] >= edge:
                ci = channel[i]
                if ci != cj and (ci == channel_a or ci == channel_b):
                    _g2_pair(
                        mj - macrotime[i], uj - np.int64(microtime[i]), j_is_a, tick_s,
                        micro_s, period_s, n_peaks, bins_per_period, peaks, g2_hist,
                    )  # fmt: skip
                i -= 1
            if i < 0:
                t = n_tail - 1
                while t >= 0 and tail_m[t] >= edge:
                    if tail_c[t] != cj:
                        _g2_pair(
                            mj - tail_m[t], uj - np.int64(tail_u[t]), j_is_a, tick_s,
                            micro_s, period_s, n_peaks, bins_per_period, peaks, g2_hist,
                        )  # fmt: skip
                    t -= 1
