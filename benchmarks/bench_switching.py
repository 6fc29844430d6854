"""Bias switching: the simulator's square wave, the switching kernel beside numpy, the recovery.

Stages, on one simulated recording (the tests' fast-exchange qd1 dot, 0 V <-> -1.8 V, 200 us
period, 100 nW, 2.5 MHz):

* ``simulate``: seconds of CPU per second of switching (the engine plays every edge's rise in
  ``tau / 4`` steps), in 50 ms ticks as the IOC asks for them;
* ``accumulate``: the ``switching`` stream's numba kernel (``switching_accumulate``, photons
  filed by the time since the last step) beside a plain numpy version (searchsorted, bincount)
  on the same rows, M photons/s;
* ``recovery``: the fitted 10-90 % rise time of the falling edge against the simulated one.

Run: ``python benchmarks/bench_switching.py [--seconds 2] [--rise 2e-6 1e-5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "callbacks"))

from markerrun import analyse, write_switching  # noqa: E402

from qd_bluesky.analysis._photon_hdf5 import PhotonHdf5Reader  # noqa: E402
from qd_bluesky.analysis._switching import SwitchingAccumulator  # noqa: E402
from qd_bluesky.callbacks._markerbias import edge_polarity  # noqa: E402


def numpy_accumulate(row0, ts, micro, marker_row, marker_ts, pol, bin_units, n_bins):
    """The same filing as the kernel, in numpy."""
    rows = row0 + np.arange(len(ts))
    i = np.searchsorted(marker_row, rows, side="right") - 1
    ok = i >= 0
    p = np.where(ok, pol[np.maximum(i, 0)], -1)
    dt = ts - marker_ts[np.maximum(i, 0)]
    b = dt // bin_units
    ok &= (p >= 0) & (dt >= 0) & (b < n_bins)
    key = p[ok] * n_bins + b[ok]
    counts = np.bincount(key, minlength=2 * n_bins).reshape(2, n_bins)
    sums = np.bincount(key, weights=micro[ok], minlength=2 * n_bins).reshape(2, n_bins)
    return counts, sums


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rise", type=float, nargs="+", default=[2e-6, 1e-5])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict = {"seconds": args.seconds, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rise in args.rise:
            path = Path(tmp) / f"s{rise:g}.h5"
            t0 = time.process_time()
            run = write_switching(path, rise_time_s=rise, seconds=args.seconds)
            sim_cpu = time.process_time() - t0
            with PhotonHdf5Reader(path) as reader:
                table = reader.read()
                markers = reader.read_user("markers")
            ts, micro = table.macrotime, table.microtime
            m_ts = markers["timestamp"].astype(np.int64)
            m_row = markers["photon_index"].astype(np.int64)
            half = 0.5 * 200e-6 * 2.5e6
            pol = edge_polarity(m_ts, half)
            n_bins = int(half)
            acc = SwitchingAccumulator(1, n_bins)
            acc.add(0, ts[:1000], micro[:1000], m_row, m_ts, pol)  # compile outside the timing
            acc = SwitchingAccumulator(1, n_bins)
            t0 = time.perf_counter()
            acc.add(0, ts, micro, m_row, m_ts, pol)
            t_kernel = time.perf_counter() - t0
            t0 = time.perf_counter()
            counts, sums = numpy_accumulate(0, ts, micro, m_row, m_ts, pol, 1, n_bins)
            t_numpy = time.perf_counter() - t0
            assert np.array_equal(counts, acc.counts)
            assert np.array_equal(sums.astype(np.int64), acc.micro_sum)
            rows = analyse(run, -1.8, [run.rows], markers={"switching": {"period_s": 200e-6}})
            fit = next(r for r in rows["switching_response"] if r["edge"] == "falling")
            out["runs"].append(
                {
                    "rise_time_us": rise * 1e6,
                    "photons": int(len(ts)),
                    "sim_cpu_s_per_s": sim_cpu / args.seconds,
                    "kernel_mphotons_per_s": len(ts) / t_kernel / 1e6,
                    "numpy_mphotons_per_s": len(ts) / t_numpy / 1e6,
                    "fitted_rise_time_us": fit["rise_time_us"],
                    "fitted_stderr_us": fit["rise_time_stderr_us"],
                }
            )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out["runs"]:
            print(
                f"rise {r['rise_time_us']:.1f} us: {r['photons']} photons, simulate "
                f"{r['sim_cpu_s_per_s']:.2f} CPU s per s, kernel "
                f"{r['kernel_mphotons_per_s']:.0f} M/s vs numpy {r['numpy_mphotons_per_s']:.0f}"
                f" M/s, fitted {r['fitted_rise_time_us']:.2f} +- {r['fitted_stderr_us']:.2f} us"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
