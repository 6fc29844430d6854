"""File plumbing shared by the photon readers: path checks, format sniffing, warnings.

:func:`read_photons` is the one entry point that does not care which format it is given.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from ._errors import PhotonFileError
from ._photons import PhotonTable

#: dtype of ``PhotonTable.markers``: time in macrotime units and the marker bits
#: (external marker inputs of a PTU file, or the non-photon detector id of a Photon-HDF5 row).
MARKER_DTYPE = np.dtype([("macrotime", np.int64), ("bits", np.uint8)])

PTU_MAGIC = b"PQTTTR\x00\x00"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# An HDF5 superblock may sit behind a user block of 512 * 2**k bytes.
_HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


class PhotonFileWarning(UserWarning):
    """A photon file was read, but not all of it as its header promised (e.g. truncated)."""


def check_readable_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise :class:`PhotonFileError` saying why it can't be read."""
    p = Path(path)
    if not p.exists():
        raise PhotonFileError(p, "no such file")
    if p.is_dir():
        raise PhotonFileError(p, "is a directory, not a photon file")
    if not os.access(p, os.R_OK):
        raise PhotonFileError(p, "permission denied")
    if p.stat().st_size == 0:
        raise PhotonFileError(p, "empty file (0 bytes)")
    return p


def one_line(text: object, limit: int = 200) -> str:
    """Squash a (library) message onto one line of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def report(table: PhotonTable, message: str, *, stacklevel: int = 3) -> None:
    """Record a non-fatal problem in ``table.warnings`` and emit it as a PhotonFileWarning."""
    table.warnings.append(message)
    warnings.warn(f"{table.source}: {message}", PhotonFileWarning, stacklevel=stacklevel)


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
    # Imported here: both readers use the helpers above.
    from ._photon_hdf5 import read_photon_hdf5
    from ._ptu import read_ptu

    kind = sniff_format(path)
    if kind == "ptu":
        return read_ptu(path)
    if kind == "photon-hdf5":
        return read_photon_hdf5(path)
    raise PhotonFileError(path, "not a PTU or Photon-HDF5 file (unrecognised first bytes)")
