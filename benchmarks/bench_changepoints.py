"""Throughput of the Watkins & Yang change-point detection: numba against plain numpy, one run.

    python benchmarks/bench_changepoints.py [--seconds 60] [--repeat 3]

Goal (issue 11): >= 20 M photons/s on one core. Draws a blinking photon stream (X0 at 35 kc/s
and X+ at 5 kc/s, exponential dwells of 0.2 s mean, 400 ns ticks), then times
``find_change_points`` (numba kernels: binary segmentation and the local refinement, each test
a pruned block scan) and the same algorithm written with vectorised numpy (each segment's
weighted likelihood ratio over every photon as array expressions, the recursion in Python),
checks that both find the same change points, and prints M photons/s of each and their ratio.
Timings are the best of ``--repeat`` runs on one core, after a warm-up (JIT compilation or
cache load); the load average is printed because the machine may be shared.

tttrlib has no equivalent: its segmenting routines (``TTTR.burst_search``, CUSUM/SPRT and
sliding-window burst searches) find bursts above a background rate, not Watkins & Yang change
points, so it is not timed here.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path

import numba
import numpy as np

from qd_bluesky.analysis import _changepoints as cpd
from qd_bluesky.analysis._cp_critical_values import CONFIDENCES, CRITICAL_N, CRITICAL_VALUES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "analysis"))
sys.path.insert(0, str(HERE))
from bench_kernels import best_time  # noqa: E402
from blinking_truth import piecewise_poisson  # noqa: E402

CONFIDENCE = 0.95


# ------------------------------------------------------------------ plain numpy


def numpy_scan(times, i0, i1, h1, h2):
    """(k, W) of the maximum weighted log-likelihood ratio of segment i0 .. i1."""
    n = i1 - i0
    k = np.arange(1, n)
    m = n - k
    left = (times[i0 + 1 : i1] - times[i0]).astype(np.float64)
    span = float(times[i1] - times[i0])
    right = span - left
    ok = (left > 0) & (right > 0)
    if span <= 0 or not ok.any():
        return -1, -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = -2.0 * k * (np.log(left / span) + h1[n - 1] - h1[k - 1]) - 2.0 * m * (
            np.log(right / span) + h1[n - 1] - h1[m - 1]
        )
        trigamma_n = math.pi**2 / 6.0 - h2[n - 1]
        var = (
            4.0 * k * k * (h2[n - 1] - h2[k - 1])
            + 4.0 * m * m * (h2[n - 1] - h2[m - 1])
            - 8.0 * k * m * trigamma_n
        )
        w = dev / np.sqrt(var) + 0.5 * np.log(4.0 * k * m / float(n * n))
    w = np.where(ok, w, -np.inf)
    j = int(np.argmax(w))
    return int(k[j]), float(w[j])


def numpy_split(times, a, b, h1, h2, table_w):
    n = b - a
    if n < cpd.MIN_SEGMENT_INTERVALS:
        return -1
    k, w = numpy_scan(times, a, b, h1, h2)
    if k < 0 or w <= numpy_critical(n, table_w):
        return -1
    return k


def numpy_critical(n: int, table_w: np.ndarray) -> float:
    """Critical value, linear in ln n; the last interval's slope continues beyond the table."""
    x, xs = math.log(n), np.log(CRITICAL_N)
    if x <= xs[-1]:
        return float(np.interp(x, xs, table_w))
    slope = (table_w[-1] - table_w[-2]) / (xs[-1] - xs[-2])
    return float(table_w[-1] + slope * (x - xs[-1]))


def numpy_change_points(times: np.ndarray) -> np.ndarray:
    """Windowed binary segmentation and refinement as in ``segment_kernel``, in numpy."""
    table_w = CRITICAL_VALUES[list(CONFIDENCES).index(CONFIDENCE)]
    n_total = len(times) - 1
    j = np.arange(1, n_total + 1)
    h1 = np.concatenate(([0.0], np.cumsum(1.0 / j)))
    h2 = np.concatenate(([0.0], np.cumsum(1.0 / (j * j))))
    # windows, their inner edges as candidate change points (as in segment_kernel)
    edges = [*range(0, n_total, cpd._WINDOW_INTERVALS), n_total]
    found, stack = edges[1:-1], list(zip(edges[:-1], edges[1:], strict=True))
    while stack:
        a, b = stack.pop()
        k = numpy_split(times, a, b, h1, h2, table_w)
        if k >= 0:
            found.append(a + k)
            stack += [(a, a + k), (a + k, b)]
    cps = sorted(set(found))
    for _ in range(10):
        kept, changed = [], False
        for i in range(len(cps)):
            a = kept[-1] if kept else 0
            b = cps[i + 1] if i + 1 < len(cps) else n_total
            k = numpy_split(times, a, b, h1, h2, table_w)
            changed |= k < 0 or a + k != cps[i]
            if k >= 0:
                kept.append(a + k)
        cps = kept
        if not changed:
            break
    return np.array(cps, dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(1)
    switch = np.cumsum(rng.exponential(0.2, int(10 * args.seconds / 0.2)))
    switch = switch[switch < args.seconds]
    rates = [35e3 if i % 2 == 0 else 5e3 for i in range(len(switch) + 1)]
    ticks = piecewise_poisson(rates, switch, args.seconds, seed=2)
    n = len(ticks)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{platform.processor() or platform.machine()}, numba {numba.__version__}, load {load}")
    print(f"{n:,} photons, {args.seconds:g} s, {len(switch)} true change points")
    cpd.find_change_points(ticks[:10000], CONFIDENCE)  # warm-up
    t_numba, found = best_time(lambda: cpd.find_change_points(ticks, CONFIDENCE), args.repeat)
    t_numpy, found_np = best_time(lambda: numpy_change_points(ticks), max(1, args.repeat - 2))
    same = np.array_equal(found.index, found_np)
    print(f"numba  {n / t_numba / 1e6:8.2f} M photons/s  ({len(found)} change points)")
    print(f"numpy  {n / t_numpy / 1e6:8.2f} M photons/s  ({len(found_np)} change points)")
    print(f"ratio  {t_numpy / t_numba:8.1f}x   same change points: {same}")


if __name__ == "__main__":
    main()
