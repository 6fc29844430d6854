"""Whole-file analysis: ``analyze_file`` against the same pipeline in plain numpy, in one run.

    python benchmarks/bench_analyze.py [--photons 20e6]

Writes a synthetic T3 PTU file of ``--photons`` records (a dot blinking between X0 and X-, two
detectors, 400 ns period, 25 ps bins, HydraHarp v2 records in the real sample file's header with
the units patched) and a Photon-HDF5 copy, then, from a warm page cache and after JIT warm-up:

* read: ``read_ptu`` beside a plain-numpy decoder of the same records and ``tttrlib.TTTR``;
  ``read_photon_hdf5`` beside plain h5py;
* analyze: ``analyze_file`` (read, trace, decay histogram, fits, FLID, g2, summary) beside the
  same stages written in numpy (the numpy stages of ``bench_kernels.py``) with the same fit.

Prints M photons/s for each and the ratio. Best of ``--repeat`` runs, one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from qd_bluesky.analysis import (
    PhotonAnalysis,
    StreamUnits,
    analyze_file,
    read_photon_hdf5,
    read_ptu,
    write_photon_hdf5,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "analysis"))
sys.path.insert(0, str(HERE))
from bench_kernels import best_time  # noqa: E402
from synthetic import generate  # noqa: E402

try:
    import tttrlib
except ImportError:  # optional: the "bench" extra
    tttrlib = None

TEMPLATE = HERE.parent / "tests" / "data" / "hydraharp_v20_t3.ptu"
OVERFLOW_SYNCS = 1024  # HydraHarp v2 T3: nsync has 10 bits
PERIOD, DT = 400e-9, 25e-12  # the paper's TimeHarp 260 at 2.5 MHz


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


def numpy_pipeline(table, bin_ms: float = 20.0):
    """analyze_file's stages in numpy: bincount trace/decay/FLID, vectorised FLID MLE, g2."""
    import bench_kernels as bk

    period = table.macrotime_unit_s
    m, u, c = table.macrotime, table.microtime.astype(np.int64), table.channel.astype(np.int64)
    t0 = m[0]
    ticks_trace = int(round(1e-3 / period))
    trace = np.bincount((m - t0) // ticks_trace * 2 + c)
    decay = np.bincount(c * table.microtime_bins + u, minlength=2 * table.microtime_bins)
    ticks_flid = int(round(bin_ms * 1e-3 / period))
    coarse = max(1, int(round(0.5e-9 / table.microtime_unit_s)))
    n_coarse = -(-table.microtime_bins // coarse)
    fb = (m - t0) // ticks_flid
    flid = np.bincount(fb * n_coarse + u // coarse, minlength=(int(fb[-1]) + 1) * n_coarse)
    # The same whole-decay fit as the package (shared scipy code): not a numpy-vs-numba stage.
    analysis = PhotonAnalysis(StreamUnits.of(table))
    analysis.decay.add(table.microtime, table.channel)
    analysis.n_photons, analysis.first_ticks, analysis.last_ticks = len(m), int(m[0]), int(m[-1])
    fit = analysis.fit()
    bk.BACKGROUND_CPS = fit.background_fraction * len(m) / ((m[-1] - m[0]) * period)
    bk.DECAY_START = fit.shift_s
    lifetimes = bk.numpy_lifetimes(flid.reshape(-1, n_coarse))
    # Pulse-resolved g2 between the channels, with pairs found by searchsorted.
    a, b = np.flatnonzero(c == 0), np.flatnonzero(c == 1)
    mb = m[b]
    lo = np.searchsorted(mb, m[a] - 4, side="left")
    hi = np.searchsorted(mb, m[a] + 4, side="right")
    count = hi - lo
    ia = np.repeat(a, count)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    ib = b[np.repeat(lo, count) + offsets]
    delay = (m[ib] - m[ia]) * period + (u[ib] - u[ia]) * table.microtime_unit_s
    k = np.floor(delay / period + 3.5).astype(np.int64)
    peaks = np.bincount(k[(k >= 0) & (k <= 6)], minlength=7)
    return trace, decay, flid, fit, lifetimes, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photons", type=float, default=20e6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n_target = int(args.photons)

    rate = 200e3  # detected c/s in X0: a bright dot at high pump power
    print(f"drawing {n_target / 1e6:.0f} M synthetic photons ...", flush=True)
    syn = generate(
        n_target / (0.83 * rate),
        ((rate, 125e-9), (0.66 * rate, 42e-9)),
        dwell_s=0.1,
        period_s=PERIOD,
        microtime_unit_s=DT,
        background_cps=300.0,
        seed=1,
    )
    n = len(syn)
    with tempfile.TemporaryDirectory() as tmp:
        ptu_path, h5_path = Path(tmp) / "bench.ptu", Path(tmp) / "bench.h5"
        n_records, header_len = write_ptu(ptu_path, syn.macrotime, syn.microtime, syn.channel)
        table = read_ptu(ptu_path)
        assert len(table) == n and np.array_equal(table.macrotime, syn.macrotime)
        write_photon_hdf5(h5_path, table)

        rows = []

        def row(stage, ours, numpy_t, ttt=None, note=""):
            rows.append((stage, n / ours / 1e6, n / numpy_t / 1e6, ttt and n / ttt / 1e6, note))

        analyze_file(ptu_path)  # JIT warm-up / cache load, and the page cache
        t_ptu, _ = best_time(lambda: read_ptu(ptu_path), args.repeat)
        t_np_ptu, dec = best_time(lambda: numpy_decode(ptu_path, header_len), args.repeat)
        assert np.array_equal(dec[0] - dec[0][0], table.macrotime - table.macrotime[0])
        t_ttt = None
        if tttrlib is not None:
            t_ttt, _ = best_time(lambda: tttrlib.TTTR(str(ptu_path), "PTU"), args.repeat)
        row("read PTU", t_ptu, t_np_ptu, t_ttt, f"{n_records / 1e6:.1f} M records")

        def h5py_read():
            with h5py.File(h5_path, "r") as f:
                g = f["photon_data"]
                return g["timestamps"][:], g["nanotimes"][:], g["detectors"][:]

        t_h5, _ = best_time(lambda: read_photon_hdf5(h5_path), args.repeat)
        t_h5py, _ = best_time(h5py_read, args.repeat)
        row("read Photon-HDF5", t_h5, t_h5py, note="numpy column: plain h5py")

        t_an, result = best_time(lambda: analyze_file(ptu_path), args.repeat)
        t_np_an, _ = best_time(lambda: numpy_pipeline(read_ptu(ptu_path)), args.repeat)
        row("analyze_file (PTU)", t_an, t_np_an, note=f"{t_an:.2f} s vs {t_np_an:.2f} s")
        t_an5, _ = best_time(lambda: analyze_file(h5_path), args.repeat)
        t_np5, _ = best_time(lambda: numpy_pipeline(read_photon_hdf5(h5_path)), args.repeat)
        row("analyze_file (HDF5)", t_an5, t_np5, note=f"{t_an5:.2f} s vs {t_np5:.2f} s")

    print(
        f"\n{n / 1e6:.1f} M photons; lifetime {result['lifetime_ns']:.1f} ns, "
        f"g2(0) {result['g2_zero']:.3f}; one core, best of {args.repeat}\n"
    )
    print(f"{'stage':<22}{'qd_bluesky':>12}{'numpy':>10}{'tttrlib':>10}{'ratio':>8}  M photons/s")
    for stage, ours, nump, ttt, note in rows:
        ttt_s = f"{ttt:10.0f}" if ttt else f"{'-':>10}"
        print(f"{stage:<22}{ours:12.0f}{nump:10.0f}{ttt_s}{ours / nump:8.1f}x  {note}")


if __name__ == "__main__":
    main()
