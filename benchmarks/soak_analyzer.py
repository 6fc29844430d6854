"""Soak of the live analyzer: a 3 h bias-cycling recording played at the card's speed.

    python benchmarks/soak_analyzer.py [--cycles 540] [--cycle-s 20] [--every 0.5]
                                       [--json out.json] [--workdir D]

A writer process generates the paper's experiment synthetically (``tests/callbacks/cycling.py``:
540 cycles of 0 -> -2 -> 0 V in 20 s, the scaling model, ~27 kc/s on average, ~270 M photons)
and appends it cycle by cycle to a SWMR Photon-HDF5 file, as fast as it can. This process plays
the RunEngine of ``bias_cycling``: a marker event at the first row of every cycle and a
StreamDatum per 0.5 s of data, each handed to a ``LiveAnalyzer`` (unthreaded: every document is
analysed before the next is sent, so the analyzer runs flat out; the writer stays ahead).

Measured: photons, wall time and photon rate of the analysis (the writer's time overlaps), the
process's RSS sampled every ``--every`` s (peak, and at each tenth of the run, to show whether
it levels off), and ``ru_maxrss``. The derived documents go to a sink that keeps only counts
and the ``reversibility`` rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_live import DATASETS, KEYS, qd_run
from event_model import ComposeStreamResource, StreamRange

from qd_bluesky.callbacks import LiveAnalyzer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "callbacks"))
DATUM_S = 0.5


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def writer(path: str, cycles: int, cycle_s: float, seed: int, out: mp.Queue) -> None:
    """The card: write every cycle, report ``(first_row, stop)`` after each."""
    from cycling import CyclingDot, write_cycling

    for first, stop in write_cycling(
        Path(path), cycles, dot=CyclingDot(cycle_s=cycle_s), seed=seed
    ):
        out.put((first, stop))
    out.put(None)


class Sink:
    """The derived-run callback: counts per stream, the reversibility rows."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self.reversibility: list[dict] = []
        self.stop: dict | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self.names[doc["uid"]] = doc["name"]
        elif name == "event_page":
            stream = self.names[doc["descriptor"]]
            n = len(doc["seq_num"])
            self.rows[stream] = self.rows.get(stream, 0) + n
            if stream == "reversibility":
                keys = list(doc["data"])
                self.reversibility.extend({k: doc["data"][k][i] for k in keys} for i in range(n))
        elif name == "stop":
            self.stop = doc


def soak(
    cycles: int, cycle_s: float, every: float, workdir: Path, seed: int = 0, catalog: bool = False
) -> dict:
    sink = Sink()
    if catalog:
        # The real path's client: raw and derived documents into an embedded Tiled catalog.
        from qd_bluesky.callbacks import SerializedCallback
        from qd_bluesky.catalog import open_catalog

        cat = open_catalog(workdir / "data")
        path = cat.photon_dir / "soak.h5"
        tiled = SerializedCallback(cat.writer)

        def derived(name: str, doc: dict) -> None:
            tiled(name, doc)
            sink(name, doc)
    else:
        path = workdir / "soak.h5"
        tiled = derived = None
    ctx = mp.get_context("spawn")
    cycles_q: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=writer, args=(str(path), cycles, cycle_s, seed, cycles_q))
    proc.start()

    live = LiveAnalyzer(derived or sink, threaded=False)

    def analyzer(name: str, doc: dict) -> None:
        if tiled is not None:
            tiled(name, doc)
        live(name, doc)

    bundle, primary, photons = qd_run("bias_cycling", "continuous")
    analyzer("start", bundle.start_doc)
    analyzer("descriptor", primary.descriptor_doc)
    analyzer("descriptor", photons.descriptor_doc)

    samples: list[tuple[float, float, int]] = []  # (elapsed s, RSS MB, photons announced)
    announced = 0
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(every):
            samples.append((time.monotonic() - t0, rss_mb(), announced))

    threading.Thread(target=sample, daemon=True).start()
    bundles = None
    k = 0
    busy_s = 0.0  # time inside the analyzer (the rest is waiting for the writer)
    while (item := cycles_q.get()) is not None:
        first, stop = item
        if bundles is None:
            compose = ComposeStreamResource()
            bundles = [
                compose(
                    mimetype="application/x-hdf5",
                    uri=f"file://localhost{path}",
                    data_key=key,
                    parameters={"dataset": DATASETS[f], "chunk_shape": [1 << 16]},
                )
                for f, key in KEYS.items()
            ]
            for b in bundles:
                analyzer(
                    "stream_resource",
                    dict(b.stream_resource_doc, run_start=bundle.start_doc["uid"]),
                )
        t = time.monotonic()
        marker = primary.compose_event(
            data={"pot": 0.0, "tcspc_num_photons": first},
            timestamps={"pot": 0.0, "tcspc_num_photons": 0.0},
            seq_num=k + 1,
        )
        analyzer("event", marker)
        pieces = max(1, round(cycle_s / DATUM_S))
        cuts = [first + (stop - first) * i // pieces for i in range(pieces + 1)]
        for a, b_ in zip(cuts[:-1], cuts[1:], strict=True):
            for b in bundles:
                datum = b.compose_stream_datum(indices=StreamRange(start=a, stop=b_))
                analyzer("stream_datum", dict(datum, descriptor=photons.descriptor_doc["uid"]))
            announced = b_
        busy_s += time.monotonic() - t
        k += 1
    proc.join()
    t = time.monotonic()
    analyzer("stop", bundle.compose_stop())
    busy_s += time.monotonic() - t
    wall = time.monotonic() - t0
    done.set()
    samples.append((wall, rss_mb(), announced))
    outcome = live.outcomes[bundle.start_doc["uid"]]
    return {
        "cycles": k,
        "photons": announced,
        "wall_s": wall,
        "analysis_s": busy_s,
        "peak_rss_mb": max(s[1] for s in samples),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "derived_exit_status": outcome.exit_status,
        "derived_rows": sink.rows,
        "reversibility": sink.reversibility,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=540)
    parser.add_argument("--cycle-s", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=0.5, help="RSS sampling period (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="(default: a temporary one)")
    parser.add_argument(
        "--catalog",
        action="store_true",
        help="also write the raw and derived runs into an embedded Tiled catalog",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        r = soak(args.cycles, args.cycle_s, args.every, Path(tmp), args.seed, args.catalog)
    s = r["samples"]
    print(f"{'t (s)':>8} {'photons':>12} {'RSS MB':>8}")
    for i in range(1, 11):
        t, mb, n = s[min(len(s) - 1, i * len(s) // 10 - 1)]
        print(f"{t:8.1f} {n:12d} {mb:8.0f}")
    print(
        f"{r['cycles']} cycles, {r['photons']:,} photons: wall {r['wall_s']:.0f} s, in the "
        f"analyzer {r['analysis_s']:.0f} s ({r['photons'] / r['analysis_s'] / 1e6:.1f} M "
        f"photons/s); peak RSS {r['peak_rss_mb']:.0f} MB (ru_maxrss {r['ru_maxrss_mb']:.0f} MB); "
        f"derived run: {r['derived_exit_status']}, rows {r['derived_rows']}"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
