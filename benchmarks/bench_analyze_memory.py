"""Peak memory of ``analyze_file`` against the length of a Photon-HDF5 file.

    python benchmarks/bench_analyze_memory.py [--rate 2e6] [--seconds 2 8 32]

Synthetic T3 files (``tests/analysis/synthetic.py``, one 5 ns state) of growing length; the
peak of Python/numpy allocations (tracemalloc) of the streamed ``analyze_file`` and of the
same analysis over the whole file read at once (what ``analyze_file`` did before streaming).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from qd_bluesky.analysis import PhotonAnalysis, StreamUnits, analyze_file, write_photon_hdf5
from qd_bluesky.analysis._io import read_photons

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))


def whole_file(path) -> None:
    table = read_photons(path)
    analysis = PhotonAnalysis(
        StreamUnits.of(table), t0_ticks=int(table.macrotime[0]), channels=tuple(table.channels)
    )
    analysis.add(table.macrotime, table.microtime, table.channel)
    analysis.summary(bin_ms=20.0)


def peak(fn, path) -> tuple[float, float]:
    tracemalloc.start()
    t = time.perf_counter()
    try:
        fn(path)
        return tracemalloc.get_traced_memory()[1] / 1e6, time.perf_counter() - t
    finally:
        tracemalloc.stop()


def main() -> None:
    from synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2e6)
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 8.0, 32.0])
    args = parser.parse_args()
    print(f"{'photons':>11} {'file MB':>8} {'streamed MB':>12} {'s':>6} {'whole MB':>9} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            path = Path(tmp) / f"{seconds:g}.h5"
            table = generate(seconds, ((args.rate, 5e-9),), seed=1).table()
            write_photon_hdf5(path, table)
            n = len(table)
            del table
            analyze_file(path)  # compilation, imports
            streamed, ts = peak(analyze_file, path)
            whole, tw = peak(whole_file, path)
            size = path.stat().st_size / 1e6
            print(f"{n:11d} {size:8.0f} {streamed:12.1f} {ts:6.2f} {whole:9.1f} {tw:6.2f}")


if __name__ == "__main__":
    main()
