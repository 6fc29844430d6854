"""Throughput of the streaming kernels: numba against plain numpy and tttrlib, in one run.

    python benchmarks/bench_kernels.py [--photons 20e6]

Draws a synthetic T3 stream (a dot blinking between X0, 125 ns at 35 kc/s, and X-, 42 ns at
23 kc/s; 400 ns period, 25 ps bins, two detectors), then times each stage on all of it after a
warm-up (JIT compilation or cache load) and prints M photons/s for

* numba: the package's accumulators (``IntensityTrace``, ``DecayHistogram``, ``Flid``,
  ``flid_lifetimes``, ``G2Pulsed``) fed the whole stream at once;
* numpy: the same stage written with ``np.bincount`` / ``np.searchsorted`` and vectorised
  arithmetic, checked to give the same numbers;
* tttrlib: its routine for the same work where it has one (see the notes column).

The FLID lifetime stage counts the photons of the time bins it estimates. Timings are the best
of ``--repeat`` runs on one core.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

from qd_bluesky.analysis import DecayHistogram, Flid, G2Pulsed, IntensityTrace, flid_lifetimes
from qd_bluesky.analysis._flid import _cells

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))
from synthetic import generate  # noqa: E402

try:
    import tttrlib
except ImportError:  # optional: the "bench" extra
    tttrlib = None

PERIOD = 400e-9
DT = 25e-12
MICRO_BINS = 16000
TRACE_BIN = 1e-3
FLID_BIN = 20e-3
DECAY_START = 5e-9
BACKGROUND_CPS = 300.0


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# ------------------------------------------------------------------ numba (the package)


def numba_trace(m, c):
    tr = IntensityTrace(TRACE_BIN, PERIOD)
    tr.add(m, c)
    return tr.counts


def numba_decay(u, c):
    dh = DecayHistogram(MICRO_BINS)
    dh.add(u, c)
    return dh.counts


def numba_flid(m, u):
    f = Flid(FLID_BIN, PERIOD, DT, MICRO_BINS)
    f.add(m, u)
    return f.histograms


def numba_lifetimes(hist):
    return flid_lifetimes(
        hist,
        coarse_bin_s=0.5e-9,
        period_s=PERIOD,
        decay_start_s=DECAY_START,
        background_counts=BACKGROUND_CPS * FLID_BIN,
    )[0]


def numba_g2(m, u, c):
    g = G2Pulsed(0, 1, macrotime_unit_s=PERIOD, microtime_unit_s=DT)
    g.add(m, u, c)
    return g.result().peak_areas


# ------------------------------------------------------------------ plain numpy


def numpy_trace(m, c):
    bins = m // 2500  # 1 ms = 2500 periods
    return np.bincount(bins * 2 + c, minlength=2 * (int(bins[-1]) + 1)).reshape(-1, 2)


def numpy_decay(u, c):
    return np.bincount(c.astype(np.int64) * MICRO_BINS + u, minlength=2 * MICRO_BINS).reshape(
        2, MICRO_BINS
    )


def numpy_flid(m, u):
    bins = m // 50_000  # 20 ms
    coarse = u // 20  # 0.5 ns
    n = int(bins[-1]) + 1
    return np.bincount(bins * 800 + coarse, minlength=n * 800).reshape(n, 800)


def numpy_lifetimes(hist, iterations: int = 8):
    """The same binned likelihood, Fisher scoring vectorised over all time bins at once."""
    cells = _cells(hist.shape[1], 0.5e-9, PERIOD, DECAY_START, 1e-9)
    cols = (cells.first_column + np.arange(cells.n_used)) % cells.n_used
    n = np.add.reduceat(hist[:, cols].astype(np.float64), cells.cell_start[:-1], axis=1)
    total = n.sum(axis=1)
    b = np.clip(BACKGROUND_CPS * FLID_BIN / np.maximum(total, 1), 0, None)
    edges = cells.edges
    centres = 0.5 * (edges[:-1] + edges[1:])
    centres[0] = 0.0
    wfrac = np.diff(edges)[1:] / PERIOD
    mean = np.maximum((n @ centres / np.maximum(total, 1) - 0.5 * b * PERIOD) / (1 - b), 1e-10)
    guess = mean
    for _ in range(4):
        guess = mean + PERIOD / np.expm1(np.minimum(PERIOD / guess, 700))
    theta = np.log(np.clip(guess, 1e-10, 0.99 * 100 * PERIOD))[:, None]
    for _ in range(iterations):
        inv_tau = np.exp(-theta)
        one_m_r = -np.expm1(-PERIOD * inv_tau)
        q = 1 / one_m_r
        dq = PERIOD * inv_tau * (1 - one_m_r) * q * q
        a = (1 - b[:, None]) * q
        a2 = (1 - b[:, None]) * dq
        x = edges[None, 1:] * inv_tau
        e = np.exp(-x)
        d = e[:, :-1] - e[:, 1:]
        p = a * d + b[:, None] * wfrac
        dp = a * (x[:, :-1] * e[:, :-1] - x[:, 1:] * e[:, 1:]) + a2 * d
        p0 = 1 - p.sum(axis=1)
        dp0 = -dp.sum(axis=1)
        score = (n[:, 1:] * dp / p).sum(axis=1) + n[:, 0] * dp0 / p0
        info = total * ((dp * dp / p).sum(axis=1) + dp0 * dp0 / p0)
        theta = theta + (score / info)[:, None]
    tau = np.exp(theta[:, 0])
    tau[total < 20] = np.nan
    return tau


def numpy_g2(m, u, c, n_peaks: int = 3):
    """Pairs within +-(n+1) periods by searchsorted, delays as in the kernel, then bincount."""
    a = np.flatnonzero(c == 0)
    b = np.flatnonzero(c == 1)
    mb = m[b]
    lo = np.searchsorted(mb, m[a] - (n_peaks + 1), side="left")
    hi = np.searchsorted(mb, m[a] + (n_peaks + 1), side="right")
    count = hi - lo
    ia = np.repeat(a, count)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    ib = b[np.repeat(lo, count) + offsets]
    delay = (m[ib] - m[ia]) * PERIOD + (u[ib].astype(np.int64) - u[ia]) * DT
    k = np.floor(delay / PERIOD + (n_peaks + 0.5)).astype(np.int64)
    k = k[(k >= 0) & (k <= 2 * n_peaks)]
    return np.bincount(k, minlength=2 * n_peaks + 1)


# ------------------------------------------------------------------ tttrlib


def tttrlib_trace(m64):
    # total counts per 1 ms window (tttrlib does not split by channel)
    return np.asarray(tttrlib.compute_intensity_trace(m64, TRACE_BIN, PERIOD))


def tttrlib_decay(u_by_channel):
    out = []
    edges = np.arange(MICRO_BINS + 1, dtype=np.int32)
    for u in u_by_channel:
        hist = np.zeros(MICRO_BINS)
        tttrlib.histogram1D_int(u, np.ones(1), edges, hist, "lin", False)
        out.append(hist)
    return np.array(out)


def tttrlib_g2(t_ps_a, t_ps_b):
    # multi-tau cross-correlation out to ~2.6 us, both directions (negative and positive lags)
    curves = []
    for t1, t2 in ((t_ps_a, t_ps_b), (t_ps_b, t_ps_a)):
        corr = tttrlib.Correlator(method="felekyan", n_bins=10, n_casc=18)
        corr.set_events(t1, np.ones(len(t1)), t2, np.ones(len(t2)))
        corr.run()
        curves.append(np.asarray(corr.correlation))
    return curves


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photons", type=float, default=20e6, help="stream size (default 20e6)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage; best is kept")
    args = parser.parse_args()

    mean_rate = 29e3  # X0 and X- equally likely
    t = time.perf_counter()
    syn = generate(
        args.photons / (mean_rate + BACKGROUND_CPS),
        [(35e3, 125e-9), (23e3, 42e-9)],
        dwell_s=0.1,
        background_cps=BACKGROUND_CPS,
        decay_start_s=DECAY_START,
        seed=1,
    )
    m, u, c = syn.macrotime, syn.microtime, syn.channel
    n = len(m)
    print(
        f"{n / 1e6:.1f} M synthetic photons ({syn.duration_s:.0f} s) drawn in "
        f"{time.perf_counter() - t:.1f} s; numba {numba.__version__}, numpy {np.__version__}, "
        f"tttrlib {getattr(tttrlib, '__version__', 'not installed')}, {platform.machine()}, "
        "1 thread"
    )

    # inputs prepared outside the timings
    hist = numba_flid(m, u)
    flid_photons = int(hist.sum())
    if tttrlib is not None:
        m64 = m.astype(np.uint64)
        u_by_channel = [u[c == k].astype(np.int32) for k in (0, 1)]
        t_ps = m * 400_000 + u.astype(np.int64) * 25
        t_ps_a = t_ps[c == 0].astype(np.uint64)
        t_ps_b = t_ps[c == 1].astype(np.uint64)

    stages = [
        ("trace (1 ms)", n, lambda: numba_trace(m, c), lambda: numpy_trace(m, c),
         (lambda: tttrlib_trace(m64)) if tttrlib else None,
         "tttrlib: compute_intensity_trace, all channels summed"),
        ("decay histogram", n, lambda: numba_decay(u, c), lambda: numpy_decay(u, c),
         (lambda: tttrlib_decay(u_by_channel)) if tttrlib else None,
         "tttrlib: histogram1D_int per channel (split beforehand)"),
        ("FLID accumulate (20 ms)", n, lambda: numba_flid(m, u), lambda: numpy_flid(m, u),
         None, "tttrlib: no per-window microtime histogram"),
        ("FLID lifetime estimate", flid_photons, lambda: numba_lifetimes(hist),
         lambda: numpy_lifetimes(hist), None,
         "tttrlib: Fit23 is a polarisation-resolved burst fit, not this model"),
        ("g2 (pulsed, +-3 peaks)", n, lambda: numba_g2(m, u, c), lambda: numpy_g2(m, u, c),
         (lambda: tttrlib_g2(t_ps_a, t_ps_b)) if tttrlib else None,
         "tttrlib: multi-tau Correlator, log-spaced lags, both directions"),
    ]  # fmt: skip

    # warm-up: JIT compile (or load the cache) on a small slice
    k = min(n, 200_000)
    numba_trace(m[:k], c[:k])
    numba_decay(u[:k], c[:k])
    numba_lifetimes(numba_flid(m[:k], u[:k]))
    numba_g2(m[:k], u[:k], c[:k])

    rows = []
    for name, photons, fast, plain, other, note in stages:
        t_numba, r_numba = best_time(fast, args.repeat)
        t_numpy, r_numpy = best_time(plain, args.repeat)
        same = check(name, r_numba, r_numpy)
        t_other = best_time(other, args.repeat)[0] if other else math.nan
        rows.append((name, photons, t_numba, t_numpy, t_other, same, note))

    print()
    header = (
        f"{'stage':<25}{'numba M/s':>10}{'numpy M/s':>10}{'tttrlib M/s':>12}"
        f"{'numba/numpy':>12}{'numba/tttrlib':>14}  same result as numpy; notes"
    )
    print(header)
    print("-" * len(header))
    for name, photons, t_numba, t_numpy, t_other, same, note in rows:
        r_numba, r_numpy, r_other = (photons / t / 1e6 for t in (t_numba, t_numpy, t_other))
        other = f"{r_other:12.0f}" if math.isfinite(r_other) else f"{'-':>12}"
        ratio = f"{r_numba / r_other:14.1f}" if math.isfinite(r_other) else f"{'-':>14}"
        print(
            f"{name:<25}{r_numba:10.0f}{r_numpy:10.0f}{other}{r_numba / r_numpy:12.1f}{ratio}"
            f"  {'yes' if same else 'NO'}; {note}"
        )


def check(name: str, a, b) -> bool:
    """The numba and numpy stages computed the same thing."""
    a = np.asarray(a)
    b = np.asarray(b)
    if name.startswith("FLID lifetime"):
        ok = np.isfinite(a) & np.isfinite(b)
        return bool(ok.mean() > 0.99 and np.allclose(a[ok], b[ok], rtol=1e-6))
    return a.shape == b.shape and bool(np.array_equal(a, b))


if __name__ == "__main__":
    main()
