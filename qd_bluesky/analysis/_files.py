"""File plumbing every photon reader shares: path checks, one-line messages, warnings.

A leaf: it imports no reader, so the readers (``_ptu``, ``_picoquant``, ``_spc``,
``_photon_hdf5``) and the format-blind entry point (``_io``) all import it without a cycle.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ._errors import PhotonFileError
from ._photons import PhotonTable


class PhotonFileWarning(UserWarning):
    """A photon file was read, but not all of it as its header promised (e.g. truncated)."""


def check_readable_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise :class:`PhotonFileError` saying why it can't be read.

    Raises
    ------
    PhotonFileError
        The path is missing, a directory, unreadable or empty.
    """
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
