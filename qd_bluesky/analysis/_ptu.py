"""PicoQuant PTU (TTTR) reader: ptufile parses the tagged header, ``_records`` decodes.

ptufile reads the tags; the records are decoded by this package's numba kernels
(``_records``), one pass that classifies each record from its raw bits (photon, overflow,
marker, sync, invalid: ptufile's own decoder reports a HydraHarp-family T2 *sync* record
as a photon of channel 0 and leaves a record with an undefined special code looking like
the record before it). On top of that:

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

import numpy as np
import ptufile
from numpy.typing import NDArray

from ._errors import PhotonFileError
from ._files import check_readable_file, one_line, report
from ._photons import PhotonTable
from ._records import (
    HYDRAHARP_V1_T2,
    HYDRAHARP_V1_T3,
    HYDRAHARP_V2_T2,
    HYDRAHARP_V2_T3,
    PICOHARP_T2,
    PICOHARP_T3,
    Decoded,
    RecordLayout,
    decode_records,
    record_count,
    t2_sync_rate,
)
from ._records import microtime_bins as microtime_bins_of

logger = logging.getLogger(__name__)

# Records decoded per kernel call (bounds one call's time; the result does not depend on it).
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
    layout: RecordLayout

    @property
    def mode(self) -> Literal["T2", "T3"]:
        return self.layout.mode


# TTResultFormat_TTTRRecType -> record layout (PicoQuant's documented record formats).
_FORMATS: dict[int, _RecordFormat] = {
    0x00010303: _RecordFormat("PicoHarp 300 T3", PICOHARP_T3),
    0x00010203: _RecordFormat("PicoHarp 300 T2", PICOHARP_T2),
    0x00010304: _RecordFormat("HydraHarp 400 (v1) T3", HYDRAHARP_V1_T3),
    0x00010204: _RecordFormat("HydraHarp 400 (v1) T2", HYDRAHARP_V1_T2),
    0x01010304: _RecordFormat("HydraHarp 400 (v2) T3", HYDRAHARP_V2_T3),
    0x01010204: _RecordFormat("HydraHarp 400 (v2) T2", HYDRAHARP_V2_T2),
    0x00010305: _RecordFormat("TimeHarp 260N T3", HYDRAHARP_V2_T3),
    0x00010205: _RecordFormat("TimeHarp 260N T2", HYDRAHARP_V2_T2),
    0x00010306: _RecordFormat("TimeHarp 260P T3", HYDRAHARP_V2_T3),
    0x00010206: _RecordFormat("TimeHarp 260P T2", HYDRAHARP_V2_T2),
    0x00010307: _RecordFormat("MultiHarp/PicoHarp 330 T3", HYDRAHARP_V2_T3),
    0x00010207: _RecordFormat("MultiHarp/PicoHarp 330 T2", HYDRAHARP_V2_T2),
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
            decoded = decode_records(raw, fmt.layout, _CHUNK_RECORDS)
    except PhotonFileError:
        raise
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    except Exception as exc:  # a corrupt header can trip ptufile in many ways
        raise PhotonFileError(
            p, f"corrupt PTU file ({type(exc).__name__}: {one_line(exc)})"
        ) from exc

    problems.extend(decoded.problems())

    if fmt.mode == "T3":
        rep_rate = 1.0 / global_res
        problems.extend(_check_sync_rate(tags, rep_rate))
        microtime_bins = microtime_bins_of(global_res, resolution, decoded.max_microtime)
    else:
        rep_rate, sync_problem = _t2_rep_rate(tags, decoded, global_res)
        if sync_problem:
            problems.append(sync_problem)
        microtime_bins = 0

    table = PhotonTable(
        macrotime=decoded.macrotime,
        microtime=decoded.microtime,
        channel=decoded.channel,
        macrotime_unit_s=global_res,
        microtime_unit_s=resolution,
        microtime_bins=microtime_bins,
        rep_rate_hz=rep_rate,
        mode=fmt.mode,
        format="ptu",
        source=str(p),
        markers=decoded.markers,
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
    declared = int(tags.get("TTResult_NumberOfRecords", 0) or 0)
    count, problem = record_count(size, offset, declared)
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
    tags: dict, decoded: Decoded, global_res: float
) -> tuple[float | None, str | None]:
    """Laser rate of a T2 file: only when the file holds real sync records."""
    return t2_sync_rate(
        decoded,
        global_res,
        _float_or_zero(tags.get("TTResult_SyncRate")),
        max(int(tags.get("HWSync_Divider", 1) or 1), 1),
    )


def _float_or_zero(value: object) -> float:
    try:
        return float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
