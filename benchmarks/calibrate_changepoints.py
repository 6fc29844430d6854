"""Monte Carlo calibration of the Watkins & Yang change-point test; writes its critical values.

    python benchmarks/calibrate_changepoints.py [--scale 1.0]    (about a minute on one core)

Under the null hypothesis (one constant rate) the statistic ``max_k W_k`` of a segment of n
inter-photon intervals depends on n only: the normalised photon times are the order statistics of
uniforms, whatever the rate. So its quantiles are computed once, by drawing n exponential
intervals many times per n, and stored in ``qd_bluesky/analysis/_cp_critical_values.py``. Each
stored value is the ``confidence`` quantile of ``max_k W_k``; a segment whose maximum exceeds it
is split. ``--scale`` multiplies the number of draws: 10 000 per n up to n = 10 000, falling to
1 000 at n = 10**6 (the stored table is this default; fixed seeds make it reproducible).

To take out the Monte Carlo noise of single quantiles, the stored curve for each confidence is a
least-squares fit, in x = ln n, of ``a + b x + c ln x`` to the raw quantiles (printed beside it);
the curve is made non-decreasing in n (a longer segment offers more k to maximise over), and the
slope of the last grid interval continues it beyond the largest n (see ``_interp_critical``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

from qd_bluesky.analysis._changepoints import (
    fill_log_left,
    fill_log_right,
    harmonic_sums,
    weighted_scan,
)

CONFIDENCES = (0.69, 0.90, 0.95, 0.99)
GRID = (
    10,
    14,
    20,
    30,
    50,
    70,
    100,
    150,
    200,
    300,
    500,
    700,
    1000,
    2000,
    5000,
    10000,
    20000,
    50000,
    100000,
    200000,
    500000,
    1000000,
)
OUT = Path(__file__).resolve().parents[1] / "qd_bluesky" / "analysis" / "_cp_critical_values.py"


@numba.njit(cache=True)
def null_maxima(n, draws, seed):
    # numba's generator inside njit is numpy's legacy API
    np.random.seed(seed)  # noqa: NPY002
    h1, h2 = harmonic_sums(n)
    times = np.empty(n + 1)
    log_left = np.empty(n + 1)
    log_right = np.empty(n + 1)
    out = np.empty(draws)
    for d in range(draws):
        t = 0.0
        times[0] = 0.0
        for j in range(1, n + 1):
            t += np.random.exponential(1.0)  # noqa: NPY002
            times[j] = t
        # the same path as the detection kernel
        fill_log_left(times, 0, n, log_left)
        fill_log_right(times, 0, n, log_right)
        out[d] = weighted_scan(times, 0, n, log_left, log_right, h1, h2)[1]
    return out


def draws_for(n: int, scale: float) -> int:
    # about 1e9 W_k evaluations in all; at least 1000 draws (the 0.99 quantile from >= 10 tails)
    return int(scale * max(1000, min(10000, 1e8 // n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    raw = np.empty((len(CONFIDENCES), len(GRID)))
    t_start = time.perf_counter()
    for j, n in enumerate(GRID):
        m = null_maxima(n, draws_for(n, args.scale), 1000 + j)
        raw[:, j] = np.quantile(m, CONFIDENCES)
        print(f"n={n:>8} draws={len(m):>6} " + " ".join(f"{q:7.3f}" for q in raw[:, j]))
    x = np.log(np.array(GRID, float))
    design = np.column_stack([np.ones_like(x), x, np.log(x)])
    fitted = np.empty_like(raw)
    for i in range(len(CONFIDENCES)):
        coef, *_ = np.linalg.lstsq(design, raw[i], rcond=None)
        # the null maximum cannot fall as n grows (more k to maximise over)
        fitted[i] = np.maximum.accumulate(design @ coef)
        print(
            f"confidence {CONFIDENCES[i]}: max |fit - raw| = {np.abs(fitted[i] - raw[i]).max():.3f}"
        )
    rows = ",\n".join("        [" + ", ".join(f"{v:.4f}" for v in row) + "]" for row in fitted)
    OUT.write_text(
        '"""Critical values of the Watkins & Yang change-point statistic (generated).\n\n'
        "Written by ``benchmarks/calibrate_changepoints.py`` (Monte Carlo, one constant rate,\n"
        "smoothed in ln n); ``CRITICAL_VALUES[i, j]`` is the ``CONFIDENCES[i]`` quantile of\n"
        '``max_k W_k`` for a segment of ``CRITICAL_N[j]`` inter-photon intervals.\n"""\n\n'
        "import numpy as np\n\n"
        f"CONFIDENCES = np.array({list(CONFIDENCES)})\n"
        f"CRITICAL_N = np.array({[float(n) for n in GRID]})\n"
        f"CRITICAL_VALUES = np.array(\n    [\n{rows},\n    ]\n)\n"
    )
    print(f"wrote {OUT} in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
