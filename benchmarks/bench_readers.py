"""Record decoding of every time-tag format: ``read_photons`` beside numpy, ptufile, tttrlib
and phconvert, in one run.

    python benchmarks/bench_readers.py [--records 10e6] [--repeat 3] [--json]

For each format (PTU HydraHarp v2 T3, HT3 v1 and v2, HT2 v2, PT3, PT2, T3R, SPC-1xx) writes
``--records`` photons (T3: one per 70 syncs on average, a single dot at ~35 kcps on a
2.5 MHz laser; T2: one per 10**6 ticks, 1 us at 1 ps) with the overflow records each
format needs (HydraHarp T3 wraps every 1024 syncs: ~7 % of its records), headers from
the real sample files or the tests' writers, then times from a warm page cache:

* ``read``: ``read_photons`` on the file (header, read, decode, table), M records/s;
* ``kernel``: the numba decoder alone on the records in memory;
* ``numpy``: a plain-numpy decode of the same records (cumsum of the overflows, masks);
* ``ptufile`` / ``tttrlib`` / ``phconvert``: their whole-file read, where they read the
  format (ptufile: PTU; tttrlib: PTU, HT3, SPC-130; phconvert: HT3 v1.0, PT3, T3R).

Best of ``--repeat`` on the process's CPU clock (``--clock wall`` for the wall clock: on a
shared machine that counts other jobs' time too); one core. Every decode is checked
against the photons written.
``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qd_bluesky.analysis import read_photons
from qd_bluesky.analysis._records import (
    HYDRAHARP_V1_T3,
    HYDRAHARP_V2_T2,
    HYDRAHARP_V2_T3,
    PICOHARP_T2,
    PICOHARP_T3,
    SPC_FIFO,
    TIMEHARP200_T3,
    RecordLayout,
    decode_records,
)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
sys.path.insert(0, str(HERE.parent / "tests" / "analysis"))
from legacy_writers import picoharp_header  # noqa: E402

try:
    import ptufile
except ImportError:  # pragma: no cover
    ptufile = None
try:
    import tttrlib
except ImportError:  # optional: the "bench" extra
    tttrlib = None
try:
    import phconvert
except ImportError:
    phconvert = None

logging.getLogger("ptufile").setLevel(logging.CRITICAL)  # header quirks of the template


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_time(fn: Callable[[], object], repeat: int, clock: str) -> tuple[float, object]:
    """Best of ``repeat`` calls, on the process's CPU clock (a shared machine's other jobs
    do not count; every reader here runs on one thread) or the wall clock."""
    now, best, out = CLOCKS[clock], math.inf, None
    for _ in range(repeat):
        t = now()
        out = fn()
        best = min(best, now() - t)
    return best, out


# --- synthetic events and their records ---------------------------------------------------
def events(n: int, mean_gap: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.geometric(1 / mean_gap, n)).astype(np.int64)
    channel = rng.integers(0, 2, n).astype(np.int64)
    micro = rng.integers(0, 4096, n).astype(np.int64)
    return times, channel, micro


def with_overflows(times: np.ndarray, words: np.ndarray, wrap: int, overflow: int, multi: bool):
    """Interleave overflow records (one per wrap, or one carrying the count) before photons."""
    wraps = times // wrap
    k = np.diff(wraps, prepend=0)
    n_over = np.minimum(k, 1) if multi else k
    at = np.arange(times.size) + np.cumsum(n_over)
    out = np.empty(times.size + int(n_over.sum()), dtype=np.uint32)
    out[at] = words | (times - wraps * wrap).astype(np.uint32)
    owner = np.repeat(np.arange(times.size), n_over)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(n_over) - n_over, n_over)
    count = k[owner] if multi else np.ones(owner.size, np.int64)
    out[at[owner] - n_over[owner] + rank] = overflow | (count if multi else 0)
    return out


def hydraharp_t3(t, c, u, multi):
    words = ((c << 25) | ((u * 3) << 10)).astype(np.uint32)  # 15-bit dtime
    return with_overflows(t, words, 1024, (1 << 31) | (63 << 25), multi)


def hydraharp_t2(t, c, u):
    return with_overflows(t, (c << 25).astype(np.uint32), 1 << 25, (1 << 31) | (63 << 25), True)


def picoharp_t3(t, c, u):
    words = (((c + 1) << 28) | (u << 16)).astype(np.uint32)
    return with_overflows(t, words, 65536, 0xF << 28, False)


def picoharp_t2(t, c, u):
    return with_overflows(t, (c << 28).astype(np.uint32), 210698240, 0xF << 28, False)


def timeharp200(t, c, u):
    words = ((1 << 30) | (c << 28) | (u << 16)).astype(np.uint32)
    return with_overflows(t, words, 65536, 0x800 << 16, False)


def spc(t, c, u):
    words = ((c << 12) | ((4095 - u) << 16)).astype(np.uint32)
    return with_overflows(t, words, 4096, (1 << 31) | (1 << 30), True)


# --- headers ------------------------------------------------------------------------------
def _patched(template: Path, offset: int, fields: dict[int, tuple[str, object]]) -> bytes:
    head = bytearray(template.read_bytes()[:offset])
    for at, (fmt, value) in fields.items():
        struct.pack_into(fmt, head, at, value)
    return bytes(head)


def _ptu_header(n: int) -> bytes:
    raw = bytearray((DATA / "hydraharp_v20_t3.ptu").read_bytes())
    head = raw[: raw.find(b"Header_End") + 48]
    at = head.find(b"TTResult_NumberOfRecords") + 40
    struct.pack_into("<q", head, at, n)
    return bytes(head)


def _legacy_header(name: str, n: int) -> bytes:
    """The sample file's header with the record count patched (its last fields)."""
    data = (DATA / "libpicoquant" / name).read_bytes()
    sizes = {"hydraharp_v10.ht3": 1050, "hydraharp_v20.ht3": 53606, "hydraharp_v20.ht2": 25}
    if name.endswith(".t3r"):
        offset = 592
        return _patched(DATA / "libpicoquant" / name, offset, {offset - 8: ("<i", n)})
    offset = len(data) - 4 * sizes[name]
    return _patched(DATA / "libpicoquant" / name, offset, {offset - 8: ("<q", n)})


FORMATS: dict[str, tuple[Callable, RecordLayout, Callable[[int], bytes]]] = {
    "ptu": (lambda t, c, u: hydraharp_t3(t, c, u, True), HYDRAHARP_V2_T3, _ptu_header),
    "ht3-v1": (
        lambda t, c, u: hydraharp_t3(t, c, u, False),
        HYDRAHARP_V1_T3,
        lambda n: _legacy_header("hydraharp_v10.ht3", n),
    ),
    "ht3-v2": (
        lambda t, c, u: hydraharp_t3(t, c, u, True),
        HYDRAHARP_V2_T3,
        lambda n: _legacy_header("hydraharp_v20.ht3", n),
    ),
    "ht2": (hydraharp_t2, HYDRAHARP_V2_T2, lambda n: _legacy_header("hydraharp_v20.ht2", n)),
    "pt3": (picoharp_t3, PICOHARP_T3, lambda n: picoharp_header(3, n, 10_000_000, 0.004)),
    "pt2": (picoharp_t2, PICOHARP_T2, lambda n: picoharp_header(2, n, 1000, 0.004)),
    "t3r": (timeharp200, TIMEHARP200_T3, lambda n: _legacy_header("timeharp_v50.t3r", n)),
    "spc": (spc, SPC_FIFO, lambda n: struct.pack("<I", (1 << 31) | 500)),
}


# --- plain numpy decoders -----------------------------------------------------------------
def numpy_decode(raw: np.ndarray, layout: RecordLayout) -> np.ndarray:
    """Photon macrotimes by masks and a cumulative sum of the overflows (no markers)."""
    r = raw.astype(np.int64)
    if layout.family == "hydraharp":
        mask = 0x3FF if layout.mode == "T3" else 0x1FFFFFF
        over = (r >> 25) == 0x7F
        k = np.where(r & mask, r & mask, 1) if layout.multi else 1
        clock = np.cumsum(np.where(over, k, 0)) * layout.wrap
        photon = (r >> 31) == 0
        return (clock + (r & mask))[photon]
    if layout.family in ("picoharp_t3", "picoharp_t2"):
        t3 = layout.family == "picoharp_t3"
        mask = 0xFFFF if t3 else 0x0FFFFFFF
        c = r >> 28
        over = (c == 15) & (((r >> 16) & 0xFFF) == 0 if t3 else (r & 0xF) == 0)
        photon = (c >= 1) & (c <= 4) if t3 else c <= 4
        return (np.cumsum(over) * layout.wrap + (r & mask))[photon]
    if layout.family == "timeharp200":
        valid = ((r >> 30) & 1) == 1
        over = ~valid & (((r >> 16) & 0x800) != 0)
        return (np.cumsum(over) * layout.wrap + (r & 0xFFFF))[valid]
    flags = r >> 28
    multi = (flags & 0xD) == 0xC
    k = np.where(multi, r & 0x0FFFFFF, (flags & 0x4) != 0)
    photon = (flags & 0x8) == 0
    return (np.cumsum(k) * layout.wrap + (r & 0xFFF))[photon]


# --- other readers ------------------------------------------------------------------------
def others(fmt: str, path: Path) -> dict[str, Callable[[], np.ndarray]]:
    out: dict[str, Callable[[], np.ndarray]] = {}
    if ptufile is not None and fmt == "ptu":

        def read_ptufile():
            with ptufile.PtuFile(path) as f:
                d = f.decode_records(f.read_records())
            return d["time"][d["channel"] >= 0]

        out["ptufile"] = read_ptufile
    tttr_kind = {"ptu": "PTU", "ht3-v1": "HT3", "ht3-v2": "HT3", "spc": "SPC-130"}.get(fmt)
    if tttrlib is not None and tttr_kind:
        out["tttrlib"] = lambda: np.asarray(tttrlib.TTTR(str(path), tttr_kind).macro_times)
    if phconvert is not None and fmt in ("ht3-v1", "pt3", "t3r"):
        loader = {
            "ht3-v1": phconvert.pqreader.load_ht3,
            "pt3": phconvert.pqreader.load_pt3,
            "t3r": phconvert.pqreader.load_t3r,
        }[fmt]
        # phconvert keeps overflow records as events of a special detector: drop them
        photon = {"ht3-v1": lambda d: d < 64, "pt3": lambda d: (d >= 1) & (d <= 4)}.get(
            fmt, lambda d: np.ones(d.size, bool)
        )

        def read_phconvert():
            out = loader(str(path))
            return out[0][photon(out[1])]

        out["phconvert"] = read_phconvert
    return out


def run(n_records: int, repeat: int, workdir: Path, clock: str = "cpu") -> dict:
    results: dict[str, dict] = {}
    for fmt, (encode, layout, header) in FORMATS.items():
        times, channel, micro = events(n_records, 70 if layout.mode == "T3" else 1e6)
        records = encode(times, channel, micro)
        path = workdir / f"bench.{fmt}"
        path.write_bytes(header(records.size) + records.tobytes())
        n = records.size
        decode_records(records[:1000], layout)  # JIT warm-up (cached after the first run)
        read_photons(path)
        row: dict[str, float] = {"records": n, "photons": int(times.size)}
        t, table = best_time(lambda p=path: read_photons(p), repeat, clock)
        assert np.array_equal(table.macrotime, times), fmt
        row["read"] = n / t / 1e6
        t, decoded = best_time(lambda r=records, lay=layout: decode_records(r, lay), repeat, clock)
        row["kernel"] = n / t / 1e6
        t, macro = best_time(lambda r=records, lay=layout: numpy_decode(r, lay), repeat, clock)
        assert np.array_equal(macro, times), fmt
        row["numpy"] = n / t / 1e6
        for name, fn in others(fmt, path).items():
            try:
                t, macro = best_time(fn, repeat, clock)
            except Exception as exc:  # report, do not hide: another reader refusing the file
                row[name] = f"failed: {type(exc).__name__}"
                continue
            same = macro.size == times.size and np.array_equal(macro.astype(np.int64), times)
            row[name] = n / t / 1e6 if same else f"differs ({macro.size} photons)"
        results[fmt] = row
        path.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=float, default=10e6, help="photons per file (10e6)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="time on the process's CPU clock (default; what one core does on a shared "
        "machine) or the wall clock",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(int(args.records), args.repeat, Path(tmp), args.clock)
    cols = ["read", "kernel", "numpy", "ptufile", "tttrlib", "phconvert"]
    print(f"{'format':8} {'records':>10} " + " ".join(f"{c:>10}" for c in cols))
    for fmt, row in results.items():
        cells = []
        for c in cols:
            v = row.get(c, "")
            cells.append(f"{v:10.0f}" if isinstance(v, float) else f"{str(v)[:10]:>10}")
        print(f"{fmt:8} {row['records']:>10} " + " ".join(cells))
    print(
        f"M records/s, best of {args.repeat} on the {args.clock} clock "
        "(one core; 'read' is read_photons on the file)"
    )
    if args.json:
        summary = {"unit": "M records/s", "clock": args.clock, "repeat": args.repeat}
        print(json.dumps({**summary, "formats": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
