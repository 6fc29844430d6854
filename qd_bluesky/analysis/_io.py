"""Format sniffing and the one reader that takes every photon format.

:func:`read_photons` is the one entry point that does not care which format it is given;
``_READERS`` is the one place a recognised format is routed to its reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from ._errors import PhotonFileError
from ._files import PhotonFileWarning, check_readable_file, one_line, report
from ._photon_hdf5 import read_photon_hdf5
from ._photons import MARKER_DTYPE, PhotonTable
from ._picoquant import legacy_ident, read_picoquant_legacy
from ._ptu import read_ptu
from ._spc import looks_like_spc, read_spc

# Kept importable from here (the readers' helpers lived in this module).
__all__ = [
    "MARKER_DTYPE",
    "PhotonFileWarning",
    "check_readable_file",
    "one_line",
    "read_photons",
    "report",
    "sniff_format",
]

PTU_MAGIC = b"PQTTTR\x00\x00"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# An HDF5 superblock may sit behind a user block of 512 * 2**k bytes.
_HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)
# Enough bytes for every signature and for the SPC check's first records.
_SNIFF_BYTES = 4 * 4097

#: What ``sniff_format`` names and what ``read_photons`` calls for it: the one routing table.
Format = Literal["ptu", "photon-hdf5", "picoquant-legacy", "spc"]
_READERS: dict[str, Callable[[str | os.PathLike[str]], PhotonTable]] = {
    "ptu": read_ptu,
    "photon-hdf5": read_photon_hdf5,
    "picoquant-legacy": read_picoquant_legacy,
    "spc": read_spc,
}


def sniff_format(path: str | os.PathLike[str]) -> Format | None:
    """Recognise a photon file by its first bytes (not by its extension).

    PTU, HDF5 and PicoQuant's older files (PT2/PT3/HT2/HT3/T3R) by their signature; a
    Becker & Hickl SPC file, which has none, by its header record and first records.
    """
    p = check_readable_file(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    if head.startswith(PTU_MAGIC):
        return "ptu"
    if legacy_ident(head) is not None:
        return "picoquant-legacy"
    for offset in _HDF5_SIGNATURE_OFFSETS:
        if head[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return "photon-hdf5"
    if looks_like_spc(head):
        return "spc"
    return None


def read_photons(path: str | os.PathLike[str]) -> PhotonTable:
    """Read a photon file of any supported format, recognised by its content.

    PicoQuant PTU, PT2, PT3, HT2, HT3 (file versions 1.0 and 2.0) and T3R (TimeHarp 200),
    Becker & Hickl SPC-1xx/8xx FIFO (``.spc``), and Photon-HDF5.

    Parameters
    ----------
    path
        The photon file.

    Returns
    -------
    PhotonTable
        The photons; ``table.format`` names the format (``"ptu"``, ``"photon-hdf5"``,
        ``"pt2"``, ``"pt3"``, ``"ht2"``, ``"ht3"``, ``"t3r"``, ``"spc"``).

    Raises
    ------
    PhotonFileError
        The file is missing, empty, not a recognised photon file, or corrupt.
    """
    kind = sniff_format(path)
    if kind is None:
        raise PhotonFileError(
            path,
            "not a PTU, PT2/PT3/HT2/HT3/T3R, SPC or Photon-HDF5 file (unrecognised first bytes)",
        )
    return _READERS[kind](path)
