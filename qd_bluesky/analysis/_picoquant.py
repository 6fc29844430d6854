"""PicoQuant's pre-PTU time-tag files: PT2/PT3 (PicoHarp 300), HT2/HT3 (HydraHarp 400,
file versions 1.0 and 2.0) and T3R (TimeHarp 200, versions 5.0 and 6.0).

Each starts with a fixed binary header (an ASCII instrument name and format version, then
C structs; layouts as in PicoQuant's file demos), then 32-bit records decoded by the
``_records`` kernels. A histogram file of the same instrument (PHD, HHD, THD) is refused
by its measurement mode.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

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
    TIMEHARP200_T3,
    RecordLayout,
    decode_records,
    microtime_bins,
    record_count,
    t2_sync_rate,
)

# The 16-byte instrument name every one of these files starts with, and its formats.
IDENTS = {b"PicoHarp 300": "picoharp", b"HydraHarp": "hydraharp", b"TimeHarp 200": "timeharp"}
_VERSIONS = {"picoharp": ("2.0",), "hydraharp": ("1.0", "2.0"), "timeharp": ("5.0", "6.0")}
_PICOHARP_T2_TICK_S = 4e-12  # PicoHarp 300 T2 time tag unit (fixed by the hardware)

Kind = Literal["pt2", "pt3", "ht2", "ht3", "t3r"]


def legacy_ident(head: bytes) -> str | None:
    """The instrument family if ``head`` starts like a PicoQuant pre-PTU file."""
    name = head[:16].split(b"\0", 1)[0]
    return IDENTS.get(name)


class _Cursor:
    """Little-endian fields read one after the other from the header bytes."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.data):
            raise struct.error("header cut short")


@dataclass
class _Header:
    kind: Kind
    name: str
    version: str
    layout: RecordLayout
    record_offset: int
    declared: int
    macrotime_unit_s: float
    microtime_unit_s: float | None
    rep_rate_hz: float | None
    bits_per_record: int
    sync_rate_hz: float = 0.0


def _parse_picoharp(c: _Cursor, version: str) -> _Header:
    c.skip(18 + 12 + 18 + 2 + 256)  # creator, version, file time, CRLF, comment
    (_curves, bits, _routing, boards, _active, mode) = c.read("6i")
    c.skip(12 * 4 + 8 * 8 + 3 * 12 + 4 * 4 + 20)  # display, curves, params, repeat, script
    resolution_ns = None
    for _ in range(max(boards, 0)):
        c.skip(16 + 8 + 4 + 4 + 4 * 4)  # ident, version, serial, sync divider, CFDs
        (res,) = c.read("f")
        resolution_ns = resolution_ns or res
        c.skip(2 * 4 + 4 * 6 * 4)  # router model, enabled, 4 router channels
    (_ext, _r1, _r2, rate0, _rate1, _stop_after, _reason, n_records, img) = c.read("9i")
    c.skip(4 * max(img, 0))
    _check_mode(mode, "PicoHarp 300")
    if mode == 2:
        layout, kind, macro_s, micro_s, rep = PICOHARP_T2, "pt2", _PICOHARP_T2_TICK_S, None, None
    else:
        _positive(rate0, "sync rate (CntRate0)")
        _positive(resolution_ns, "board resolution")
        layout, kind, macro_s = PICOHARP_T3, "pt3", 1.0 / rate0
        micro_s, rep = resolution_ns * 1e-9, float(rate0)
    return _Header(
        kind, "PicoHarp 300", version, layout, c.pos, n_records, macro_s, micro_s, rep, bits
    )


def _parse_hydraharp(c: _Cursor, version: str) -> _Header:
    c.skip(18 + 12 + 18 + 2 + 256)
    (_curves, bits, _active, mode, _sub, _binning) = c.read("6i")
    (resolution_ps,) = c.read("d")
    c.skip(10 * 4 + 8 * 8 + 3 * 12 + 4 * 4 + 20)  # display, curves, params, repeat, script
    c.skip(16 + 8 + 4 + 4 + 10 * 8 + 8 + 8)  # hardware, modules, base resolution, inputs
    (n_inputs, _clock, _ext, _markers, _divider, _lvl, _zc, _offset) = c.read("8i")
    c.skip(5 * 4 * max(n_inputs, 0))  # per input: module, CFD level, zero cross, offset, rate
    (sync_rate, _stop_after, _reason, img, n_records) = c.read("4iq")
    c.skip(4 * max(img, 0))
    _check_mode(mode, "HydraHarp")
    _positive(resolution_ps, "resolution")
    v1 = version == "1.0"
    if mode == 2:
        layout = HYDRAHARP_V1_T2 if v1 else HYDRAHARP_V2_T2
        # T2: the resolution is the time tag unit (0.5 ps in version 1.0 files)
        kind, macro_s, micro_s, rep = "ht2", resolution_ps * 1e-12, None, None
    else:
        _positive(sync_rate, "sync rate")
        layout = HYDRAHARP_V1_T3 if v1 else HYDRAHARP_V2_T3
        kind, macro_s, micro_s, rep = (
            "ht3",
            1.0 / sync_rate,
            resolution_ps * 1e-12,
            float(sync_rate),
        )
    header = _Header(
        kind, "HydraHarp 400", version, layout, c.pos, n_records, macro_s, micro_s, rep, bits
    )
    header.sync_rate_hz = float(sync_rate)
    return header


def _parse_timeharp(c: _Cursor, version: str) -> _Header:
    v6 = version == "6.0"
    c.skip((18 + 12 if v6 else 6) + 18 + 2 + 256)
    (_channels, _curves, bits, _routing, boards, _active, mode) = c.read("7i")
    c.skip(12 * 4 + 8 * 8 + 3 * 12 + 4 * 4 + 20)
    resolution_ns = None
    for _ in range(max(boards, 0)):
        c.skip((16 + 8 if v6 else 0) + 5 * 4)
        (res,) = c.read("f")
        resolution_ns = resolution_ns or res
    (clock_ns, *_reserved, sync_rate, _cfd_rate, _stop_after, _reason, n_records, spec) = c.read(
        "13i"
    )
    c.skip(4 * max(spec, 0))
    if mode != 2:
        raise _HeaderProblem(f"a TimeHarp 200 histogram file (measurement mode {mode}), not T3R")
    _positive(clock_ns, "TTTR global clock")
    _positive(sync_rate, "sync rate")
    _positive(resolution_ns, "board resolution")
    # The time tag counts the 100 ns global clock, not sync pulses.
    return _Header(
        "t3r",
        "TimeHarp 200",
        version,
        TIMEHARP200_T3,
        c.pos,
        n_records,
        clock_ns * 1e-9,
        resolution_ns * 1e-9,
        float(sync_rate),
        bits,
    )


class _HeaderProblem(Exception):
    pass


def _check_mode(mode: int, instrument: str) -> None:
    if mode == 0:
        raise _HeaderProblem(f"a {instrument} histogram file (measurement mode 0), not time tags")
    if mode not in (2, 3):
        raise _HeaderProblem(f"unknown {instrument} measurement mode {mode}")


def _positive(value: float | None, what: str) -> None:
    if value is None or not np.isfinite(value) or value <= 0:
        raise _HeaderProblem(f"header {what} = {value!r} is not positive")


_PARSERS = {"picoharp": _parse_picoharp, "hydraharp": _parse_hydraharp, "timeharp": _parse_timeharp}


def _read_header(path: Path, data: bytes) -> _Header:
    family = legacy_ident(data)
    if family is None:
        raise PhotonFileError(
            path, "no PicoQuant PicoHarp/HydraHarp/TimeHarp 200 signature at the start of the file"
        )
    if len(data) < 22:
        raise PhotonFileError(path, "header corrupt or cut short")
    version = data[16:22].split(b"\0", 1)[0].decode("ascii", "replace").strip()
    if version not in _VERSIONS[family]:
        known = " or ".join(_VERSIONS[family])
        raise PhotonFileError(
            path, f"unsupported {family} file format version {version!r} (reads {known})"
        )
    try:
        header = _PARSERS[family](_Cursor(data, 22), version)
    except struct.error:
        raise PhotonFileError(path, "header corrupt or cut short") from None
    except _HeaderProblem as exc:
        raise PhotonFileError(path, str(exc)) from None
    if header.bits_per_record != 32:
        raise PhotonFileError(path, f"unsupported {header.bits_per_record}-bit records")
    return header


# Enough for any of these headers (their only variable parts are a few small tables).
_HEADER_READ_BYTES = 1 << 16


def read_picoquant_legacy(path: str | os.PathLike[str]) -> PhotonTable:
    """Read a PicoQuant PT2, PT3, HT2, HT3 or T3R file (recognised by its header).

    Parameters
    ----------
    path
        The file; its extension is not looked at.

    Returns
    -------
    PhotonTable
        ``format`` is ``"pt2"``, ``"pt3"``, ``"ht2"``, ``"ht3"`` or ``"t3r"``. Overflow,
        marker and sync records are removed; markers are in ``table.markers``.

        * PT3, HT3: ``macrotime`` counts sync pulses, ``macrotime_unit_s`` = 1 / the
          header's sync rate (as PicoQuant's demos compute the sync period), microtime bins
          of the header resolution.
        * T3R: ``macrotime`` counts the TimeHarp 200's global clock (``TTTRGlobClock``,
          100 ns), not sync pulses; ``rep_rate_hz`` is the header's sync rate;
          ``microtime`` is the TCSPC channel as recorded (as PicoQuant's demo prints it;
          the TimeHarp 200 times photon to sync, so a decay runs toward lower channels).
        * PT2 (4 ps ticks; input 0 is a detector, ``rep_rate_hz`` None), HT2 (ticks of the
          header resolution: 0.5 ps in version 1.0, 1 ps in 2.0; sync records are not
          photons and give ``rep_rate_hz``).

    Raises
    ------
    PhotonFileError
        Missing or empty, not one of these files, a histogram file, an unsupported format
        version or record size, or a header cut short.

    Warns
    -----
    PhotonFileWarning
        Fewer records than the header declares, a partial final record, trailing bytes,
        records with undefined codes, or photons going back in time.
    """
    p = check_readable_file(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(_HEADER_READ_BYTES)
            size = os.fstat(fh.fileno()).st_size
            header = _read_header(p, data)
            count, count_problem = record_count(size, header.record_offset, header.declared)
            fh.seek(header.record_offset)
            raw = np.fromfile(fh, dtype="<u4", count=count)
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    if raw.size != count:
        raise PhotonFileError(p, f"file shrank while reading ({raw.size} of {count} records)")
    decoded = decode_records(raw, header.layout)
    problems = [count_problem] if count_problem else []
    problems.extend(decoded.problems())
    if header.layout.mode == "T3":
        rep_rate = header.rep_rate_hz
        period_s = 1.0 / rep_rate if rep_rate else header.macrotime_unit_s
        bins = microtime_bins(period_s, header.microtime_unit_s, decoded.max_microtime)
    else:
        bins = 0
        rep_rate = None
        if header.kind == "ht2":
            rep_rate, sync_problem = t2_sync_rate(
                decoded, header.macrotime_unit_s, header.sync_rate_hz, 1
            )
            problems.extend([sync_problem] if sync_problem else [])
    table = PhotonTable(
        macrotime=decoded.macrotime,
        microtime=decoded.microtime,
        channel=decoded.channel,
        macrotime_unit_s=header.macrotime_unit_s,
        microtime_unit_s=header.microtime_unit_s,
        microtime_bins=bins,
        rep_rate_hz=rep_rate,
        mode=header.layout.mode,
        format=header.kind,
        source=str(p),
        markers=decoded.markers,
    )
    for problem in problems:
        report(table, problem)
    return table
