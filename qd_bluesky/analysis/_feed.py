"""One kernel call per chunk of photons feeding a stream's trace, decay, FLID and g2 together.

:func:`feed_photons` gives exactly the state that feeding the chunk to each accumulator's own
``add`` gives (integer sums; the same bins and delays bit for bit), in one kernel call instead
of four: :func:`qd_bluesky.analysis._kernels.sorted_accumulate`, which hands a chunk out of time
order to the per-photon one-pass ``stream_accumulate``. With
``workers=2`` and photons in time order, the chunk is cut at a FLID bin edge and the second
half is accumulated on a second thread (the numba kernel releases the GIL): it writes its own
FLID rows, and its trace, decay and g2 sums are added afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _kernels as k
from ._accumulators import DecayHistogram, IntensityTrace, grown, needed_bins
from ._errors import AnalysisError
from ._flid import Flid
from ._g2 import G2Pulsed
from ._threads import on_second_thread

#: Chunks smaller than this are not split between threads (the split costs a thread hand-off).
MIN_SPLIT_PHOTONS = 1 << 18

_NO_COUNTS_2D = np.zeros((0, 0), dtype=np.int64)
_NO_COUNTS = np.zeros(0, dtype=np.int64)
_NO_HIST = np.zeros((0, 0), dtype=np.uint32)
_NO_COARSE = np.zeros(0, dtype=np.int32)
_NO_M = np.zeros(0, dtype=np.int64)
_NO_U = np.zeros(0, dtype=np.uint16)
_NO_C = np.zeros(0, dtype=np.uint8)


@dataclass
class _Part:
    """The arrays one call of the kernel adds to (a worker's own, or the accumulators')."""

    trace_counts: NDArray[np.int64]
    trace_offset: int
    decay_counts: NDArray[np.int64]
    peaks: NDArray[np.int64]
    g2_hist: NDArray[np.int64]
    channel_counts: NDArray[np.int64]
    status: NDArray[np.int64]


def _new_status() -> NDArray[np.int64]:
    status = np.zeros(k.N_STATUS, dtype=np.int64)
    status[[k.ST_TRACE_TOP, k.ST_FLID_TOP, k.ST_BAD_ORDER, k.ST_BAD_CHANNEL]] = -1
    return status


def feed_photons(
    macrotime: ArrayLike,
    microtime: ArrayLike,
    channel: ArrayLike,
    *,
    trace: IntensityTrace | None = None,
    decay: DecayHistogram | None = None,
    flid: Flid | None = None,
    g2: G2Pulsed | None = None,
    workers: int = 1,
) -> None:
    """Add one chunk of photons to any of a stream's accumulators in one pass.

    Parameters
    ----------
    macrotime, microtime, channel
        The chunk (in time order where ``g2`` is given, after the previous chunk).
    trace, decay, flid, g2
        The accumulators to feed (None: skipped). Each ends in the state its own ``add``
        would leave.
    workers
        1 or 2 threads; two split a time-ordered chunk of a stream with g2 (whose order is
        checked), else one is used.

    Raises
    ------
    AnalysisError
        Photons out of time order (with ``g2``), or on a channel beyond the accumulators. The
        photons before the offending one have been added.
    """
    m = np.ascontiguousarray(macrotime, dtype=np.int64)
    u = np.ascontiguousarray(microtime, dtype=np.uint16)
    c = np.ascontiguousarray(channel, dtype=np.uint8)
    if not (m.ndim == u.ndim == c.ndim == 1 and len(m) == len(u) == len(c)):
        raise ValueError(
            f"photon columns must be 1-D of equal length: macrotime {m.shape}, "
            f"microtime {u.shape}, channel {c.shape}"
        )
    n = len(m)
    if n == 0:
        return
    if g2 is not None:
        if g2._last is not None and m[0] < g2._last:
            raise AnalysisError(
                f"chunk starts at macrotime {m[0]}, before the previous chunk's end "
                f"({g2._last}); chunks must come in time order"
            )
        if g2.microtime_unit_s is None:
            u = np.zeros(n, dtype=np.uint16)
    # Size the binned arrays for the last photon (the largest when in time order).
    for acc in (trace, flid):
        if acc is not None:
            _ensure_rows(acc, needed_bins(m[-1:], acc.t0_ticks, acc.ticks_per_bin))
    main = _Part(
        trace._counts if trace is not None else _NO_COUNTS_2D,
        0,
        decay._counts if decay is not None else _NO_COUNTS_2D,
        g2._peaks if g2 is not None else _NO_COUNTS,
        g2._hist if g2 is not None else _NO_COUNTS,
        np.zeros(256, dtype=np.int64),
        _new_status(),
    )
    start = 0
    cut = _split_point(m, flid, n) if workers > 1 and g2 is not None else n
    if cut < n:
        second = _worker_part(m, cut, trace, decay, g2)
        future = on_second_thread(_run, m, u, c, cut, n, second, trace, flid, g2)
        stop_a = _run(m, u, c, 0, cut, main, trace, flid, g2)
        stop_b = future.result()
        _check(main.status, m, c)
        _check(second.status, m, c)
        if stop_a < cut:  # only when the second half's sizes were wrong: redo it in one thread
            raise AssertionError("first half of a split chunk stopped early")
        _merge(main, second, trace, flid)
        start = stop_b
    while start < n:
        stop = _run(m, u, c, start, n, main, trace, flid, g2)
        _check(main.status, m, c)
        if stop < n:
            for acc in (trace, flid):
                if acc is not None:
                    _ensure_rows(acc, needed_bins(m[stop:], acc.t0_ticks, acc.ticks_per_bin))
            main.trace_counts = trace._counts if trace is not None else _NO_COUNTS_2D
        start = stop
    _settle(main, m, u, c, trace, decay, flid, g2)


def _split_point(m: NDArray[np.int64], flid: Flid | None, n: int) -> int:
    """Where a second worker starts: mid-chunk, moved to the first photon of a FLID bin."""
    if n < MIN_SPLIT_PHOTONS:
        return n
    mid = n // 2
    if flid is not None:
        d = int(m[mid]) - flid.t0_ticks
        if d < 0:
            return n
        lo, _ = k.bin_span(np.int64(d / flid.ticks_per_bin), flid.ticks_per_bin)
        mid = int(np.searchsorted(m, flid.t0_ticks + lo, side="left"))
    return mid if 0 < mid < n else n


def _worker_part(
    m: NDArray[np.int64],
    cut: int,
    trace: IntensityTrace | None,
    decay: DecayHistogram | None,
    g2: G2Pulsed | None,
) -> _Part:
    trace_counts, offset = _NO_COUNTS_2D, 0
    if trace is not None:
        offset = max(0, int(np.int64((int(m[cut]) - trace.t0_ticks) / trace.ticks_per_bin)))
        rows = needed_bins(m[-1:], trace.t0_ticks, trace.ticks_per_bin) - offset
        trace_counts = np.zeros((max(rows, 1), trace.n_channels), dtype=np.int64)
    return _Part(
        trace_counts,
        offset,
        np.zeros_like(decay._counts) if decay is not None else _NO_COUNTS_2D,
        np.zeros_like(g2._peaks) if g2 is not None else _NO_COUNTS,
        np.zeros_like(g2._hist) if g2 is not None else _NO_COUNTS,
        np.zeros(256, dtype=np.int64),
        _new_status(),
    )


def _run(m, u, c, start, stop, part: _Part, trace, flid, g2) -> int:
    tail_m, tail_u, tail_c = _NO_M, _NO_U, _NO_C
    if g2 is not None:
        tail_m, tail_u, tail_c = g2._tail_m, g2._tail_u, g2._tail_c
    return k.sorted_accumulate(
        m,
        u,
        c,
        start,
        stop,
        trace.t0_ticks if trace is not None else 0,
        trace.ticks_per_bin if trace is not None else 0.0,
        part.trace_counts,
        part.trace_offset,
        part.decay_counts,
        flid.t0_ticks if flid is not None else 0,
        flid.ticks_per_bin if flid is not None else 0.0,
        flid._coarse_of if flid is not None else _NO_COARSE,
        flid._counts if flid is not None else _NO_COUNTS,
        flid._hist if flid is not None else _NO_HIST,
        0,
        g2.channel_a if g2 is not None else -1,
        g2.channel_b if g2 is not None else -1,
        g2._window_ticks if g2 is not None else 0,
        g2.macrotime_unit_s if g2 is not None else 0.0,
        (g2.microtime_unit_s or 0.0) if g2 is not None else 0.0,
        g2.period_s if g2 is not None else 1.0,
        g2.n_peaks if g2 is not None else 0,
        g2.bins_per_period if g2 is not None else 1,
        part.peaks,
        part.g2_hist,
        tail_m,
        tail_u,
        tail_c,
        part.channel_counts,
        part.status,
    )


def _check(status: NDArray[np.int64], m: NDArray[np.int64], c: NDArray[np.uint8]) -> None:
    if (i := int(status[k.ST_BAD_ORDER])) >= 0:
        raise AnalysisError(
            f"photons out of time order: macrotime {m[i]} follows {m[i - 1]} "
            f"(photon {i} of the chunk)"
        )
    if (i := int(status[k.ST_BAD_CHANNEL])) >= 0:
        raise AnalysisError(
            f"photon on channel {c[i]}, but the accumulators have channels 0..{c[i] - 1} only"
        )


def _merge(main: _Part, second: _Part, trace: IntensityTrace | None, flid: Flid | None) -> None:
    """Add the second worker's sums to the accumulators' arrays (its FLID rows are its own)."""
    if trace is not None and second.status[k.ST_TRACE_TOP] >= 0:
        rows = int(second.status[k.ST_TRACE_TOP]) + 1
        off = second.trace_offset
        _ensure_rows(trace, off + rows)
        main.trace_counts = trace._counts
        trace._counts[off : off + rows] += second.trace_counts[:rows]
        main.status[k.ST_TRACE_TOP] = max(main.status[k.ST_TRACE_TOP], off + rows - 1)
    main.decay_counts += second.decay_counts
    main.peaks += second.peaks
    main.g2_hist += second.g2_hist
    main.channel_counts += second.channel_counts
    for slot in (k.ST_TRACE_EARLY, k.ST_FLID_EARLY, k.ST_DECAY_OVERFLOW, k.ST_FLID_OVERFLOW):
        main.status[slot] += second.status[slot]
    main.status[k.ST_FLID_TOP] = max(main.status[k.ST_FLID_TOP], second.status[k.ST_FLID_TOP])


def _ensure_rows(acc: IntensityTrace | Flid, needed: int) -> None:
    if isinstance(acc, Flid):
        if acc._hist.shape[0] < needed:
            acc._counts = grown(acc._counts, needed)
            acc._hist = grown(acc._hist, needed)
    elif acc._counts.shape[0] < needed:
        acc._counts = grown(acc._counts, needed)


def _settle(main: _Part, m, u, c, trace, decay, flid, g2) -> None:
    """Counters, bin tops and g2's carried-over tail, as the accumulators' own ``add`` keep them."""
    st = main.status
    if trace is not None:
        trace.early += int(st[k.ST_TRACE_EARLY])
        trace._n_bins = max(trace._n_bins, int(st[k.ST_TRACE_TOP]) + 1)
    if decay is not None:
        decay.overflow += int(st[k.ST_DECAY_OVERFLOW])
    if flid is not None:
        flid.early += int(st[k.ST_FLID_EARLY])
        flid.overflow += int(st[k.ST_FLID_OVERFLOW])
        flid._n_bins = max(flid._n_bins, int(st[k.ST_FLID_TOP]) + 1)
    if g2 is not None:
        g2.n_a += int(main.channel_counts[g2.channel_a])
        g2.n_b += int(main.channel_counts[g2.channel_b])
        g2._last = int(m[-1])
        g2._tail_m, g2._tail_u, g2._tail_c = g2_tail(g2, m, u, c)


def g2_tail(
    g2: G2Pulsed, m: NDArray[np.int64], u: NDArray[np.uint16], c: NDArray[np.uint8]
) -> tuple[NDArray[np.int64], NDArray[np.uint16], NDArray[np.uint8]]:
    """The photons of a and b that a later photon can still pair with, after chunk ``m``."""
    edge = m[-1] - g2._window_ticks
    first = int(np.searchsorted(m, edge, side="left"))
    if first == 0 and len(g2._tail_m):
        keep_old = g2._tail_m >= edge
        m = np.concatenate((g2._tail_m[keep_old], m))
        u = np.concatenate((g2._tail_u[keep_old], u))
        c = np.concatenate((g2._tail_c[keep_old], c))
    keep = (c[first:] == g2.channel_a) | (c[first:] == g2.channel_b)
    return m[first:][keep].copy(), u[first:][keep].copy(), c[first:][keep].copy()
