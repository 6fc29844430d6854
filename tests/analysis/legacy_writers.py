"""Writers of PicoQuant PT2/PT3 and Becker & Hickl SPC files, from the published layouts.

Written from PicoQuant's PT2/PT3 file demos (``Read_PT3.m``: the ASCII header, the binary
header, one board header with four router channels, the TTTR header, then 32-bit records)
and the B&H TCSPC handbook's SPC-1xx/8xx FIFO layout, not from the readers under test.
Events go in as (time, kind, value) and come out as records with the overflow records the
format needs, so a round trip checks unwrapping, markers and channels.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PT3_WRAP, PT2_WRAP = 65536, 210698240


def _ascii(text: str, size: int) -> bytes:
    return text.encode("ascii").ljust(size, b"\0")


def picoharp_header(mode: int, n_records: int, sync_rate: int, resolution_ns: float) -> bytes:
    """A PicoHarp 300 file header, format version 2.0, field by field."""
    out = bytearray()
    out += _ascii("PicoHarp 300", 16) + _ascii("2.0", 6)
    out += _ascii("PicoHarp Software", 18) + _ascii("2.3.0.0", 12)
    out += _ascii("16/02/12 19:40:04", 18) + b"\r\n" + _ascii("written by the tests", 256)
    # NumberOfCurves, BitsPerRecord, RoutingChannels, NumberOfBoards, ActiveCurve,
    # MeasurementMode, SubMode, RangeNo, Offset, AcquisitionTime, StopAt, StopOnOvfl,
    # Restart, DispLinLog, DispTimeAxisFrom/To, DispCountAxisFrom/To
    out += struct.pack(
        "<18i", 0, 32, 4, 1, 0, mode, 0, 6, 0, 30000, 65535, 1, 0, 1, 0, 400, 0, 10**5
    )
    out += struct.pack("<16i", *([0, 1] * 8))  # DispCurveMapTo, DispCurveShow x 8
    out += struct.pack("<9f", *([0.0] * 9))  # ParamStart, ParamStep, ParamEnd x 3
    out += struct.pack("<4i", 0, 1, 0, 0) + _ascii("TTTR Mode", 20)
    # board: HardwareIdent, HardwareVersion, HardwareSerial, SyncDivider, CFDZeroCross0,
    # CFDLevel0, CFDZeroCross1, CFDLevel1, Resolution, RouterModelCode, RouterEnabled
    out += _ascii("PicoHarp 300", 16) + _ascii("2.0", 8)
    out += struct.pack("<6i", 1006579, 1, 0, 300, 0, 300)
    out += struct.pack("<f", resolution_ns) + struct.pack("<2i", 0, 1)
    out += struct.pack("<24i", *([0] * 24))  # 4 router channels x 6 ints
    # ExtDevices, Reserved1, Reserved2, CntRate0, CntRate1, StopAfter, StopReason,
    # NoOfRecords, ImgHdrSize (then no image header)
    out += struct.pack("<9i", 0, 0, 0, sync_rate, 1234, 30000, 0, n_records, 0)
    return bytes(out)


def pt3_records(events: list[tuple[int, str, int, int]]) -> np.ndarray:
    """PicoHarp T3 records: (nsync, "photon"|"marker", channel or marker bits, dtime)."""
    out, wraps = [], 0
    for t, kind, value, dtime in events:
        while t >= (wraps + 1) * PT3_WRAP:
            out.append(0xF << 28)  # channel 15, dtime 0: overflow
            wraps += 1
        nsync = t - wraps * PT3_WRAP
        if kind == "photon":
            out.append(((value + 1) << 28) | (dtime << 16) | nsync)  # channels 1..4
        else:
            out.append((0xF << 28) | (value << 16) | nsync)
    return np.asarray(out, dtype="<u4")


def pt2_records(events: list[tuple[int, str, int]]) -> np.ndarray:
    """PicoHarp T2 records: (time in 4 ps, "photon"|"marker", channel or marker bits)."""
    out, wraps = [], 0
    for t, kind, value in events:
        while t >= (wraps + 1) * PT2_WRAP:
            out.append(0xF << 28)  # channel 15, low nibble 0: overflow
            wraps += 1
        local = t - wraps * PT2_WRAP
        if kind == "photon":
            out.append((value << 28) | local)
        else:
            # a marker's time field doubles as its bits: its low nibble must be them
            assert local & 0xF == value, "a PT2 marker's time ends in its marker bits"
            out.append((0xF << 28) | local)
    return np.asarray(out, dtype="<u4")


def write_picoharp(path: Path, mode: int, records: np.ndarray, **header) -> Path:
    head = picoharp_header(mode, records.size, **header)
    path.write_bytes(head + records.astype("<u4").tobytes())
    return path


# --- Becker & Hickl SPC-1xx/8xx FIFO ------------------------------------------------------
SPC_WRAP = 4096
INVALID, MTOV, GAP, MARK = 1 << 31, 1 << 30, 1 << 29, 1 << 28


def spc_records(
    events: list[tuple[int, str, int, int]], clock_01ns: int, multi_at: int = 3
) -> np.ndarray:
    """Header record plus records for (macrotime, "photon"|"marker"|"invalid"|"gap", rout, t).

    ``t`` is the microtime; the ADC stores 4095 - t. One wrap between events sets MTOV on
    the event's record; ``multi_at`` or more wraps become a multiple-overflow record
    (INVALID | MTOV, count in bits 0..27) before it.
    """
    out = [INVALID | clock_01ns]
    wraps = 0
    for t, kind, rout, micro in events:
        k = t // SPC_WRAP - wraps
        flags = 0
        if k >= multi_at:
            out.append(INVALID | MTOV | k)
        elif k == 1 and kind != "invalid":
            flags |= MTOV  # INVALID | MTOV alone would read as a multiple overflow
        elif k >= 1:
            out.extend([INVALID | MTOV | 1] * k)
        wraps += k
        word = flags | (rout << 12) | (t - wraps * SPC_WRAP)
        if kind == "photon":
            word |= (4095 - micro) << 16
        elif kind == "gap":
            word |= GAP | (4095 - micro) << 16
        elif kind == "marker":
            word |= INVALID | MARK
        else:
            word |= INVALID
        out.append(word)
    return np.asarray(out, dtype="<u4")
