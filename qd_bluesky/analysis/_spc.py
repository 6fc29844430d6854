"""Becker & Hickl ``.spc`` FIFO files of the SPC-130/134/140/144/150/154/160/830 cards.

The file is a stream of 4-byte records. The first is a header: bits 0..23 the macrotime
clock period in units of 0.1 ns, bit 31 set (other bits: routing bits, marker and raw
flags, not needed to decode). The rest are photon, overflow and marker records
(``_records`` decodes them).

An SPC file has no magic number; it is recognised by that header and by its first records
behaving like an SPC stream: between overflows, the photons' 12-bit macrotime never goes
back. Random bytes fail this within a few records. The older SPC-6xx/7xx formats (48-bit
or 8-bit ADC records) are not read.
"""

from __future__ import annotations

import os

import numpy as np

from ._errors import PhotonFileError
from ._files import check_readable_file, one_line, report
from ._photons import PhotonTable
from ._records import SPC_FIFO, decode_records, record_count

_ADC_BINS = 4096
# The macrotime clock of SPC-1xx/8xx cards: 0.1 ns units, a few ns to a few us in practice.
_CLOCK_RANGE_01NS = (10, 1_000_000)
_SNIFF_RECORDS = 4096


def _header_clock(word: int) -> int | None:
    """The macrotime clock (in 0.1 ns) of an SPC header record, None if it is not one."""
    clock = word & 0xFFFFFF
    if not word >> 31 or not _CLOCK_RANGE_01NS[0] <= clock <= _CLOCK_RANGE_01NS[1]:
        return None
    return clock


def looks_like_spc(head: bytes) -> bool:
    """Whether the first bytes of a file are an SPC-1xx/8xx FIFO stream (see module doc)."""
    n = min(len(head) // 4, _SNIFF_RECORDS + 1)
    if n < 1:
        return False
    words = np.frombuffer(head, dtype="<u4", count=n).astype(np.int64)
    if _header_clock(int(words[0])) is None:
        return False
    records = words[1:]
    flags = records >> 28
    photon = (flags & 0x8) == 0
    mt = records & 0xFFF
    # Any overflow (single, multiple or on a marker) starts a new run of macrotimes.
    overflow = (flags & 0x4) != 0
    run = np.cumsum(overflow)
    p_mt, p_run = mt[photon], run[photon]
    same_run = p_run[1:] == p_run[:-1]
    if photon.sum() < 2:
        return photon.sum() == records.size  # header only, or one photon
    return not np.any((p_mt[1:] < p_mt[:-1]) & same_run)


def read_spc(path: str | os.PathLike[str]) -> PhotonTable:
    """Read a Becker & Hickl SPC-1xx/8xx FIFO ``.spc`` file.

    Parameters
    ----------
    path
        The ``.spc`` file (the ``.set`` file beside it is not needed).

    Returns
    -------
    PhotonTable
        ``format="spc"``, ``mode="T3"``: ``macrotime`` in ticks of the header's macrotime
        clock, ``microtime`` = 4095 - ADC (the card measures from the photon to the next
        sync) in 4096 bins of an unknown width (``microtime_unit_s`` None: the TAC range
        is in the ``.set`` file), ``rep_rate_hz`` None, ``channel`` the routing bits.
        Marker records are in ``table.markers``.

    Raises
    ------
    PhotonFileError
        Missing, empty, or its first record is not an SPC header.

    Warns
    -----
    PhotonFileWarning
        The file ends inside a record, records flagged GAP (photons lost in the card's
        FIFO) or invalid, or photons going back in time.
    """
    p = check_readable_file(path)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(4)
            if len(head) < 4:
                raise PhotonFileError(p, f"truncated: {len(head)} bytes, no SPC header record")
            clock = _header_clock(int.from_bytes(head, "little"))
            if clock is None:
                raise PhotonFileError(
                    p, f"no Becker & Hickl SPC header (first record 0x{head[::-1].hex()})"
                )
            count, problem = record_count(size, 4, None)
            raw = np.fromfile(fh, dtype="<u4", count=count)
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    decoded = decode_records(raw, SPC_FIFO)
    problems = [problem] if problem else []
    problems.extend(decoded.problems())
    table = PhotonTable(
        macrotime=decoded.macrotime,
        microtime=decoded.microtime,
        channel=decoded.channel,
        macrotime_unit_s=clock * 1e-10,
        microtime_unit_s=None,
        microtime_bins=_ADC_BINS,
        rep_rate_hz=None,
        mode="T3",
        format="spc",
        source=str(p),
        markers=decoded.markers,
    )
    for message in problems:
        report(table, message)
    return table
