"""The TimeHarp 260 IOC's FIFO decode: records/s of the backend's read path beside numpy.

    python benchmarks/bench_harp_fifo.py [--records 20e6] [--rate 10e6] [--repeat 3] [--json]

Builds a TimeHarp 260 T3 record stream (HydraHarp v2 layout) of ``--records`` photons at
``--rate`` counts/s on a 40 MHz sync, two channels, marker edges every 1 ms on input 1, with
the overflow records the card writes (``iocs._harp_emulator._encode``), and cuts it into
``TH260_ReadFiFo`` reads of 131072 records. Then times, best of ``--repeat`` on the process's
CPU clock (one core):

* ``backend``: the IOC's path per read (``iocs._harp._RecordDecoder.block``: the numba
  ``RecordStream`` kernel with the overflow clock carried across reads, the marker rows split
  per input);
* ``numpy``: a plain-numpy decode of the same reads (masks, cumsum of the overflow counts,
  the clock carried across reads).

Both are checked against the photons and markers encoded. The card's own limit is ~40 M
records/s into its FIFO (TimeHarp 260 Pico); the decode must stay well above it.
``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from qd_bluesky.analysis._records import HYDRAHARP_V2_T3
from qd_bluesky.iocs._harp import _RecordDecoder
from qd_bluesky.iocs._harp_codes import TTREADMAX
from qd_bluesky.iocs._harp_emulator import _encode

SYNC_HZ = 40e6


def stream(n_photons: int, rate: float, seed: int = 0):
    """Records and the truth: photon (sync, dtime, channel), marker syncs."""
    rng = np.random.default_rng(seed)
    sync = np.cumsum(rng.geometric(rate / SYNC_HZ, n_photons)).astype(np.int64)
    dtime = rng.integers(0, 1000, n_photons)
    chan = rng.integers(0, 2, n_photons)
    markers = np.arange(int(SYNC_HZ / 1000), int(sync[-1]), int(SYNC_HZ / 1000), dtype=np.int64)
    times = np.concatenate([sync, markers])
    order = np.argsort(times, kind="stable")
    records = _encode(
        times[order],
        np.concatenate([dtime, np.zeros_like(markers)])[order],
        np.concatenate([chan, np.ones_like(markers)])[order],
        np.concatenate([np.zeros_like(sync), np.ones_like(markers)])[order],
        10,
        np.zeros(1, np.int64),
    )
    return records, (sync, dtime, chan), markers


def backend_decode(reads):
    decoder = _RecordDecoder(HYDRAHARP_V2_T3)
    blocks = [decoder.block(r) for r in reads]
    return (
        np.concatenate([b.macrotime for b in blocks]),
        np.concatenate([b.microtime for b in blocks]),
        np.concatenate([b.channel for b in blocks]),
        np.concatenate([b.marker_timestamp for b in blocks]),
    )


def numpy_decode(reads):
    clock = 0
    out = []
    for raw in reads:
        w = raw.astype(np.int64)
        special = w >> 31
        code = (w >> 25) & 0x3F
        nsync = w & 0x3FF
        over = (special == 1) & (code == 63)
        wraps = np.where(over, np.where(nsync == 0, 1, nsync), 0) * 1024
        base = clock + np.cumsum(wraps) - wraps  # the clock before each record
        t = base + np.where(over, 0, nsync)
        clock = int(base[-1] + wraps[-1]) if raw.size else clock
        photon = special == 0
        marker = (special == 1) & (code >= 1) & (code <= 15)
        out.append((t[photon], (w[photon] >> 10) & 0x7FFF, code[photon], t[marker]))
    return tuple(np.concatenate([o[k] for o in out]) for k in range(4))


def best(fn, repeat):
    result, t_best = None, math.inf
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        t_best = min(t_best, time.process_time() - t0)
    return t_best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=float, default=20e6)
    parser.add_argument("--rate", type=float, default=10e6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records, (sync, dtime, chan), markers = stream(int(args.records), args.rate)
    reads = [records[i : i + TTREADMAX] for i in range(0, records.size, TTREADMAX)]
    backend_decode(reads[:2])  # compile
    results = {"records": int(records.size), "photons": int(sync.size), "reads": len(reads)}
    for name, fn in (("backend", backend_decode), ("numpy", numpy_decode)):
        seconds, (m, d, c, mk) = best(lambda fn=fn: fn(reads), args.repeat)
        assert np.array_equal(m, sync) and np.array_equal(d, dtime) and np.array_equal(c, chan)
        assert np.array_equal(np.sort(mk), markers), name
        results[f"{name}_mrec_per_s"] = records.size / seconds / 1e6
        print(f"{name:8s} {records.size / seconds / 1e6:8.1f} M records/s ({seconds:.3f} s)")
    print(f"backend / numpy: {results['backend_mrec_per_s'] / results['numpy_mrec_per_s']:.1f}x")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
