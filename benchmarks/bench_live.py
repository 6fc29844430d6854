"""Live analyzer and replay: sustained photon rate, lag of the derived events, replay time.

    python benchmarks/bench_live.py [--rates 10e6 20e6 40e6] [--seconds 10] [--collect 0.5]
                                    [--dir D] [--skip-replay] [--skip-live] [--json]

Live. A writer process plays the simulated TCSPC card: every 50 ms (the IOC's tick) it appends
the photons of that tick to a SWMR Photon-HDF5 file (synthetic two-channel T3 photons at the
requested rate, 400 ns period, 25 ps bins, a bias marker per tick) and publishes the rows
written. This process plays the RunEngine: a run start with the ``qd`` contract, a marker
event, then every ``--collect`` seconds StreamDatum documents for the new rows (every 10 s a
new marker, i.e. a segment end with its fits), each handed to a threaded ``LiveAnalyzer``.
Measured:

* lag: for every derived ``trace`` and ``flid`` row, the time from the announcement of the
  first datum that completes it to its emission by the analyzer (p50, p99, max);
* drain: time from the last datum to the derived run's stop document;
* RunEngine side: the longest ``analyzer(name, doc)`` call, and the worst lateness of the
  RunEngine loop's periodic wake-ups (GIL contention with the worker).

A rate is sustained when the max lag stays within 0.5 s. Replay. A 60 s run of qd1 at 0 V from
the simulator (~28 kc/s, blinking) in a fresh embedded catalog, analysed live, then ``replay``:
wall time with its parts, and without writing the derived run (catalog start-up not counted).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from event_model import ComposeStreamResource, StreamRange, compose_run

from qd_bluesky.callbacks import AnalysisSettings, LiveAnalyzer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "callbacks"))

PERIOD, DT, BINS = 400e-9, 25e-12, 16000
TICK_S = 0.05
KEYS = {f: f"tcspc_{f}" for f in ("timestamps", "nanotimes", "detectors")}
DATASETS = {f: f"/photon_data/{f}" for f in KEYS}
SEGMENT_S = 10.0
#: Most lag of a trace or flid row for a rate to count as sustained.
MAX_LAG_S = 0.5


# --- the card: a writer process ---------------------------------------------------------------


def _block(rate: float, seconds: float, seed: int):
    """Photons of ``seconds`` at ``rate``: Poisson arrivals, 20 ns decay + 5 % background."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    sync = np.sort(rng.integers(0, int(seconds / PERIOD), n)).astype(np.int64)
    micro = (2e-9 + rng.exponential(20e-9, n)) / DT
    flat = rng.random(n) < 0.05
    micro[flat] = rng.uniform(0, BINS, flat.sum())
    micro = np.minimum(micro, BINS - 1).astype(np.uint16)
    return sync, micro, rng.integers(0, 2, n).astype(np.uint8)


def card(path: str, rate: float, seconds: float, rows, ready, go) -> None:
    """Append each tick's photons in real time; publish the rows written.

    The file's layout is the project's writer's (``PhotonHdf5Writer``); the ticks are appended
    as a card's driver would, with plain h5py writes and one flush per tick (photons and the
    bias marker together): the writer's own checks and second flush cost 40 % more CPU, which
    at 40 M photons/s is taken from the analyzer on a 2-core machine.
    """
    import h5py

    from qd_bluesky.analysis import PhotonHdf5Writer

    block_s = 1.0
    sync, micro, chan = _block(rate, block_s, seed=1)
    PhotonHdf5Writer(
        path,
        macrotime_unit_s=PERIOD,
        microtime_unit_s=DT,
        microtime_bins=BINS,
        rep_rate_hz=1 / PERIOD,
        chunk_rows=65536,
        swmr=True,
        user_columns={"bias": {"photon_index": np.int64, "bias_v": np.float64}},
    ).close()
    f = h5py.File(path, "r+", libver="latest")
    columns = [f[DATASETS[name]] for name in ("timestamps", "nanotimes", "detectors")]
    marker_rows, marker_bias = f["user/bias/photon_index"], f["user/bias/bias_v"]
    marker_rows.resize((1,))
    marker_bias.resize((1,))
    marker_rows[0], marker_bias[0] = 0, 0.0
    f.flush()
    f.swmr_mode = True
    ready.set()
    go.wait()
    t0 = time.monotonic()
    ticks_per_block = round(block_s / TICK_S)
    per_tick = int(round(block_s / PERIOD)) // ticks_per_block
    n = 0
    for k in range(int(round(seconds / TICK_S))):
        # The k-th tick of the repeating block, shifted to its place in time.
        b, j = divmod(k, ticks_per_block)
        lo, hi = np.searchsorted(sync, [j * per_tick, (j + 1) * per_tick])
        offset = b * ticks_per_block * per_tick
        wait = t0 + (k + 1) * TICK_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        stop = n + int(hi - lo)
        for ds, data in zip(
            columns, (sync[lo:hi] + offset, micro[lo:hi], chan[lo:hi]), strict=True
        ):
            ds.resize((stop,))
            ds[n:stop] = data
        marker_rows.resize((k + 2,))
        marker_bias.resize((k + 2,))
        marker_rows[k + 1], marker_bias[k + 1] = stop, 0.0
        f.flush()
        n = rows.value = stop
    f.close()


# --- the RunEngine side -----------------------------------------------------------------------


def qd_run(plan_name: str, segments: str):
    """A raw run with the qd contract: its bundle and the primary and photons descriptors."""
    bundle = compose_run(
        metadata={
            "plan_name": plan_name,
            "qd": {
                "schema": 1,
                "photon_stream": "photons",
                "photon_keys": dict(KEYS),
                "marker_stream": "primary",
                "photon_index_key": "tcspc_num_photons",
                "bias_key": "pot",
                "segments": segments,
                "bias_setpoints": None,
            },
        }
    )
    primary = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "pot": {"source": "sim", "dtype": "number", "shape": []},
            "tcspc_num_photons": {"source": "sim", "dtype": "integer", "shape": []},
        },
    )
    photons = bundle.compose_descriptor(
        name="photons",
        data_keys={
            k: {"source": "sim", "dtype": "integer", "shape": [], "external": "STREAM:"}
            for k in KEYS.values()
        },
    )
    return bundle, primary, photons


class Recorder:
    """The analyzer's callback: derived rows with their emission time."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.rows: list[tuple[str, float, float]] = []  # (stream, data time_s, emitted)
        self.flid_photons = 0  # photons in the FLID bins: all of them, or some were skipped
        self.stopped = threading.Event()
        self.stop_time = 0.0

    def __call__(self, name: str, doc: dict) -> None:
        now = time.monotonic()
        if name == "descriptor":
            self.names[doc["uid"]] = doc["name"]
        elif name == "event_page":
            stream = self.names[doc["descriptor"]]
            if stream in ("trace", "flid"):
                self.rows.extend((stream, t, now) for t in doc["data"]["time_s"])
            if stream == "flid":
                self.flid_photons += sum(doc["data"]["photons"])
        elif name == "stop":
            self.stop_time = now
            self.stopped.set()


def live(
    rate: float,
    seconds: float,
    collect_s: float,
    workdir: Path,
    drain_timeout: float = 120.0,
    settings: AnalysisSettings | None = None,
) -> dict:
    path = workdir / f"live-{rate:.0e}.h5"
    ctx = mp.get_context("spawn")
    rows, ready, go = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=card, args=(str(path), rate, seconds, rows, ready, go))
    proc.start()
    ready.wait(60)

    rec = Recorder()
    settings = settings or AnalysisSettings()
    analyzer = LiveAnalyzer(rec, settings=settings)
    calls: list[float] = []

    def send(name, doc):
        t = time.perf_counter()
        analyzer(name, doc)
        calls.append(time.perf_counter() - t)

    bundle, primary, photons = qd_run("bench_live", "steps")
    send("start", bundle.start_doc)
    send("descriptor", primary.descriptor_doc)
    send("descriptor", photons.descriptor_doc)
    compose = ComposeStreamResource()
    bundles = {}
    for f, key in KEYS.items():
        bundles[f] = compose(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{path}",
            data_key=key,
            parameters={"dataset": DATASETS[f], "chunk_shape": [65536]},
        )
        send(
            "stream_resource",
            dict(bundles[f].stream_resource_doc, run_start=bundle.start_doc["uid"]),
        )

    def marker(row: int, seq: int) -> None:
        send(
            "event",
            primary.compose_event(
                data={"pot": 0.0, "tcspc_num_photons": row},
                timestamps={"pot": 0.0, "tcspc_num_photons": 0.0},
                seq_num=seq,
            ),
        )

    marker(0, 1)
    go.set()
    t_start = time.monotonic()
    announced, datums = 0, []  # (announce time, data time of the last row announced)
    lateness, seq, k = [], 2, 0
    while proc.is_alive() or rows.value > announced:
        k += 1
        due = t_start + k * collect_s
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        lateness.append(time.monotonic() - due)
        stop = rows.value
        if stop > announced:
            for b in bundles.values():
                send(
                    "stream_datum",
                    dict(
                        b.compose_stream_datum(StreamRange(start=announced, stop=stop)),
                        descriptor=photons.descriptor_doc["uid"],
                    ),
                )
            datums.append((time.monotonic(), stop))
            announced = stop
        if k * collect_s >= SEGMENT_S * (seq - 1) and proc.is_alive():
            marker(announced, seq)
            seq += 1
    proc.join()
    t_last = time.monotonic()
    send("stop", bundle.compose_stop())
    # The derived stop follows the background's decays, g2 and levels, which may run behind.
    drained = rec.stopped.wait(drain_timeout)
    analyzer.close()

    # Lag: from the first announcement that completes a row to the row's emission.
    import h5py

    with h5py.File(path, "r") as f:
        stamps = f[DATASETS["timestamps"]]
        photons = len(stamps)
        t_first = int(stamps[0])
        last_s = np.array([(int(stamps[n - 1]) - t_first) * PERIOD for _, n in datums])
    announce_t = np.array([t for t, _ in datums])
    lags = []
    for stream, t_data, emitted in rec.rows:
        width = settings.trace_event_s if stream == "trace" else settings.flid_bin_s
        i = np.searchsorted(last_s, t_data + width, side="left")
        if i < len(announce_t):  # rows completed only at the stop are not live rows
            lags.append(emitted - announce_t[i])
    lags = np.array(lags)
    lag_max = float(lags.max())
    return {
        "rate_cps": rate,
        "photons": photons,
        "achieved_cps": photons / seconds,
        "lag_p50_s": float(np.percentile(lags, 50)),
        "lag_p99_s": float(np.percentile(lags, 99)),
        "lag_max_s": lag_max,
        # every photon in a FLID bin, and every trace and FLID row within the bound
        "sustained": bool(lag_max <= MAX_LAG_S and rec.flid_photons == photons),
        "flid_photons": rec.flid_photons,
        # None: the background had not caught up within --drain-timeout (the run was closed)
        "drain_s": rec.stop_time - t_last if drained else None,
        "call_max_ms": 1e3 * max(calls),
        "late_max_ms": 1e3 * max(lateness),
    }


# --- replay -----------------------------------------------------------------------------------


def replay_bench(workdir: Path) -> dict:
    from rawrun import RawRun, simulate_steps

    from qd_bluesky.callbacks import SerializedCallback, replay
    from qd_bluesky.catalog import open_catalog

    t = time.perf_counter()
    catalog = open_catalog(workdir / "catalog")
    startup = time.perf_counter() - t
    photons = simulate_steps([0.0], 60.0, seed=5)
    raw = RawRun(photons, catalog.photon_dir / "replay.h5", chunk_rows=65536)
    writer = SerializedCallback(catalog.writer)
    analyzer = LiveAnalyzer(writer)
    cuts = np.linspace(0, len(photons), 121).astype(int).tolist()  # a datum per 0.5 s
    for name, doc in raw.live(cuts):
        writer(name, doc)
        analyzer(name, doc)
    analyzer.wait(300)
    analyzer.close()
    replay(catalog, raw.uid)  # warm: numba caches, Tiled's first requests
    times = []
    for _ in range(3):
        t = time.perf_counter()
        result = replay(catalog, raw.uid)
        times.append(time.perf_counter() - t)
        assert result.matches_live, result.differences
    t = time.perf_counter()
    assert replay(catalog, raw.uid, write=False).matches_live
    compare_only = time.perf_counter() - t
    # The parts: analysis alone (no catalog), reading the documents.
    from qd_bluesky.catalog import iter_documents

    t = time.perf_counter()
    docs = list(iter_documents(catalog, raw.uid))
    read_docs = time.perf_counter() - t
    t = time.perf_counter()
    quiet = LiveAnalyzer(lambda n, d: None, threaded=False)
    for name, doc in docs:
        quiet(name, doc)
    analysis = time.perf_counter() - t
    catalog.close()
    return {
        "photons": len(photons),
        "rate": len(photons) / 60.0,
        "catalog_startup_s": startup,
        "replay_s": min(times),
        "replay_all_s": times,
        "compare_only_s": compare_only,
        "read_documents_s": read_docs,
        "analysis_s": analysis,
    }


def _seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[10e6, 20e6, 40e6])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--collect", type=float, default=0.5, help="collect period (s)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the card writes its files (default: a temporary directory under $TMPDIR; "
        "/dev/shm keeps the page cache's write-back off the two cores)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="longest wait for the derived stop after the raw stop (s)",
    )
    parser.add_argument(
        "--step-rows", type=int, default=None, help="AnalysisSettings.step_rows (default: its own)"
    )
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    report: dict = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        if not args.skip_live:
            # JIT warm-up outside the measurement.
            live(2e5, 2.0, args.collect, workdir)
            print(
                f"live analyzer, collect every {args.collect} s, {args.seconds:g} s per rate:\n"
                f"{'rate':>9} {'photons':>10} {'lag p50':>8} {'p99':>6} {'max':>6} "
                f"{'drain':>6} {'call':>7} {'RE late':>8}  sustained"
            )
            report["live"] = []
            settings = AnalysisSettings(
                **({} if args.step_rows is None else {"step_rows": args.step_rows})
            )
            for rate in args.rates:
                r = live(rate, args.seconds, args.collect, workdir, args.drain_timeout, settings)
                (workdir / f"live-{rate:.0e}.h5").unlink()
                report["live"].append(r)
                print(
                    f"{rate / 1e6:7.1f} M {r['photons']:10d} {r['lag_p50_s']:7.3f}s "
                    f"{r['lag_p99_s']:5.2f}s {r['lag_max_s']:5.2f}s {_seconds(r['drain_s'])} "
                    f"{r['call_max_ms']:5.2f}ms {r['late_max_ms']:6.1f}ms  "
                    f"{'yes' if r['sustained'] else 'no'}",
                    flush=True,
                )
        if not args.skip_replay:
            r = replay_bench(workdir)
            report["replay"] = {"photons": r["photons"], "seconds": r["replay_s"], **r}
            print(
                f"replay of {r['photons']} photons ({r['rate'] / 1e3:.0f} kc/s, 60 s): "
                f"{r['replay_s']:.2f} s (best of {len(r['replay_all_s'])}: "
                f"{', '.join(f'{t:.2f}' for t in r['replay_all_s'])}); of which documents "
                f"{r['read_documents_s']:.2f} s, analysis {r['analysis_s']:.2f} s, the rest "
                f"writing the derived run and comparing; without writing (--no-write) "
                f"{r['compare_only_s']:.2f} s; catalog start-up {r['catalog_startup_s']:.1f} s "
                "not counted"
            )
    report["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
