"""Whole-file analysis stage by stage: numba beside plain numpy and tttrlib, in one run.

    python benchmarks/bench_analyze.py [--photons 20e6] [--long-seconds 600] [--repeat 3] [--json]

Writes a synthetic T3 PTU file of ``--photons`` records (a dot blinking between X0 and X-, two
detectors, 400 ns period, 25 ps bins, HydraHarp v2 records in the real sample file's header with
the units patched), a Photon-HDF5 copy, and a long recording (``--long-seconds`` at 29 kc/s,
30 000 FLID bins of 20 ms at 600 s), then, from a warm page cache and after JIT warm-up, times

* read: ``read_ptu`` beside a plain-numpy decoder of the same records and ``tttrlib.TTTR``;
  ``read_photon_hdf5`` beside plain h5py;
* the per-photon stages (trace, decay histogram, FLID accumulation, g2), each alone through
  ``feed_photons`` and all four in its one pass (one and two threads), beside ``np.bincount`` /
  ``np.searchsorted`` versions and tttrlib's routine where it does the same work;
* the fit step and the batched FLID lifetime kernel (beside the vectorised numpy estimator);
* ``analyze_file`` end to end (PTU, Photon-HDF5, the long Photon-HDF5) with one and two threads,
  beside the same pipeline in numpy.

Prints M photons/s per stage (best of ``--repeat``) and the ratio to numpy. With ``--json`` the
last line is the table as one JSON object: ``{"photons", "long_photons", "repeat", "cpus",
"load_avg", "stages": [{"stage", "threads", "photons", "qd_bluesky_mps",
"qd_bluesky_cpu_mps", "numpy_mps", "tttrlib_mps", "ratio_numpy", "note"}]}`` (null where a
column does not apply). ``qd_bluesky_cpu_mps`` divides by the CPU time of all threads: on a
machine shared with other jobs it shows the work done per core, which the wall time does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from qd_bluesky.analysis import (
    DecayHistogram,
    Flid,
    G2Pulsed,
    IntensityTrace,
    analyze_file,
    fit_decay_models,
    flid_lifetimes,
    read_photon_hdf5,
    read_ptu,
    write_photon_hdf5,
)
from qd_bluesky.analysis._feed import feed_photons

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "analysis"))
sys.path.insert(0, str(HERE))
import bench_kernels as bk  # noqa: E402
from bench_kernels import best_time  # noqa: E402
from synthetic import generate  # noqa: E402

try:
    import tttrlib
except ImportError:  # optional: the "bench" extra
    tttrlib = None

TEMPLATE = HERE.parent / "tests" / "data" / "hydraharp_v20_t3.ptu"
OVERFLOW_SYNCS = 1024  # HydraHarp v2 T3: nsync has 10 bits
PERIOD, DT = 400e-9, 25e-12  # the paper's TimeHarp 260 at 2.5 MHz
TRACE_BIN_S, FLID_BIN_S, COARSE_S = 1e-3, 20e-3, 0.5e-9


def _header(n_records: int) -> bytes:
    """The template's header with the record count and the units of the synthetic stream."""
    raw = bytearray(TEMPLATE.read_bytes())
    header = raw[: raw.find(b"Header_End") + 48]

    def put(tag: bytes, value) -> None:
        at = header.find(tag) + 40  # tag: 32-byte name, int32 index, uint32 type, 8-byte value
        header[at : at + 8] = value.tobytes()

    put(b"TTResult_NumberOfRecords", np.int64(n_records))
    put(b"MeasDesc_Resolution", np.float64(DT))
    put(b"MeasDesc_GlobalResolution", np.float64(PERIOD))
    put(b"TTResult_SyncRate", np.int32(round(1 / PERIOD)).astype(np.int64))
    return bytes(header)


def encode_hydraharp_t3(macrotime: np.ndarray, microtime: np.ndarray, channel: np.ndarray):
    """HydraHarp v2 T3 records: photons, each after the overflow records it needs."""
    step = np.diff(macrotime // OVERFLOW_SYNCS, prepend=0)
    per_record = OVERFLOW_SYNCS - 1  # an overflow record carries up to 1023 wraps
    n_over = -(-step // per_record)
    photon_rows = np.arange(len(macrotime)) + np.cumsum(n_over)
    records = np.empty(len(macrotime) + int(n_over.sum()), dtype=np.uint32)
    # overflow records: full ones of 1023 wraps, then the remainder, just before each photon
    owner = np.repeat(np.arange(len(macrotime)), n_over)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(n_over) - n_over, n_over)
    wraps = np.where(rank < n_over[owner] - 1, per_record, step[owner] - per_record * rank)
    over_rows = photon_rows[owner] - n_over[owner] + rank
    records[over_rows] = (1 << 31) | (0x3F << 25) | wraps.astype(np.uint32)
    records[photon_rows] = (
        (channel.astype(np.uint32) << 25)
        | (microtime.astype(np.uint32) << 10)
        | (macrotime % OVERFLOW_SYNCS).astype(np.uint32)
    )
    return records


def write_ptu(path: Path, macrotime, microtime, channel) -> tuple[int, int]:
    records = encode_hydraharp_t3(macrotime, microtime, channel)
    header = _header(len(records))
    with open(path, "wb") as f:
        f.write(header)
        f.write(records.tobytes())
    return len(records), len(header)


def numpy_decode(path: Path, header_len: int):
    raw = np.fromfile(path, dtype=np.uint32, offset=header_len)
    special = raw >> 31
    chan = (raw >> 25) & 0x3F
    overflow = (special == 1) & (chan == 0x3F)
    nsync = (raw & 0x3FF).astype(np.int64)
    wraps = np.cumsum(np.where(overflow, np.where(nsync == 0, 1, nsync), 0))
    photon = special == 0
    macro = wraps[photon] * OVERFLOW_SYNCS + nsync[photon]
    micro = ((raw[photon] >> 10) & 0x7FFF).astype(np.uint16)
    return macro, micro, chan[photon].astype(np.uint8)


def numpy_stages(table):
    """Trace, decay, FLID histograms and g2 peaks of a table with np.bincount / searchsorted."""
    period = table.macrotime_unit_s
    m, u, c = table.macrotime, table.microtime.astype(np.int64), table.channel.astype(np.int64)
    d = m - m[0]
    trace = np.bincount(d // int(round(TRACE_BIN_S / period)) * 2 + c)
    decay = np.bincount(c * table.microtime_bins + u, minlength=2 * table.microtime_bins)
    coarse = max(1, int(round(COARSE_S / table.microtime_unit_s)))
    n_coarse = -(-table.microtime_bins // coarse)
    fb = d // int(round(FLID_BIN_S / period))
    flid = np.bincount(fb * n_coarse + u // coarse, minlength=(int(fb[-1]) + 1) * n_coarse)
    return trace, decay.reshape(2, -1), flid.reshape(-1, n_coarse), bk.numpy_g2(m, u, c)


def numpy_pipeline(table):
    """analyze_file's stages in numpy: bincounts, the same fit, vectorised FLID MLE, g2."""
    trace, decay, flid, peaks = numpy_stages(table)
    m = table.macrotime
    # The same whole-decay fit as the package (shared scipy code): not a numpy-vs-numba stage.
    fit = fit_decay_models(
        decay.sum(axis=0), table.microtime_unit_s, period_s=table.macrotime_unit_s
    ).best
    bk.BACKGROUND_CPS = fit.background_fraction * len(m) / ((m[-1] - m[0]) * PERIOD)
    bk.DECAY_START = fit.shift_s
    return trace, decay, flid, fit, bk.numpy_lifetimes(flid), peaks


def accumulators(table):
    t0 = int(table.macrotime[0])
    return dict(
        trace=IntensityTrace(TRACE_BIN_S, PERIOD, t0_ticks=t0, n_channels=2),
        decay=DecayHistogram(table.microtime_bins, 2),
        flid=Flid(FLID_BIN_S, PERIOD, DT, table.microtime_bins, t0_ticks=t0),
        g2=G2Pulsed(0, 1, macrotime_unit_s=PERIOD, microtime_unit_s=DT),
    )


def fed(table, parts, workers=1):
    acc = accumulators(table)
    kw = {p: acc[p] for p in parts}
    feed_photons(table.macrotime, table.microtime, table.channel, workers=workers, **kw)
    return kw


def draw(photons: float, rate: float, seed: int, seconds: float | None = None):
    return generate(
        seconds or photons / (0.83 * rate),
        ((rate, 125e-9), (0.66 * rate, 42e-9)),
        dwell_s=0.1,
        period_s=PERIOD,
        microtime_unit_s=DT,
        background_cps=300.0,
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photons", type=float, default=20e6)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with the table as JSON")
    args = parser.parse_args()
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print

    log(f"drawing {args.photons / 1e6:.0f} M synthetic photons and a {args.long_seconds:g} s "
        "recording ...", flush=True)  # fmt: skip
    syn = draw(args.photons, 200e3, seed=1)  # a bright dot at high pump power
    syn_long = draw(0, 35e3, seed=2, seconds=args.long_seconds)
    n = len(syn)
    rows = []

    def row(stage, photons, timing, numpy_t=None, ttt=None, threads=1, note=""):
        def rate(t):
            return photons / t / 1e6 if t else None

        wall, cpu = timing
        rows.append(
            {
                "stage": stage,
                "threads": threads,
                "photons": photons,
                "qd_bluesky_mps": rate(wall),
                "qd_bluesky_cpu_mps": rate(cpu),
                "numpy_mps": rate(numpy_t),
                "tttrlib_mps": rate(ttt),
                "ratio_numpy": numpy_t / wall if numpy_t else None,
                "note": note,
            }
        )
        log(f"  {stage} ({threads} thread{'s' * (threads > 1)}): {photons / wall / 1e6:.0f} M/s",
            flush=True)  # fmt: skip

    best = lambda fn: best_time(fn, args.repeat)[0]  # noqa: E731

    def ours(fn) -> tuple[float, float]:
        """Best wall time and best CPU time (all threads) of ``--repeat`` runs."""
        wall = cpu = math.inf
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall = min(wall, time.perf_counter() - t)
            cpu = min(cpu, time.process_time() - c)
        return wall, cpu

    with tempfile.TemporaryDirectory() as tmp:
        ptu_path, h5_path = Path(tmp) / "bench.ptu", Path(tmp) / "bench.h5"
        long_path = Path(tmp) / "long.h5"
        n_records, header_len = write_ptu(ptu_path, syn.macrotime, syn.microtime, syn.channel)
        table = read_ptu(ptu_path)
        assert len(table) == n and np.array_equal(table.macrotime, syn.macrotime)
        write_photon_hdf5(h5_path, table)
        write_photon_hdf5(long_path, syn_long.table())
        del syn, syn_long
        n_long = len(read_photon_hdf5(long_path))

        analyze_file(h5_path, workers=2)  # JIT warm-up / cache load, and the page cache
        analyze_file(ptu_path, workers=1)
        log("timing ...", flush=True)

        t_ptu = ours(lambda: read_ptu(ptu_path))
        t_np_ptu = best(lambda: numpy_decode(ptu_path, header_len))
        t_ttt = best(lambda: tttrlib.TTTR(str(ptu_path), "PTU")) if tttrlib else None
        row("read PTU", n, t_ptu, t_np_ptu, t_ttt, note=f"{n_records / 1e6:.1f} M records")

        def h5py_read():
            with h5py.File(h5_path, "r") as f:
                g = f["photon_data"]
                return g["timestamps"][:], g["nanotimes"][:], g["detectors"][:]

        t_h5 = ours(lambda: read_photon_hdf5(h5_path))
        row("read Photon-HDF5", n, t_h5, best(h5py_read), note="numpy column: plain h5py")

        # the per-photon stages, alone and in the one pass
        m, u, c = table.macrotime, table.microtime.astype(np.int64), table.channel
        c64, d = c.astype(np.int64), table.macrotime - table.macrotime[0]
        numpy_stage = {
            "trace": lambda: np.bincount(d // 2500 * 2 + c64),
            "decay": lambda: np.bincount(c64 * table.microtime_bins + u),
            "flid": lambda: np.bincount(d // 50_000 * 800 + u // 20),
            "g2": lambda: bk.numpy_g2(m, u, c),
        }
        ttt_stage = {}
        if tttrlib is not None:
            m64 = (m - m[0]).astype(np.uint64)
            u_by_channel = [table.microtime[c == k].astype(np.int32) for k in (0, 1)]
            t_ps = (m - m[0]) * 400_000 + u * 25
            t_a, t_b = t_ps[c == 0].astype(np.uint64), t_ps[c == 1].astype(np.uint64)
            ttt_stage = {
                "trace": lambda: bk.tttrlib_trace(m64),
                "decay": lambda: bk.tttrlib_decay(u_by_channel),
                "g2": lambda: bk.tttrlib_g2(t_a, t_b),
            }
        notes = {
            "trace": "1 ms bins per channel",
            "decay": "per channel",
            "flid": "20 ms x 0.5 ns histograms; tttrlib has none",
            "g2": "pulsed, +-3 peaks; tttrlib: multi-tau correlator",
        }
        t_numpy_all = 0.0
        for part in ("trace", "decay", "flid", "g2"):
            t_np = best(numpy_stage[part])
            t_numpy_all += t_np
            ttt = best(ttt_stage[part]) if part in ttt_stage else None
            row(part, n, ours(lambda p=part: fed(table, [p])), t_np, ttt, note=notes[part])
        everything = ["trace", "decay", "flid", "g2"]
        for workers in (1, 2):
            t_all = ours(lambda w=workers: fed(table, everything, w))
            row("trace+decay+FLID+g2, one pass", n, t_all, t_numpy_all, threads=workers,
                note="numpy: the four stages one after the other")  # fmt: skip

        acc = fed(table, everything)
        counts = acc["decay"].summed
        t_fit = ours(lambda: fit_decay_models(counts, DT, period_s=PERIOD))
        row("decay fit (mono + bi)", n, t_fit,
            note=f"{t_fit[0]:.3f} s for any photon count; the same fit in both")  # fmt: skip
        hist = acc["flid"].histograms
        fit = fit_decay_models(counts, DT, period_s=PERIOD).best
        bk.DECAY_START, bk.BACKGROUND_CPS = fit.shift_s, 300.0

        def lifetimes():
            return flid_lifetimes(
                hist, coarse_bin_s=COARSE_S, period_s=PERIOD, decay_start_s=fit.shift_s,
                background_counts=300.0 * FLID_BIN_S,
            )  # fmt: skip

        row("FLID lifetimes (batched)", n, ours(lifetimes), best(lambda: bk.numpy_lifetimes(hist)),
            note=f"{len(hist)} bins; numpy: vectorised Fisher scoring")  # fmt: skip

        long_table = read_photon_hdf5(long_path)
        cases = (
            ("analyze_file (PTU)", ptu_path, n, lambda: numpy_pipeline(read_ptu(ptu_path))),
            ("analyze_file (HDF5)", h5_path, n, lambda: numpy_pipeline(read_photon_hdf5(h5_path))),
            (f"analyze_file (HDF5, {args.long_seconds:g} s)", long_path, n_long,
             lambda: numpy_pipeline(read_photon_hdf5(long_path))),
        )  # fmt: skip
        for stage, path, photons, plain in cases:
            t_np = best(plain)
            for workers in (1, 2):
                t_an = ours(lambda p=path, w=workers: analyze_file(p, workers=w))
                bins = len(analyze_file(path)["flid"]["lifetime_ns"])
                row(stage, photons, t_an, t_np, threads=workers,
                    note=f"{bins} FLID bins; {t_an[0]:.2f} s vs numpy {t_np:.2f} s")  # fmt: skip
        del long_table

    load = os.getloadavg()
    print(
        f"\n{n / 1e6:.1f} M photons ({n_long / 1e6:.1f} M in the long file); best of "
        f"{args.repeat}; {os.cpu_count()} cores, load average {load[0]:.1f} (shared machine)\n"
    )
    print(f"{'stage':<34}{'thr':>4}{'qd_bluesky':>11}{'per cpu-s':>10}{'numpy':>8}{'tttrlib':>9}"
          f"{'ratio':>8}  M photons/s (wall; per CPU second of all threads); notes")  # fmt: skip
    fmt = lambda v: f"{v:.0f}" if v is not None else "-"  # noqa: E731
    for r in rows:
        ratio = f"{r['ratio_numpy']:.1f}x" if r["ratio_numpy"] else "-"
        print(
            f"{r['stage']:<34}{r['threads']:>4}{fmt(r['qd_bluesky_mps']):>11}"
            f"{fmt(r['qd_bluesky_cpu_mps']):>10}{fmt(r['numpy_mps']):>8}"
            f"{fmt(r['tttrlib_mps']):>9}{ratio:>8}  {r['note']}"
        )
    if args.json:
        out = {
            "photons": n,
            "long_photons": n_long,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "load_avg": [round(x, 2) for x in load],
            "stages": rows,
        }
        print(json.dumps(out, allow_nan=False))


if __name__ == "__main__":
    main()
