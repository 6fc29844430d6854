"""Format sniffing and the one reader that takes either photon format.

:func:`read_photons` is the one entry point that does not care which format it is given.
"""

from __future__ import annotations

import os
from typing import Literal

from ._errors import PhotonFileError
from ._files import PhotonFileWarning, check_readable_file, one_line, report
from ._photon_hdf5 import read_photon_hdf5
from ._photons import MARKER_DTYPE, PhotonTable
from ._ptu import read_ptu

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


def sniff_format(path: str | os.PathLike[str]) -> Literal["ptu", "photon-hdf5"] | None:
    """Recognise a photon file by its first bytes (not by its extension)."""
    p = check_readable_file(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(max(_HDF5_SIGNATURE_OFFSETS) + len(HDF5_SIGNATURE))
    except OSError as exc:
        raise PhotonFileError(p, f"cannot read: {one_line(exc.strerror or exc)}") from exc
    if head.startswith(PTU_MAGIC):
        return "ptu"
    for offset in _HDF5_SIGNATURE_OFFSETS:
        if head[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return "photon-hdf5"
    return None


def read_photons(path: str | os.PathLike[str]) -> PhotonTable:
    """Read a PicoQuant PTU or a Photon-HDF5 file, recognised by its content.

    Parameters
    ----------
    path
        The photon file.

    Returns
    -------
    PhotonTable
        The photons; ``table.format`` is ``"ptu"`` or ``"photon-hdf5"``.

    Raises
    ------
    PhotonFileError
        The file is missing, empty, neither a PTU nor an HDF5 file, or corrupt.
    """
    kind = sniff_format(path)
    if kind == "ptu":
        return read_ptu(path)
    if kind == "photon-hdf5":
        return read_photon_hdf5(path)
    raise PhotonFileError(path, "not a PTU or Photon-HDF5 file (unrecognised first bytes)")
