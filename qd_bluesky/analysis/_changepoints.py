"""Intensity change points in a photon stream (Watkins & Yang, J. Phys. Chem. B 109, 617, 2005).

The test
--------
A segment of photons ``i0 .. i1`` (both ends included) spans ``n = i1 - i0`` inter-photon
intervals and the time ``T = t[i1] - t[i0]``. If the rate is constant, the photon times inside
the segment are uniform, and the normalised time of photon ``j = i0 + k``,
``V_k = (t[j] - t[i0]) / T``, is Beta(k, n - k) distributed. The generalised log-likelihood
ratio of "one rate" against "one rate before photon j, another after" is::

    Z_k = 2 [k ln(k / V_k) + (n - k) ln((n - k) / (1 - V_k)) - n ln n].

Its maximum over k is dominated by the ends of the segment (where ``Z_k`` has the largest
variance), so Watkins & Yang standardise it with its exact mean and standard deviation under the
null hypothesis (digamma and trigamma functions of k, n - k and n) and add the weight
``ln(4 k (n - k) / n**2) / 2``::

    W_k = (Z_k - E[Z_k]) / sd[Z_k] + ln(4 k (n - k) / n**2) / 2.

A change point is accepted at the k that maximises ``W_k`` when ``max W_k`` exceeds the
critical value for the chosen confidence and n (:mod:`._cp_critical_values`, a Monte Carlo
calibration of the null distribution of ``max W_k``, which depends on n only, by
``benchmarks/calibrate_changepoints.py``; linear in ln n between its points and continued with
the last slope beyond 10**6 intervals). The segment is then split at photon j and both halves
are tested again (binary segmentation). A recording longer than 2**20 intervals is first cut
into windows of 2**20 from photon 0 (the last one shorter), each segmented alone, and their
inner edges join the change points as candidates. Finally each change point is re-tested, and
moved to the maximum, between its two neighbours; one that fails there is dropped (binary
segmentation alone leaves a spurious sliver beside some changes; a window edge moves to a change
nearby or goes).

Confidence interval of a change point: the photons k whose log-likelihood ratio is within
``c / 2`` of the maximum, ``Z_max - Z_k <= c``. In the limit of a small change the profile
log-likelihood around the true change point is a two-sided Brownian motion with drift -|t|/2,
whose supremum M obeys P(M <= x) = (1 - exp(-x))**2; the region covers the true change point
with probability ``confidence`` when ``c = -2 ln(1 - sqrt(confidence))`` (7.35 at 0.95).
For a large change the profile is a jump process and the region is conservative (measured
coverage 0.985 at 35 against 5 kc/s); at 35 against 23 kc/s it measured 0.90 (79 changes).

Cost: with cumulative harmonic sums every ``W_k`` costs O(1), so a segment's scan is O(n) and
the whole recursion O(N log N) for balanced splits. Splits are not balanced: on a blinking trace
binary segmentation peels levels off the ends of long segments, so the depth grows with the
number of levels (each photon scanned 16 times at 1.1 M photons of the benchmark below, 27
times at 4 M, 155 times at 10 M, without windows). The windows bound the depth (Watkins & Yang
and Full SMS window long traces too); recordings up to 2**20 intervals are one window.

The exhaustive scan (:func:`weighted_scan`, two logarithms, a square root and a division per
photon) took ~90 % of the time, so the detection scans in blocks of photons
(:func:`pruned_split`): a block's upper bound of ``W_k`` costs about two logarithms (its corner
values, convex in ``V`` and in ``k``, and a floor of the variance), and only blocks whose bound
reaches the running maximum, and the critical value, are evaluated photon by photon. In a
segment with a change the maximum stands far above the rest, so a scan costs ~1-2 ns per photon
instead of ~11. Decisions and change points are identical to the exhaustive scan (the bound is
rigorous, rounding included; the calibration uses the exhaustive scan).

Speed (``benchmarks/bench_changepoints.py``, one run, best of 5 at 60 s and of 2 at 300 s, one
core of a 2-core Xeon shared with other jobs, load average 2.4 of 2). 60 s of X0/X+ blinking at
35 and 5 kc/s (1.14 M photons, two windows, 325 change points as before): 21.9 M photons/s,
plain numpy 1.1 M photons/s (the same change points); before the pruned scan and the windows,
the exhaustive numba scan ran 3.8 M photons/s on this stream (3.3 in an earlier run). 300 s
(6.0 M photons): 17.4 M photons/s, numpy 1.1, the exhaustive scan without windows 1.4.
Building the harmonic sums and their error bound takes ~9 ns of the ~45 ns per photon.

Rounding (known, not changed here): the standardising variance as computed (differences of
running sums times k**2) loses digits as n grows: 1e-6 at 10**4 intervals, 0.12 (6 %) at
10**6, and at 4 * 10**6 it can read 0.8 instead of ~2. The windows keep binary segmentation
below 2**20 intervals, but a refinement segment can be longer. The stable form
2 + 4 [g(k) + g(m) - g(n)] (see :func:`_variance_floor`) would change W there and needs a new
calibration.

Arrival times are integer ticks; photons sharing a tick (``V_k`` of exactly 0 or 1) are no
evidence of a change, so those k are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._cp_critical_values import CONFIDENCES, CRITICAL_N, CRITICAL_VALUES

#: Segments with fewer intervals than this are not tested (the calibration starts here).
MIN_SEGMENT_INTERVALS = int(CRITICAL_N[0])
# Refinement passes (each O(N)); they converge in two or three.
_MAX_REFINE_PASSES = 10
# Photons per block of the pruned scan (see pruned_split): 24 to 48 measure alike, 16, 64 slower.
_SCAN_BLOCK = 32
# Longest stretch segmented as one (photon intervals): bounds the recursion depth on long
# recordings (see segment_kernel); shorter recordings are one window, unchanged by it.
_WINDOW_INTERVALS = 1 << 20


@numba.njit(cache=True)
def harmonic_sums(n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``H1[m] = sum 1/j`` and ``H2[m] = sum 1/j**2`` (j = 1 .. m) for m = 0 .. n_max."""
    h1 = np.empty(n_max + 1)
    h2 = np.empty(n_max + 1)
    h1[0] = 0.0
    h2[0] = 0.0
    # the reciprocals in a loop without a carried dependency; the running sums are the serial part
    for m in range(1, n_max + 1):
        mf = float(m)
        h1[m] = 1.0 / mf
        h2[m] = 1.0 / (mf * mf)
    for m in range(1, n_max + 1):
        h1[m] += h1[m - 1]
        h2[m] += h2[m - 1]
    return h1, h2


@numba.njit(cache=True)
def _weight(k, n):
    """ln(4 k (n - k) / n**2) / 2, the weight that evens the ends of a segment with its middle."""
    return 0.5 * (math.log(4.0) + math.log(k) + math.log(n - k) - 2.0 * math.log(n))


@numba.njit(cache=True)
def _variance(k, n, h2, trigamma_n):
    """Var[Z_k] under one rate, the expression :func:`_w` evaluates (bit for bit)."""
    m = n - k
    return (
        4.0 * k * k * (h2[n - 1] - h2[k - 1])
        + 4.0 * m * m * (h2[n - 1] - h2[m - 1])
        - 8.0 * k * m * trigamma_n
    )


@numba.njit(cache=True)
def _w(k, n, log_left, log_right, log_span, h1, h2):
    """W_k from ln(t_k - t_0) and ln(t_n - t_k) (see the module docstring)."""
    m = n - k
    # Z - E[Z]: E[ln V] = psi(k) - psi(n) = -(H1[n-1] - H1[k-1]), likewise for 1 - V
    dev = -2.0 * k * (log_left - log_span + h1[n - 1] - h1[k - 1]) - 2.0 * m * (
        log_right - log_span + h1[n - 1] - h1[m - 1]
    )
    var = _variance(k, n, h2, math.pi * math.pi / 6.0 - h2[n - 1])  # trigamma_n = psi1(n)
    return dev / math.sqrt(var) + _weight(k, n)


@numba.njit(cache=True)
def fill_log_left(times, i0, i1, out):
    """out[j] = ln(t[j] - t[i0]) for i0 < j < i1 (-inf for a shared tick)."""
    for j in range(i0 + 1, i1):
        d = float(times[j] - times[i0])
        out[j] = math.log(d) if d > 0.0 else -np.inf


@numba.njit(cache=True)
def fill_log_right(times, i0, i1, out):
    """out[j] = ln(t[i1] - t[j]) for i0 < j < i1 (-inf for a shared tick)."""
    for j in range(i0 + 1, i1):
        d = float(times[i1] - times[j])
        out[j] = math.log(d) if d > 0.0 else -np.inf


@numba.njit(cache=True)
def weighted_scan(times, i0, i1, log_left, log_right, h1, h2):
    """Maximum of W_k over k = 1 .. n - 1 for the segment i0 .. i1 (see the module docstring).

    ``log_left`` and ``log_right`` hold the segment's :func:`fill_log_left` and
    :func:`fill_log_right`; ``h1`` and ``h2`` are :func:`harmonic_sums` of at least
    n. Returns (k of the maximum, W at it); k = -1 when no k was usable (photons sharing a tick
    with an end of the segment are no evidence of a change).
    """
    n = i1 - i0
    span = float(times[i1] - times[i0])
    best_k = -1
    best_w = -np.inf
    if span <= 0.0:
        return best_k, best_w
    log_span = math.log(span)
    for k in range(1, n):
        ll = log_left[i0 + k]
        lr = log_right[i0 + k]
        if ll == -np.inf or lr == -np.inf:
            continue
        w = _w(k, n, ll, lr, log_span, h1, h2)
        if w > best_w:
            best_w = w
            best_k = k
    return best_k, best_w


@numba.njit(cache=True)
def _log_gap(times, a, b):
    """ln(t[b] - t[a]), -inf for a shared tick."""
    d = float(times[b] - times[a])
    return math.log(d) if d > 0.0 else -np.inf


@numba.njit(cache=True)
def table_error(h2):
    """Rounding error of the running sums ``h2``, against a compensated summation.

    Returns ``worst`` with ``worst[b]`` the largest error of ``h2[j]`` for j < 2**b: it bounds
    the rounding noise of :func:`_variance` (which cancels terms of order n**2) for a segment of
    n <= 2**b intervals, which reads h2 below n only. The error grows with j, so a short
    segment of a long recording keeps a tight bound.
    """
    worst = np.zeros(64)
    total = 0.0
    carry = 0.0  # Neumaier's compensation of the terms 1/j**2 as h2 rounds them
    largest = 0.0
    bucket = 1  # j < 2**bucket
    for j in range(1, len(h2)):
        while j >= (1 << bucket):
            worst[bucket] = largest
            bucket += 1
        term = 1.0 / (float(j) * j)
        new_total = total + term
        if abs(total) >= abs(term):
            carry += (total - new_total) + term
        else:
            carry += (term - new_total) + total
        total = new_total
        largest = max(largest, abs(h2[j] - (total + carry)))
    worst[bucket:] = largest
    return worst


@numba.njit(cache=True)
def _variance_floor(n, h2_error):
    """A lower bound of :func:`_variance` over all k for a segment of n intervals.

    Exactly, Var[Z_k] = 4 [k**2 psi1(k) + m**2 psi1(m) - n**2 psi1(n)] = 2 + 4 [g(k) + g(m) -
    g(n)] with g(x) = x**2 psi1(x) - x - 1/2 positive and falling, so it exceeds 2. As computed,
    the running sums' errors (each below ``h2_error`` plus the terms' own rounding) enter with
    weights summing to 4 n**2, the rounding of pi**2/6 with 8 k m <= 2 n**2, and the final
    products and sums with magnitudes below 8 n.
    """
    err = 8.0 * n * n * (h2_error + 1e-15) + 3e-16 * n * n + 2e-14 * n + 1e-12
    return 2.0 - err


@numba.njit(cache=True)
def _corner_max(n, k1, k2, corner_left, corner_right, h1):
    """Upper bound of Z_k - E[Z_k] over k = k1 .. k2, and the size of its terms (for rounding).

    ``corner_left`` and ``corner_right`` hold ln V and ln(1 - V) of two photons at or outside
    the block's ends: times are sorted, so each V_k of the block lies between their V. Z_k -
    E[Z_k] as a function of (k, V) is convex in V (-2k ln V - 2(n - k) ln(1 - V)) and, at fixed
    V, convex in k (linear terms plus -2k (H1[n-1] - H1[k-1]) and its mirror, whose differences
    grow with k), so its largest value at the four corners bounds it.
    """
    g = -np.inf
    scale = 0.0
    for c in range(2):
        ll = corner_left[c]
        lr = corner_right[c]
        if ll == -np.inf or lr == -np.inf:
            return np.inf, np.inf
        for k in (k1, k2):
            m = n - k
            left = -2.0 * k * (ll + h1[n - 1] - h1[k - 1])
            right = -2.0 * m * (lr + h1[n - 1] - h1[m - 1])
            g = max(g, left + right)
            scale = max(scale, abs(left) + abs(right))
    return g, scale


@numba.njit(cache=True)
def _bound(g, scale, weight, var_lo):
    """Upper bound of W_k = dev / sd + weight given dev <= g, sd**2 >= var_lo, weight bound.

    A relative margin of 1e-9 covers rounding.
    """
    if not var_lo > 0.0 or g == np.inf:
        return np.inf  # _w gives NaN where var <= 0, which never wins; the exact scan sees it
    head = g / math.sqrt(var_lo) if g >= 0.0 else 0.0
    return head + weight + 1e-9 * (scale / math.sqrt(var_lo) + abs(weight) + 1.0)


@numba.njit(cache=True)
def _variance_min(n, k1, k2, h2, trigamma_n):
    """The smallest :func:`_variance` over k = k1 .. k2, as :func:`_w` computes it."""
    var_lo = np.inf
    for k in range(k1, k2 + 1):
        var_lo = min(var_lo, _variance(k, n, h2, trigamma_n))
    return var_lo


@numba.njit(cache=True)
def _scan_block(times, i0, i1, k1, k2, log_span, h1, h2, best_k, best_w):
    """Fold W_k for k = k1 .. k2 into (best_k, best_w): the largest W, the first k on ties."""
    n = i1 - i0
    for k in range(k1, k2 + 1):
        ll = _log_gap(times, i0, i0 + k)
        lr = _log_gap(times, i0 + k, i1)
        if ll == -np.inf or lr == -np.inf:
            continue
        w = _w(k, n, ll, lr, log_span, h1, h2)
        if w > best_w or (w == best_w and k < best_k):
            best_w = w
            best_k = k
    return best_k, best_w


@numba.njit(cache=True)
def pruned_split(times, i0, i1, h1, h2, h2_error, critical, block):
    """Offset k of the maximum of W_k in segment i0 .. i1 if it exceeds ``critical``, else -1.

    The same decision and k as :func:`weighted_scan` followed by the critical-value test, but
    W_k is evaluated only in the blocks of ``block`` photons whose upper bound could reach the
    running maximum (and the critical value). A block's bound (:func:`_corner_max`, the weight
    nearest n / 2 and :func:`_variance_floor`) costs two logarithms; where the floor is too
    loose to skip a block, the block's own smallest variance tightens it before its photons are
    scanned. In a segment with a change the maximum stands far above the rest, so most blocks
    are skipped with their logarithms. ``h2_error`` is :func:`table_error` of ``h2``.
    """
    n = i1 - i0
    span = float(times[i1] - times[i0])
    if span <= 0.0:
        return -1
    log_span = math.log(span)
    trigamma_n = math.pi * math.pi / 6.0 - h2[n - 1]
    bucket = 0
    while (1 << bucket) < n:
        bucket += 1
    var_floor = _variance_floor(n, h2_error[bucket])
    n_blocks = (n - 2) // block + 1
    corner = np.empty(n_blocks)
    scale = np.empty(n_blocks)
    weight = np.empty(n_blocks)
    bounds = np.empty(n_blocks)
    # block b holds k = 1 + b * block ..; its V lie between those of its first photon and the
    # next block's first (the last k for the last block), so neighbours share a corner
    corner_left = np.empty(2)
    corner_right = np.empty(2)
    corner_left[1] = _log_gap(times, i0, i0 + 1) - log_span
    corner_right[1] = _log_gap(times, i0 + 1, i1) - log_span
    top = 0
    for b in range(n_blocks):
        k1 = 1 + b * block
        k2 = min(k1 + block - 1, n - 1)
        k_next = min(k2 + 1, n - 1)
        corner_left[0] = corner_left[1]
        corner_right[0] = corner_right[1]
        corner_left[1] = _log_gap(times, i0, i0 + k_next) - log_span
        corner_right[1] = _log_gap(times, i0 + k_next, i1) - log_span
        corner[b], scale[b] = _corner_max(n, k1, k2, corner_left, corner_right, h1)
        # the weight, concave in k, is largest nearest n / 2; one logarithm instead of four
        k_mid = min(max(n // 2, k1), k2)
        weight[b] = 0.5 * math.log(4.0 * k_mid * (n - k_mid) / (float(n) * n))
        bounds[b] = _bound(corner[b], scale[b], weight[b], var_floor)
        if bounds[b] > bounds[top]:
            top = b
    if bounds[top] <= critical:
        return -1
    # the most promising block first, so that the running maximum prunes the rest
    best_k, best_w = -1, -np.inf
    for step in range(n_blocks + 1):
        b = top if step == 0 else step - 1
        # skip blocks that can neither win nor exceed the critical value (NaN bounds are scanned)
        if step > 0 and (b == top or bounds[b] < best_w or bounds[b] <= critical):
            continue
        k1 = 1 + b * block
        k2 = min(k1 + block - 1, n - 1)
        if step > 0 and corner[b] >= 0.0:
            tight = _bound(corner[b], scale[b], weight[b], _variance_min(n, k1, k2, h2, trigamma_n))
            if tight < best_w or tight <= critical:
                continue
        best_k, best_w = _scan_block(times, i0, i1, k1, k2, log_span, h1, h2, best_k, best_w)
    if best_k < 0 or best_w <= critical:
        return -1
    return best_k


@numba.njit(cache=True)
def _log_ratio(k, n, v):
    """Z_k, twice the log-likelihood ratio of a rate change at normalised time v after k of n."""
    m = n - k
    return 2.0 * (k * math.log(k / v) + m * math.log(m / (1.0 - v)) - n * math.log(n))


@numba.njit(cache=True)
def _interval(times, i0, i1, k_best, drop):
    """Photon offsets (lo, hi) around k_best with Z_k >= Z_max - drop (contiguous region)."""
    n = i1 - i0
    t0 = times[i0]
    span = float(times[i1] - t0)
    z_best = _log_ratio(k_best, n, (times[i0 + k_best] - t0) / span)
    lo = k_best
    while lo > 1:
        v = (times[i0 + lo - 1] - t0) / span
        if v > 0.0 and _log_ratio(lo - 1, n, v) < z_best - drop:
            break
        lo -= 1
    hi = k_best
    while hi < n - 1:
        v = (times[i0 + hi + 1] - t0) / span
        if v < 1.0 and _log_ratio(hi + 1, n, v) < z_best - drop:
            break
        hi += 1
    return lo, hi


@numba.njit(cache=True)
def _interp_critical(n, table_n, table_w):
    """Critical value for n intervals: linear in ln n inside the table, continued beyond it."""
    x = math.log(n)
    if n <= table_n[0]:
        return table_w[0]
    last = len(table_n) - 1
    j = np.searchsorted(table_n, n)
    if j > last:
        j = last  # continue the last segment's slope in ln n
    x0, x1 = math.log(table_n[j - 1]), math.log(table_n[j])
    return table_w[j - 1] + (table_w[j] - table_w[j - 1]) * (x - x0) / (x1 - x0)


@numba.njit(cache=True)
def _split(times, i0, i1, h1, h2, h2_error, table_n, table_w, min_intervals, block):
    """Offset k of an accepted change point in segment i0 .. i1, or -1."""
    n = i1 - i0
    if n < min_intervals:
        return -1
    critical = _interp_critical(n, table_n, table_w)
    return pruned_split(times, i0, i1, h1, h2, h2_error, critical, block)


@numba.njit(cache=True, nogil=True)
def segment_kernel(
    times, table_n, table_w, drop, min_intervals, max_passes, block, window_intervals
):
    """Binary segmentation of the whole stream, then local refinement.

    Refinement: each change point is tested again, and moved to the maximum, in the segment
    between its neighbours; one that fails is dropped. Binary segmentation alone leaves pairs of
    change points around one true change (the first split, made on a long segment, is
    mislocated and a sliver is cut off later). Passes repeat, over the change points whose
    segment changed, until nothing changes. Each test is :func:`pruned_split` with blocks of
    ``block`` photons.

    Returns (change point photon indices, interval low index, interval high index), sorted.
    """
    n_total = len(times) - 1
    empty = np.zeros(0, dtype=np.int64)
    if n_total < min_intervals:
        return empty, empty, empty
    h1, h2 = harmonic_sums(n_total)
    h2_error = table_error(h2)
    found = np.empty(max(n_total, 1), dtype=np.int64)
    count = 0
    # Windows of window_intervals from photon 0 (the last one shorter): binary segmentation
    # peels levels off the ends of a long segment, so its depth grows with the number of
    # levels; windows bound it. Their inner edges join the change points as candidates, which
    # the refinement moves to a change nearby or drops. Edges on a fixed grid stay where they
    # are as a recording grows.
    n_windows = -(-n_total // window_intervals)
    stack = np.empty((max(64, 2 * n_windows), 2), dtype=np.int64)
    depth = 0
    for w in range(n_windows):
        start = w * window_intervals
        stack[depth] = (start, min(start + window_intervals, n_total))
        depth += 1
        if w > 0:
            found[count] = start
            count += 1
    while depth > 0:
        depth -= 1
        i0, i1 = stack[depth]
        k = _split(times, i0, i1, h1, h2, h2_error, table_n, table_w, min_intervals, block)
        if k < 0:
            continue
        found[count] = i0 + k
        count += 1
        if depth + 2 > len(stack):
            stack = np.concatenate((stack, np.empty_like(stack)))
        stack[depth] = (i0, i0 + k)
        stack[depth + 1] = (i0 + k, i1)
        depth += 2
    cps = np.unique(found[:count])
    # a change point is re-tested when it or a neighbour moved (or vanished) since its last test
    dirty = np.ones(len(cps), dtype=np.bool_)
    for _ in range(max_passes):
        changed = False
        kept = 0
        left_moved = False
        for i in range(len(cps)):
            if not (dirty[i] or left_moved):
                cps[kept] = cps[i]
                dirty[kept] = False
                kept += 1
                continue
            a = cps[kept - 1] if kept > 0 else 0
            b = cps[i + 1] if i + 1 < len(cps) else n_total
            k = _split(times, a, b, h1, h2, h2_error, table_n, table_w, min_intervals, block)
            left_moved = k < 0 or a + k != cps[i]
            if left_moved:
                changed = True
                if kept > 0:
                    dirty[kept - 1] = True  # its right neighbour is no longer where it was
            if k < 0:
                continue
            cps[kept] = a + k
            dirty[kept] = False
            kept += 1
        cps = cps[:kept]
        dirty = dirty[:kept]
        if not changed:
            break
    lo = np.empty_like(cps)
    hi = np.empty_like(cps)
    for i in range(len(cps)):
        a = cps[i - 1] if i > 0 else 0
        b = cps[i + 1] if i + 1 < len(cps) else n_total
        lo_k, hi_k = _interval(times, a, b, cps[i] - a, drop)
        lo[i] = a + lo_k
        hi[i] = a + hi_k
    return cps, lo, hi


def interval_drop(confidence: float) -> float:
    """Drop ``c`` of the log-likelihood ratio that bounds a change point's confidence interval.

    ``c = -2 ln(1 - sqrt(confidence))`` (see the module docstring).
    """
    return -2.0 * math.log(1.0 - math.sqrt(confidence))


def critical_value(confidence: float, n_intervals: int) -> float:
    """Critical value of ``max_k W_k`` for a segment of ``n_intervals`` inter-photon intervals.

    Raises
    ------
    ValueError
        If ``confidence`` is not one of the calibrated levels (0.69, 0.90, 0.95, 0.99).
    """
    row = _confidence_row(confidence)
    return float(_interp_critical(int(n_intervals), CRITICAL_N, CRITICAL_VALUES[row]))


def _confidence_row(confidence: float) -> int:
    for i, c in enumerate(CONFIDENCES):
        if abs(confidence - c) < 1e-9:
            return i
    choices = ", ".join(f"{c:g}" for c in CONFIDENCES)
    raise ValueError(f"confidence must be one of {choices}, got {confidence}")


@dataclass(frozen=True)
class ChangePoints:
    """Change points of a photon stream.

    The test at photon k gives the k intervals that photon k closes to the old rate and the
    interval it opens to the new one, so the change happens at photon k: just before it after a
    rise (it closes a mostly dim interval) and just after it after a drop.

    Attributes
    ----------
    index
        Photon index of each change point: the last photon of the old level.
    time
        ``t[index]``, in the unit of the input times.
    time_lo, time_hi
        Confidence interval of each change: ``t[lo - 1]`` to ``t[hi + 1]`` for the photons lo .. hi
        whose log-likelihood ratio lies within the interval drop of the maximum (one interval
        wider on each side, because the change lies just before or just after its photon).
    confidence
        Confidence of the test and of the intervals.
    """

    index: NDArray[np.int64]
    time: NDArray
    time_lo: NDArray
    time_hi: NDArray
    confidence: float

    def __len__(self) -> int:
        return len(self.index)


def find_change_points(times: ArrayLike, confidence: float = 0.95) -> ChangePoints:
    """Watkins & Yang change points of a time-ordered photon stream (all detectors merged).

    Parameters
    ----------
    times
        Arrival times, non-decreasing: int64 macrotime ticks (or float seconds).
    confidence
        One of 0.69, 0.90, 0.95, 0.99: the probability that a segment without a change gets
        none, and the coverage of each change point's interval.

    Returns
    -------
    ChangePoints

    Raises
    ------
    ValueError
        If ``confidence`` is not calibrated, or ``times`` is not 1-D and non-decreasing.
    """
    row = _confidence_row(confidence)
    times = np.asarray(times)
    if times.ndim != 1:
        raise ValueError(f"times must be one-dimensional, got shape {times.shape}")
    if times.dtype.kind not in "iuf":
        raise ValueError(f"times must be numbers, got dtype {times.dtype}")
    times = np.ascontiguousarray(times, dtype=np.float64 if times.dtype.kind == "f" else np.int64)
    if len(times) > 1 and np.any(times[1:] < times[:-1]):
        raise ValueError("times must be non-decreasing (sort the photons by arrival)")
    cp, lo, hi = segment_kernel(
        times,
        CRITICAL_N,
        CRITICAL_VALUES[row],
        interval_drop(CONFIDENCES[row]),
        MIN_SEGMENT_INTERVALS,
        _MAX_REFINE_PASSES,
        _SCAN_BLOCK,
        _WINDOW_INTERVALS,
    )
    last = len(times) - 1
    lo_time = times[np.maximum(lo - 1, 0)]
    hi_time = times[np.minimum(hi + 1, last)]
    return ChangePoints(cp, times[cp], lo_time, hi_time, float(CONFIDENCES[row]))
