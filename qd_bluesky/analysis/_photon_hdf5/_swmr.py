"""The one way to open a photon file for reading, whether or not a SWMR writer holds it."""

from __future__ import annotations

import os

import h5py

from .._errors import PhotonFileError
from .._files import one_line


def open_for_reading(
    path: str | os.PathLike[str], problem: str = "not a readable HDF5 file"
) -> tuple[h5py.File, bool]:
    """Open ``path`` read-only; in SWMR mode when a writer holds the file (or left it unclosed).

    Parameters
    ----------
    path
        The HDF5 file.
    problem
        What the error says when neither open succeeds (the HDF5 reason follows it).

    Returns
    -------
    tuple[h5py.File, bool]
        The open file, and whether it was opened in SWMR mode.

    Raises
    ------
    PhotonFileError
        Neither a plain nor a SWMR open succeeds (not HDF5, corrupt, unreadable), or the file
        is shorter than its superblock says (truncated).
    """
    try:
        f = h5py.File(path, "r")
        # A file this process already holds as a SWMR reader opens plainly (HDF5 shares the
        # open file), yet stays in SWMR mode: its datasets still need refreshing.
        return f, bool(f.swmr_mode)
    except OSError as plain_error:
        if "truncated file" in str(plain_error):
            # Shorter than its superblock says (a copy cut short). A SWMR open skips that
            # check, and its reads past the end then retry without end: refuse here.
            raise PhotonFileError(
                path,
                f"truncated: the file is shorter than its HDF5 superblock says "
                f"({one_line(plain_error)})",
            ) from plain_error
        # HDF5 refuses a plain open of a file a SWMR writer holds (or held, if it died)
        # with "already open for write" or a file-lock error: retry as a SWMR reader.
        try:
            return h5py.File(path, "r", swmr=True), True
        except OSError:
            raise PhotonFileError(path, f"{problem} ({one_line(plain_error)})") from plain_error
