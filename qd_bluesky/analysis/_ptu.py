"""PicoQuant PTU (TTTR) reader built on ``ptufile``.

ptufile parses the tagged header and accumulates the overflow records into absolute times
(its ``decode_records``). This module adds what a photon reader needs on top:

* the records are classified from their raw bits (photon, overflow, marker, sync, invalid),
  because ptufile reports a HydraHarp-family T2 *sync* record as a photon of channel 0 and
  leaves a record with an undefined special code looking like the record before it;
* the records present are counted against the header, so a truncated recording is
  analysed as far as it goes and the shortfall is reported (never silently);
* the header quirks that ptufile logs as errors (e.g. "tag index out of order" in files
  written by some PicoQuant software versions) are kept off the user's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import ptufile
from numpy.typing import NDArray

from ._errors import PhotonFileError
from ._files import check_readable_file, one_line, report
from ._photons import MARKER_DTYPE, PhotonTable

logger = logging.getLogger(__name__)

# Record classes, computed from the raw 32-bit words.
_PHOTON, _OVERFLOW, _MARKER, _SYNC, _INVALID = 0, 1, 2, 3, 4

# Records decoded per ptufile call: bounds the 16 bytes/record of decoded scratch memory.
_CHUNK_RECORDS = 1 << 22

# ptufile messages about header irregularities that PicoQuant software really writes and
# that do not affect the records.
_HEADER_QUIRKS = (
    "tag index out of order",
    "tag with index not in tags",
    "duplicate tag",
)


@dataclass(frozen=True)
class _RecordFormat:
    name: str
    mode: Literal["T2", "T3"]
    layout: Literal["picoharp", "hydraharp"]
    # A photon record with time field 0: decoded after a chunk, its time is the overflow
    # accumulated over the chunk, which carries the clock into the next chunk.
    sentinel: int


# TTResultFormat_TTTRRecType -> record layout (PicoQuant's documented record formats).
_FORMATS: dict[int, _RecordFormat] = {
    0x00010303: _RecordFormat("PicoHarp 300 T3", "T3", "picoharp", 0x10000000),
    0x00010203: _RecordFormat("PicoHarp 300 T2", "T2", "picoharp", 0x00000000),
    0x00010304: _RecordFormat("HydraHarp 400 (v1) T3", "T3", "hydraharp", 0),
    0x00010204: _RecordFormat("HydraHarp 400 (v1) T2", "T2", "hydraharp", 0),
    0x01010304: _RecordFormat("HydraHarp 400 (v2) T3", "T3", "hydraharp", 0),
    0x01010204: _RecordFormat("HydraHarp 400 (v2) T2", "T2", "hydraharp", 0),
    0x00010305: _RecordFormat("TimeHarp 260N T3", "T3", "hydraharp", 0),
    0x00010205: _RecordFormat("TimeHarp 260N T2", "T2", "hydraharp", 0),
    0x00010306: _RecordFormat("TimeHarp 260P T3", "T3", "hydraharp", 0),
    0x00010206: _RecordFormat("TimeHarp 260P T2", "T2", "hydraharp", 0),
    0x00010307: _RecordFormat("MultiHarp/PicoHarp 330 T3", "T3", "hydraharp", 0),
    0x00010207: _RecordFormat("MultiHarp/PicoHarp 330 T2", "T2", "hydraharp", 0),
}


class _PtufileLog(logging.Filter):
    """Keep ptufile's log records off the terminal while a file is read.

    Known-harmless header quirks go to debug; anything else is kept in ``notes`` and
    surfaces in the table's warnings or in the error, where the user sees it once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        logger.debug("ptufile: %s", message)
        if not message.startswith(_HEADER_QUIRKS):
            # ptufile's messages read "<problem> @ <file> tagid=..., value=<raw bytes>"
            self.notes.append(one_line(message.split(" @ ")[0], 80))
        return False


@contextlib.contextmanager
def _capture_ptufile_log() -> Iterator[_PtufileLog]:
    ptu_logger = logging.getLogger("ptufile")
    capture = _PtufileLog()
    ptu_logger.addFilter(capture)
    try:
        yield capture
    finally:
        ptu_logger.removeFilter(capture)


@numba.njit(cache=True, inline="always")
def _kind_of(word: int, picoharp: bool, t3: bool) -> tuple[int, int]:
    """Class and marker bits of one raw record (PicoQuant's documented record layouts)."""
    if picoharp:
        nibble = word >> 28
        low = ((word >> 16) & 0xFFF) if t3 else (word & 0xF)
        if nibble == 0xF:
            if low == 0:
                return _OVERFLOW, 0
            if low & 0xF:
                return _MARKER, low & 0xF
            return _INVALID, 0
        # T3: channel nibble 1..4 are detectors; T2: 0..4 (input 0 is a detector in T2)
        if (1 if t3 else 0) <= nibble <= 4:
            return _PHOTON, 0
        return _INVALID, 0
    if word >> 31 == 0:
        return _PHOTON, 0
    code = (word >> 25) & 0x3F
    if code == 0x3F:
        return _OVERFLOW, 0
    if 1 <= code <= 15:
        return _MARKER, code
    if code == 0 and not t3:
        return _SYNC, 0
    return _INVALID, 0


@numba.njit(cache=True)
def _count_kinds(raw: NDArray[np.uint32], picoharp: bool, t3: bool) -> NDArray[np.int64]:
    """Number of records of each class (sizes the output arrays exactly)."""
    counts = np.zeros(5, dtype=np.int64)
    for i in range(raw.size):
        kind, _ = _kind_of(np.int64(raw[i]), picoharp, t3)
        counts[kind] += 1
    return counts


@numba.njit(cache=True)
def _scatter(
    raw, time, dtime, channel, picoharp, t3, clock,
    macro, micro, chan, marker_time, marker_bits, sync_time, filled,
):  # fmt: skip
    """Copy the photons, markers and sync records of one decoded chunk to the outputs.

    ``time`` is ptufile's decoded time (overflows accumulated within the chunk), ``clock``
    the overflow accumulated before the chunk; ``filled`` holds the rows already written
    to (photons, markers, syncs) and is advanced in place.
    """
    n_ph, n_mark, n_sync = filled[0], filled[1], filled[2]
    for i in range(raw.size):
        kind, bits = _kind_of(np.int64(raw[i]), picoharp, t3)
        if kind == _PHOTON:
            macro[n_ph] = np.int64(time[i]) + clock
            chan[n_ph] = channel[i]
            if t3:
                micro[n_ph] = dtime[i]
            n_ph += 1
        elif kind == _MARKER:
            marker_time[n_mark] = np.int64(time[i]) + clock
            marker_bits[n_mark] = bits
            n_mark += 1
        elif kind == _SYNC:
            sync_time[n_sync] = np.int64(time[i]) + clock
            n_sync += 1
    filled[0], filled[1], filled[2] = n_ph, n_mark, n_sync


@dataclass
class _Decoded:
    macrotime: NDArray[np.int64]
    microtime: NDArray[np.uint16] | None
    channel: NDArray[np.uint8]
    markers: NDArray
    sync_times: NDArray[np.int64]
    n_invalid: int


def _decode(ptu: ptufile.PtuFile, raw: NDArray[np.uint32], fmt: _RecordFormat) -> _Decoded:
    """Decode records chunk by chunk, keeping photons, markers and sync records apart."""
    picoharp = fmt.layout == "picoharp"
    t3 = fmt.mode == "T3"
    counts = _count_kinds(raw, picoharp, t3)
    macro = np.empty(counts[_PHOTON], dtype=np.int64)
    chan = np.empty(counts[_PHOTON], dtype=np.uint8)
    micro = np.empty(counts[_PHOTON] if t3 else 0, dtype=np.uint16)
    markers = np.empty(counts[_MARKER], dtype=MARKER_DTYPE)
    marker_time = np.empty(counts[_MARKER], dtype=np.int64)
    marker_bits = np.empty(counts[_MARKER], dtype=np.uint8)
    sync_time = np.empty(counts[_SYNC], dtype=np.int64)
    filled = np.zeros(3, dtype=np.int64)
    no_dtime = np.zeros(0, dtype=np.int16)
    clock = 0  # overflow accumulated before the current chunk, in macrotime units
    for start in range(0, raw.size, _CHUNK_RECORDS):
        chunk = raw[start : start + _CHUNK_RECORDS]
        padded = np.empty(chunk.size + 1, dtype=np.uint32)
        padded[:-1] = chunk
        padded[-1] = fmt.sentinel
        decoded = ptu.decode_records(padded)
        _scatter(
            chunk,
            decoded["time"],
            decoded["dtime"] if t3 else no_dtime,
            decoded["channel"],
            picoharp,
            t3,
            clock,
            macro,
            micro,
            chan,
            marker_time,
            marker_bits,
            sync_time,
            filled,
        )
        clock += int(decoded["time"][-1])
    markers["macrotime"] = marker_time
    markers["bits"] = marker_bits
    return _Decoded(
        macrotime=macro,
        microtime=micro if t3 else None,
        channel=chan,
        markers=markers,
        sync_times=sync_time,
        n_invalid=int(counts[_INVALID]),
    )


def _microtime_bins(period_s: float, resolution_s: float, max_dtime: int) -> int:
    """Microtime bins in one sync period: ceil(period/resolution), at least max(dtime)+1."""
    ratio = period_s / resolution_s
    # The header stores float64 values computed in single precision by some software
    # (e.g. 400 ns / 127.99999948 ps = 3125.0000124): ignore that rounding noise.
    nearest = round(ratio)
    bins = nearest if abs(ratio - nearest) <= 1e-6 * ratio else math.ceil(ratio)
    return max(int(bins), max_dtime + 1, 1)


def _header_float(tags: dict, name: str, path: os.PathLike | str) -> float:
    try:
        value = float(tags[name])
    except KeyError:
        raise PhotonFileError(path, f"PTU header has no {name} tag") from None
    except (TypeError, ValueError):
        raise PhotonFileError(path, f"PTU header tag {name} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise PhotonFileError(path, f"PTU header tag {name} = {value!r} is not a positive time")
    return value


def read_ptu(path: str | os.PathLike[str]) -> PhotonTable:
    """Read the photons of a PicoQuant PTU (TTTR) file.

    T2 and T3 recordings of the PicoHarp 300, HydraHarp 400 (v1, v2), TimeHarp 260 N/P,
    MultiHarp and PicoHarp 330 are supported.

    Parameters
    ----------
    path
        The ``.ptu`` file.

    Returns
    -------
    PhotonTable
        ``format="ptu"``. Overflow, marker and sync records are removed from the photon
        columns; marker records are kept in ``table.markers`` (dtype
        ``[("macrotime", int64), ("bits", uint8)]``), ``None`` when there are none.

        * T3: ``macrotime`` counts sync pulses and ``macrotime_unit_s`` is the sync period
          (``MeasDesc_GlobalResolution``); ``microtime`` is the delay after the sync in bins
          of ``microtime_unit_s`` (``MeasDesc_Resolution``); ``microtime_bins`` is the number
          of bins in one sync period; ``rep_rate_hz`` is 1 / sync period (a disagreement
          with the rate meter reading ``TTResult_SyncRate`` is reported in ``warnings``).
        * T2: ``macrotime`` is the arrival time in ticks of ``macrotime_unit_s``;
          ``microtime`` is zero, ``microtime_unit_s`` is None, ``microtime_bins`` is 0.
          ``rep_rate_hz`` is None, except for HydraHarp-family files that contain sync
          records, where it is ``TTResult_SyncRate`` (without that reading: the rate of the
          sync records; a disagreement is reported). A PicoHarp 300 T2 file records no sync
          (its input 0 is a detector: channel 0 here) and its ``TTResult_SyncRate`` is the
          count rate of that input, not a laser rate.

        Channels count from 0 (PicoHarp T3 channel 1 and HydraHarp input 1 are channel 0).

    Raises
    ------
    PhotonFileError
        Missing or empty file, not a PTU file, broken header, unsupported record type.

    Warns
    -----
    PhotonFileWarning
        The file holds fewer (or more) records than its header declares, ends in a
        partial record, contains records with undefined codes, or its header disagrees with
        itself. The same text is in ``table.warnings``.
    """
    p = check_readable_file(path)
    problems: list[str] = []
    with _capture_ptufile_log() as ptufile_log:
        ptu = _open_ptu(p)
    damage = f" (header damaged: {ptufile_log.notes[0]})" if ptufile_log.notes else ""
    problems.extend(f"PTU header: {note}" for note in ptufile_log.notes)
    try:
        with ptu:
            tags = ptu.tags
            offset = ptu.record_offset
            rectype = tags.get("TTResultFormat_TTTRRecType")
            if rectype is None:
                raise PhotonFileError(
                    p, f"PTU header has no TTResultFormat_TTTRRecType tag{damage}"
                )
            fmt = _FORMATS.get(int(rectype))
            if fmt is None:
                raise PhotonFileError(p, f"unsupported PTU record type 0x{int(rectype):08x}")
            mode_tag = tags.get("Measurement_Mode")
            if mode_tag != int(fmt.mode[1]):
                # ptufile picks its T2/T3 decoder from this tag
                raise PhotonFileError(
                    p, f"PTU header Measurement_Mode={mode_tag} contradicts {fmt.name} records"
                )
            bits_per_record = int(tags.get("TTResultFormat_BitsPerRecord", 32))
            if bits_per_record != 32:
                raise PhotonFileError(p, f"unsupported {bits_per_record}-bit PTU records")
            global_res = _header_float(tags, "MeasDesc_GlobalResolution", p)
            resolution = _header_float(tags, "MeasDesc_Resolution", p) if fmt.mode == "T3" else None

            raw, count_problem = _read_raw_records(ptu, p, offset, tags)
            if count_problem:
                problems.append(count_problem)
            decoded = _decode(ptu, raw, fmt)
    except PhotonFileError:
        raise
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    except Exception as exc:  # a corrupt header can trip ptufile in many ways
        raise PhotonFileError(
            p, f"corrupt PTU file ({type(exc).__name__}: {one_line(exc)})"
        ) from exc

    if decoded.n_invalid:
        problems.append(
            f"{decoded.n_invalid} records with an undefined channel code were skipped "
            "(corrupt records?)"
        )
    backwards = int(np.count_nonzero(decoded.macrotime[1:] < decoded.macrotime[:-1]))
    if backwards:
        problems.append(f"macrotime goes backwards at {backwards} photons (corrupt records?)")

    if fmt.mode == "T3":
        rep_rate = 1.0 / global_res
        problems.extend(_check_sync_rate(tags, rep_rate))
        microtime = decoded.microtime
        max_dtime = int(microtime.max()) if microtime.size else 0
        microtime_bins = _microtime_bins(global_res, resolution, max_dtime)
    else:
        rep_rate, sync_problem = _t2_rep_rate(tags, decoded.sync_times, global_res)
        if sync_problem:
            problems.append(sync_problem)
        microtime = np.zeros(decoded.macrotime.size, dtype=np.uint16)
        microtime_bins = 0

    table = PhotonTable(
        macrotime=decoded.macrotime,
        microtime=microtime,
        channel=decoded.channel,
        macrotime_unit_s=global_res,
        microtime_unit_s=resolution,
        microtime_bins=microtime_bins,
        rep_rate_hz=rep_rate,
        mode=fmt.mode,
        format="ptu",
        source=str(p),
        markers=decoded.markers if decoded.markers.size else None,
    )
    for problem in problems:
        report(table, problem)
    return table


def _open_ptu(path: Path) -> ptufile.PtuFile:
    try:
        return ptufile.PtuFile(path)
    except ptufile.PqFileError as exc:
        raise PhotonFileError(path, f"not a readable PTU file: {_ptufile_reason(exc)}") from exc
    except OSError as exc:
        raise PhotonFileError(path, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    except Exception as exc:  # ptufile trips over some truncated headers
        raise PhotonFileError(
            path, f"not a readable PTU file: header corrupt or cut short ({type(exc).__name__})"
        ) from exc


def _ptufile_reason(exc: Exception) -> str:
    text = one_line(exc)
    if "is not a PtuFile" in text or "is not a PqFile" in text:
        return "no PicoQuant PTU signature at the start of the file"
    if "type=" in text and "is not in" in text:
        return "a PicoQuant file, but not a TTTR (.ptu) recording"
    if "tag corrupted" in text:
        return "header corrupt or cut short"
    return text


def _read_raw_records(
    ptu: ptufile.PtuFile, path: os.PathLike | str, offset: int, tags: dict
) -> tuple[NDArray[np.uint32], str | None]:
    """The complete 32-bit records in the file, and a message when they are not all there."""
    size = os.fstat(ptu.filehandle.fileno()).st_size
    available = max(size - offset, 0)
    complete, partial = divmod(available, 4)
    declared = int(tags.get("TTResult_NumberOfRecords", 0) or 0)
    partial_note = f"; a partial trailing record of {partial} bytes was dropped" if partial else ""

    problem = None
    if declared <= 0:
        count = complete
        if complete or partial:
            problem = (
                f"header declares {declared} records (acquisition not finalised?): "
                f"reading the {complete} complete records in the file{partial_note}"
            )
    elif complete < declared:
        count = complete
        problem = (
            f"truncated: header declares {declared} records, file holds {complete} "
            f"({declared - complete} missing{partial_note})"
        )
    else:
        count = declared
        extra = available - 4 * declared
        if extra:
            problem = (
                f"header declares {declared} records but the file holds {extra} more bytes "
                "after them: reading the declared records only"
            )
    ptu.filehandle.seek(offset)
    raw = np.fromfile(ptu.filehandle, dtype="<u4", count=count)
    if raw.size != count:  # the file changed under us
        raise PhotonFileError(path, f"file shrank while reading ({raw.size} of {count} records)")
    return raw.astype(np.uint32, copy=False), problem


def _check_sync_rate(tags: dict, rep_rate: float) -> list[str]:
    """Compare 1/GlobalResolution with the sync rate meter reading of the header."""
    sync_rate = tags.get("TTResult_SyncRate")
    try:
        sync_rate = float(sync_rate)
    except (TypeError, ValueError):
        return []
    # The rate meter is read once at the start of the measurement (1 % agrees with the
    # sample files to < 1e-6); a larger gap means the header and the hardware disagree.
    if sync_rate <= 0 or abs(sync_rate - rep_rate) <= 0.01 * rep_rate:
        return []
    divider = tags.get("HWSync_Divider", 1)
    return [
        f"sync rate meter read {sync_rate:.6g} Hz but 1/MeasDesc_GlobalResolution is "
        f"{rep_rate:.6g} Hz (sync divider {divider}); using 1/MeasDesc_GlobalResolution"
    ]


def _t2_rep_rate(
    tags: dict, sync_times: NDArray[np.int64], global_res: float
) -> tuple[float | None, str | None]:
    """Laser rate of a T2 file: only when the file holds real sync records."""
    if sync_times.size < 2:
        return None, None
    try:
        sync_rate = float(tags.get("TTResult_SyncRate", 0) or 0)
    except (TypeError, ValueError):
        sync_rate = 0.0
    span_s = float(sync_times[-1] - sync_times[0]) * global_res
    recorded = (sync_times.size - 1) / span_s if span_s > 0 else 0.0
    if sync_rate <= 0:
        return (recorded or None), None
    divider = max(int(tags.get("HWSync_Divider", 1) or 1), 1)
    # Sync records may be recorded after the hardware divider: accept either rate.
    if any(abs(recorded * k - sync_rate) <= 0.01 * sync_rate for k in {1, divider}):
        return sync_rate, None
    return sync_rate, (
        f"sync records arrive at {recorded:.6g} Hz but the sync rate meter read "
        f"{sync_rate:.6g} Hz (sync divider {divider}); using the rate meter"
    )
