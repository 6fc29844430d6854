"""Numba decoders of the raw time-tag records of every supported format, and their result.

One kernel per record family, each a single pass over the 32-bit words that unwraps the
overflow records into an absolute clock and writes photons from the front of the output
arrays and markers from the back (photons + markers never exceed the records). The
readers (``_ptu``, ``_picoquant``, ``_spc``) only parse headers and pick a
:class:`RecordLayout`; what is a photon, a marker, a sync or an overflow is decided here,
from the manufacturers' documented layouts:

* PicoQuant HydraHarp family (HT2/HT3 and the HydraHarp, TimeHarp 260, MultiHarp and
  PicoHarp 330 PTU records): special(1) channel(6) dtime(15) nsync(10) in T3,
  special(1) channel(6) time(25) in T2; special channel 63 is an overflow (from
  version 2 on it carries the number of wraps, 0 meaning 1), 1..15 are markers, and in T2
  channel 0 is a sync record.
* PicoHarp 300 (PT2/PT3 and PTU): channel(4) dtime(12) nsync(16) in T3 (channels 1..4
  are detectors), channel(4) time(28) in T2 (0..4); channel 15 is special: low bits 0
  mean an overflow, otherwise marker bits.
* TimeHarp 200 (T3R): reserved(1) valid(1) route(2) data(12) timetag(16); an invalid
  record is an overflow when data bit 11 is set, otherwise markers (data bits 0..2).
* Becker & Hickl SPC-130/140/150/160/830 FIFO: invalid(1) mtov(1) gap(1) mark(1) adc(12)
  rout(4) mt(12); invalid+mtov without mark carries the number of overflows in bits 0..27;
  the ADC counts from the photon to the next sync, so the microtime is 4095 - adc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numpy.typing import NDArray

from ._photons import MARKER_DTYPE

# Slots of the decoder state carried from one chunk to the next.
_N_PHOTONS, _N_MARKERS, _N_INVALID, _N_SYNC, _FIRST_SYNC, _LAST_SYNC = 0, 1, 2, 3, 4, 5
_CLOCK, _N_BACKWARDS, _LAST_MACRO, _MAX_MICRO, _N_GAP = 6, 7, 8, 9, 10
_STATE_SLOTS = 11

Family = Literal["hydraharp", "picoharp_t3", "picoharp_t2", "timeharp200", "spc"]


@dataclass(frozen=True)
class RecordLayout:
    """How to decode one format's 32-bit records.

    ``wrap`` is the clock period of one overflow in macrotime units; ``multi`` whether an
    overflow record carries a count of wraps (HydraHarp v2 and later).
    """

    family: Family
    mode: Literal["T2", "T3"]
    wrap: int
    multi: bool = False


HYDRAHARP_V1_T3 = RecordLayout("hydraharp", "T3", 1024)
HYDRAHARP_V2_T3 = RecordLayout("hydraharp", "T3", 1024, multi=True)
HYDRAHARP_V1_T2 = RecordLayout("hydraharp", "T2", 33_552_000)
HYDRAHARP_V2_T2 = RecordLayout("hydraharp", "T2", 1 << 25, multi=True)
PICOHARP_T3 = RecordLayout("picoharp_t3", "T3", 65_536)
PICOHARP_T2 = RecordLayout("picoharp_t2", "T2", 210_698_240)
TIMEHARP200_T3 = RecordLayout("timeharp200", "T3", 65_536)
SPC_FIFO = RecordLayout("spc", "T3", 4096, multi=True)


# Photon and overflow records come interleaved at random when the clock wraps often (the
# HydraHarp T3 nsync field wraps every 1024 syncs): there a branch per record mispredicts,
# so that kernel is branch-free on them: each record is written to the next photon row and
# the row is kept only if it is a photon; the rare records (markers, undefined codes) take a
# branch. The speculative write never reaches a marker row (photons + markers <= records
# before it). Where overflows are rare (the other layouts) the plain branches are faster.


@numba.njit(cache=True)
def _hydraharp_t3(raw, wrap, multi, macro, micro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    max_micro = state[_MAX_MICRO]
    end = macro.size
    for i in range(raw.size):
        w = np.int64(raw[i])
        special = w >> 31
        code = (w >> 25) & 0x3F
        tt = w & 0x3FF
        t = clock + tt
        photon = 1 - special
        macro[n_ph] = t
        chan[n_ph] = code
        d = (w >> 10) & 0x7FFF
        micro[n_ph] = d
        max_micro = max(max_micro, d * photon)
        n_back += photon & (t < last)
        last += photon * (t - last)
        n_ph += photon
        over = special & (code == 63)
        k = (tt + (tt == 0)) if multi else 1
        clock += over * k * wrap
        if special and code != 63:
            if 1 <= code <= 15:
                n_mark += 1
                macro[end - n_mark] = t
                chan[end - n_mark] = code
            else:
                n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last
    state[_MAX_MICRO] = max_micro


@numba.njit(cache=True)
def _hydraharp_t2(raw, wrap, multi, macro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    n_sync, first_sync, last_sync = state[_N_SYNC], state[_FIRST_SYNC], state[_LAST_SYNC]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    end = macro.size
    time_mask = 0x1FFFFFF
    for i in range(raw.size):
        w = np.int64(raw[i])
        t = clock + (w & time_mask)
        if w < 0x80000000:
            macro[n_ph] = t
            chan[n_ph] = (w >> 25) & 0x3F
            n_back += t < last
            last = t
            n_ph += 1
            continue
        code = (w >> 25) & 0x3F
        if code == 63:
            k = w & time_mask if multi else 1
            clock += wrap * (k if k else 1)
        elif 1 <= code <= 15:
            n_mark += 1
            macro[end - n_mark] = t
            chan[end - n_mark] = code
        elif code == 0:
            if n_sync == 0:
                first_sync = t
            last_sync = t
            n_sync += 1
        else:
            n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_N_SYNC], state[_FIRST_SYNC], state[_LAST_SYNC] = n_sync, first_sync, last_sync
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last


@numba.njit(cache=True)
def _picoharp_t3(raw, wrap, macro, micro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    max_micro = state[_MAX_MICRO]
    end = macro.size
    for i in range(raw.size):
        w = np.int64(raw[i])
        c = w >> 28
        d = (w >> 16) & 0xFFF
        t = clock + (w & 0xFFFF)
        if 1 <= c <= 4:
            macro[n_ph] = t
            micro[n_ph] = d
            chan[n_ph] = c - 1
            max_micro = max(max_micro, d)
            n_back += t < last
            last = t
            n_ph += 1
        elif c == 15 and d == 0:
            clock += wrap
        elif c == 15 and d & 0xF:
            n_mark += 1
            macro[end - n_mark] = t
            chan[end - n_mark] = d & 0xF
        else:
            n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last
    state[_MAX_MICRO] = max_micro


@numba.njit(cache=True)
def _picoharp_t2(raw, wrap, macro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    end = macro.size
    for i in range(raw.size):
        w = np.int64(raw[i])
        c = w >> 28
        t = clock + (w & 0x0FFFFFFF)
        if c <= 4:
            macro[n_ph] = t
            chan[n_ph] = c
            n_back += t < last
            last = t
            n_ph += 1
        elif c == 15:
            if w & 0xF:
                n_mark += 1
                macro[end - n_mark] = t
                chan[end - n_mark] = w & 0xF
            else:
                clock += wrap
        else:
            n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last


@numba.njit(cache=True)
def _timeharp200(raw, wrap, macro, micro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    max_micro = state[_MAX_MICRO]
    end = macro.size
    for i in range(raw.size):
        w = np.int64(raw[i])
        d = (w >> 16) & 0xFFF
        t = clock + (w & 0xFFFF)
        if (w >> 30) & 1:
            macro[n_ph] = t
            micro[n_ph] = d
            chan[n_ph] = (w >> 28) & 0x3
            max_micro = max(max_micro, d)
            n_back += t < last
            last = t
            n_ph += 1
        elif d & 0x800:
            clock += wrap
        elif d & 0x7:
            n_mark += 1
            macro[end - n_mark] = t
            chan[end - n_mark] = d & 0x7
        else:
            n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last
    state[_MAX_MICRO] = max_micro


@numba.njit(cache=True)
def _spc(raw, wrap, macro, micro, chan, state):  # pragma: no cover - numba
    n_ph, n_mark, n_inv = state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID]
    clock, n_back, last = state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO]
    max_micro, n_gap = state[_MAX_MICRO], state[_N_GAP]
    end = macro.size
    for i in range(raw.size):
        w = np.int64(raw[i])
        flags = w >> 28  # invalid, mtov, gap, mark
        if flags & 0x2:
            n_gap += 1
        if flags & 0x8 and flags & 0x4 and not flags & 0x1:
            clock += wrap * (w & 0x0FFFFFFF)
            continue
        if flags & 0x4:
            clock += wrap
        t = clock + (w & 0xFFF)
        if not flags & 0x8:
            d = 4095 - ((w >> 16) & 0xFFF)
            macro[n_ph] = t
            micro[n_ph] = d
            chan[n_ph] = (w >> 12) & 0xF
            max_micro = max(max_micro, d)
            n_back += t < last
            last = t
            n_ph += 1
        elif flags & 0x1:
            n_mark += 1
            macro[end - n_mark] = t
            chan[end - n_mark] = (w >> 12) & 0xF
        else:
            n_inv += 1
    state[_N_PHOTONS], state[_N_MARKERS], state[_N_INVALID] = n_ph, n_mark, n_inv
    state[_CLOCK], state[_N_BACKWARDS], state[_LAST_MACRO] = clock, n_back, last
    state[_MAX_MICRO], state[_N_GAP] = max_micro, n_gap


def _run(layout: RecordLayout, raw, macro, micro, chan, state) -> None:
    family = layout.family
    if family == "hydraharp" and layout.mode == "T3":
        _hydraharp_t3(raw, layout.wrap, layout.multi, macro, micro, chan, state)
    elif family == "hydraharp":
        _hydraharp_t2(raw, layout.wrap, layout.multi, macro, chan, state)
    elif family == "picoharp_t3":
        _picoharp_t3(raw, layout.wrap, macro, micro, chan, state)
    elif family == "picoharp_t2":
        _picoharp_t2(raw, layout.wrap, macro, chan, state)
    elif family == "timeharp200":
        _timeharp200(raw, layout.wrap, macro, micro, chan, state)
    else:
        _spc(raw, layout.wrap, macro, micro, chan, state)


@dataclass
class Decoded:
    """Photons, markers and record counts of one decoded file."""

    macrotime: NDArray[np.int64]
    #: zeros in T2
    microtime: NDArray[np.uint16]
    channel: NDArray[np.uint8]
    #: MARKER_DTYPE rows, None when the file has no marker records
    markers: NDArray | None
    n_invalid: int
    #: photons whose macrotime is earlier than the photon before (corrupt records)
    n_backwards: int
    max_microtime: int
    #: HydraHarp-family T2 sync records: how many, and the first and last time
    n_sync: int
    sync_span: tuple[int, int]
    #: B&H records flagged GAP (the card's FIFO overflowed there)
    n_gap: int

    def problems(self) -> list[str]:
        """What was found wrong in the records, one message each (for the table's warnings)."""
        problems = []
        if self.n_gap:
            problems.append(
                f"{self.n_gap} records flagged GAP: the card's FIFO overflowed and photons "
                "were lost there"
            )
        if self.n_invalid:
            problems.append(
                f"{self.n_invalid} records with an undefined channel code were skipped "
                "(corrupt records?)"
            )
        if self.n_backwards:
            problems.append(
                f"macrotime goes backwards at {self.n_backwards} photons (corrupt records?)"
            )
        return problems


def decode_records(
    raw: NDArray[np.uint32], layout: RecordLayout, chunk_records: int = 1 << 22
) -> Decoded:
    """Decode 32-bit records into photons and markers, ``chunk_records`` per kernel call.

    Chunks only bound how long one call runs; the result does not depend on them.
    """
    macro, micro, chan = _columns(raw.size, layout)
    state = _new_state()
    for start in range(0, raw.size, max(int(chunk_records), 1)):
        _run(layout, raw[start : start + chunk_records], macro, micro, chan, state)
    return _decoded(macro, micro, chan, state, layout)


class RecordStream:
    """Decode a stream of records chunk by chunk (a card's FIFO), the clock carried across.

    Each :meth:`decode` gives the photons and markers of one chunk (``markers`` an empty
    table when there are none); overflow records that end one chunk unwrap the times of the
    next, exactly as :func:`decode_records` over the whole stream.
    """

    def __init__(self, layout: RecordLayout) -> None:
        self.layout = layout
        self._state = _new_state()

    def decode(self, raw: NDArray[np.uint32]) -> Decoded:
        """Photons and markers of the next ``raw`` records of the stream."""
        macro, micro, chan = _columns(raw.size, self.layout)
        self._state[_N_PHOTONS] = self._state[_N_MARKERS] = 0  # rows of this chunk's arrays
        _run(self.layout, raw, macro, micro, chan, self._state)
        decoded = _decoded(macro, micro, chan, self._state, self.layout)
        if decoded.markers is None:
            decoded.markers = np.empty(0, dtype=MARKER_DTYPE)
        return decoded


def _new_state() -> NDArray[np.int64]:
    state = np.zeros(_STATE_SLOTS, dtype=np.int64)
    state[_LAST_MACRO] = -1  # before any time (times are >= 0)
    return state


def _columns(n: int, layout: RecordLayout) -> tuple[NDArray, NDArray, NDArray]:
    """Output columns for ``n`` records: macrotime, microtime (empty in T2), channel."""
    micro = np.empty(n if layout.mode == "T3" else 0, dtype=np.uint16)
    return np.empty(n, dtype=np.int64), micro, np.empty(n, dtype=np.uint8)


def _decoded(macro, micro, chan, state, layout: RecordLayout) -> Decoded:
    """The photons (front) and markers (back, reversed) the kernels wrote, and the counts."""
    n = macro.size
    n_ph, n_mark = int(state[_N_PHOTONS]), int(state[_N_MARKERS])
    markers = None
    if n_mark:
        markers = np.empty(n_mark, dtype=MARKER_DTYPE)
        markers["macrotime"] = macro[n - n_mark :][::-1]
        markers["bits"] = chan[n - n_mark :][::-1]
    t3 = layout.mode == "T3"
    return Decoded(
        macrotime=_trim(macro, n_ph),
        microtime=_trim(micro, n_ph) if t3 else np.zeros(n_ph, dtype=np.uint16),
        channel=_trim(chan, n_ph),
        markers=markers,
        n_invalid=int(state[_N_INVALID]),
        n_backwards=int(state[_N_BACKWARDS]),
        max_microtime=int(state[_MAX_MICRO]),
        n_sync=int(state[_N_SYNC]),
        sync_span=(int(state[_FIRST_SYNC]), int(state[_LAST_SYNC])),
        n_gap=int(state[_N_GAP]),
    )


def _trim(column: NDArray, n: int) -> NDArray:
    # A view keeps the whole allocation alive: copy when most of it would be wasted.
    return column[:n] if 4 * n >= 3 * column.size else column[:n].copy()


def microtime_bins(period_s: float, resolution_s: float, max_dtime: int) -> int:
    """Microtime bins in one sync period: ceil(period/resolution), at least max(dtime)+1."""
    ratio = period_s / resolution_s
    # The header stores float64 values computed in single precision by some software
    # (e.g. 400 ns / 127.99999948 ps = 3125.0000124): ignore that rounding noise.
    nearest = round(ratio)
    bins = nearest if abs(ratio - nearest) <= 1e-6 * ratio else math.ceil(ratio)
    return max(int(bins), max_dtime + 1, 1)


def record_count(
    file_bytes: int, offset: int, declared: int | None, record_bytes: int = 4
) -> tuple[int, str | None]:
    """How many whole records to read after ``offset``, and a message when that is not all.

    ``declared`` is the header's record count (None: the format has none). A file that
    ends inside a record is never read silently: the partial record is named.
    """
    available = max(file_bytes - offset, 0)
    complete, partial = divmod(available, record_bytes)
    partial_note = f"; a partial trailing record of {partial} bytes was dropped" if partial else ""
    if declared is None:
        if partial:
            return complete, (
                f"truncated: the file ends inside a record (a partial trailing record of "
                f"{partial} bytes was dropped)"
            )
        return complete, None
    if declared <= 0:
        if complete or partial:
            return complete, (
                f"header declares {declared} records (acquisition not finalised?): "
                f"reading the {complete} complete records in the file{partial_note}"
            )
        return 0, None
    if complete < declared:
        return complete, (
            f"truncated: header declares {declared} records, file holds {complete} "
            f"({declared - complete} missing{partial_note})"
        )
    extra = available - record_bytes * declared
    if extra:
        return declared, (
            f"header declares {declared} records but the file holds {extra} more bytes "
            "after them: reading the declared records only"
        )
    return declared, None


def t2_sync_rate(
    decoded: Decoded, macrotime_unit_s: float, rate_meter_hz: float, divider: int
) -> tuple[float | None, str | None]:
    """Laser rate of a T2 file, only when it holds sync records, and any disagreement.

    The rate meter reading wins when there is one; sync records may arrive after the
    hardware divider, so either rate agrees with it.
    """
    if decoded.n_sync < 2:
        return None, None
    first, last = decoded.sync_span
    span_s = float(last - first) * macrotime_unit_s
    recorded = (decoded.n_sync - 1) / span_s if span_s > 0 else 0.0
    if rate_meter_hz <= 0:
        return (recorded or None), None
    if any(abs(recorded * k - rate_meter_hz) <= 0.01 * rate_meter_hz for k in {1, divider}):
        return rate_meter_hz, None
    return rate_meter_hz, (
        f"sync records arrive at {recorded:.6g} Hz but the sync rate meter read "
        f"{rate_meter_hz:.6g} Hz (sync divider {divider}); using the rate meter"
    )
