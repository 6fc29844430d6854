"""Catalog-wide re-analysis on Dask: runs/s and photons/s with one and two workers.

    python benchmarks/bench_reanalyze.py [--runs 6] [--seconds 10] [--workers 1 2] [--json]

A fresh embedded catalog gets ``--runs`` raw runs recorded without IOCs (``rawrun.SimFlyer``:
qd1 from the simulator, ``--seconds`` at 0 V then as long at -2 V, in a real SWMR file, through
a RunEngine and TiledWriter). They are then re-analysed, in this order, one measurement each:

* ``serial``: ``replay`` run after run in this process (what a shell loop over
  ``qd-bluesky replay`` does, without its start-up per run), the baseline: first on the
  catalog as Tiled made it (``serial_rollback_journal``), then after ``reanalyze``'s switch of
  the SQLite files to the write-ahead log (``serial``), which is what the Dask runs see;
* ``dask``: ``reanalyze`` on a new ``LocalCluster`` of N single-threaded worker processes, for
  each N of ``--workers``; the wall time includes the cluster's start and each worker's first
  catalog open. ``analysis_s`` and ``write_s`` add up the workers' and the client's parts.

With ``--json`` the last line is one JSON object: ``runs``, ``photons``,
``serial_rollback_journal``, ``serial`` and ``dask`` (a list), each with ``seconds``,
``runs_per_s``, ``photons_per_s``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "callbacks"))


def record_runs(catalog, n: int, seconds: float) -> tuple[list[str], int]:
    from bluesky import RunEngine
    from rawrun import SimFlyer, sim_bias_steps, simulate_steps

    RE = RunEngine({})  # noqa: N806
    RE.subscribe(catalog.writer)
    uids, photons = [], 0
    for i in range(n):
        p = simulate_steps([0.0, -2.0], seconds, seed=1000 + i)
        flyer = SimFlyer("tcspc", p, catalog.photon_dir / f"bench{i}.h5", rows_per_collect=1 << 17)
        (uid,) = RE(sim_bias_steps(flyer))
        uids.append(uid)
        photons += len(p)
    return uids, photons


def _rates(seconds: float, runs: int, photons: int) -> dict[str, float]:
    return {
        "seconds": seconds,
        "runs_per_s": runs / seconds,
        "photons_per_s": photons / seconds,
    }


def bench_serial(catalog, uids: list[str], photons: int) -> dict:
    from qd_bluesky.callbacks import AnalysisSettings, replay

    settings = AnalysisSettings()
    t0 = time.perf_counter()
    for uid in uids:
        result = replay(catalog, uid, settings=settings, compare=False)
        assert result.exit_status == "success", result.reason
    return _rates(time.perf_counter() - t0, len(uids), photons)


def bench_dask(catalog, uids: list[str], photons: int, workers: int) -> dict:
    from qd_bluesky.callbacks import reanalyze

    t0 = time.perf_counter()
    results = reanalyze(catalog, uids, workers=workers)
    seconds = time.perf_counter() - t0
    failed = [r for r in results if not r.ok]
    assert not failed, failed[0].reason
    return {
        "workers": workers,
        **_rates(seconds, len(uids), photons),
        "analysis_s": sum(r.analysis_s for r in results),
        "write_s": sum(r.write_s for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="per bias step of a run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args()

    from qd_bluesky.catalog import open_catalog

    with tempfile.TemporaryDirectory() as tmp, open_catalog(tmp) as catalog:
        t0 = time.perf_counter()
        uids, photons = record_runs(catalog, args.runs, args.seconds)
        print(
            f"{args.runs} raw runs, {photons:,} photons, recorded in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        out: dict = {"runs": len(uids), "photons": photons}
        from qd_bluesky.callbacks._reanalyze import use_write_ahead_log

        for key, label in (("serial_rollback_journal", "rollback journal"), ("serial", "WAL")):
            if key == "serial":
                use_write_ahead_log(catalog)
            out[key] = serial = bench_serial(catalog, uids, photons)
            print(
                f"serial replay, {label:16}  {serial['seconds']:6.1f} s  "
                f"{serial['runs_per_s']:.3f} runs/s  "
                f"{serial['photons_per_s'] / 1e3:8.1f} k photons/s",
                flush=True,
            )
        out["dask"] = []
        for n in args.workers:
            row = bench_dask(catalog, uids, photons, n)
            out["dask"].append(row)
            print(
                f"dask, {n} worker(s){'':15}  {row['seconds']:6.1f} s  "
                f"{row['runs_per_s']:.3f} runs/s  "
                f"{row['photons_per_s'] / 1e3:8.1f} k photons/s  (workers {row['analysis_s']:.1f}"
                f" s, client writes {row['write_s']:.1f} s)",
                flush=True,
            )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
