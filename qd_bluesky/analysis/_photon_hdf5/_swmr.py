"""The one way to open a photon file for reading, whether or not a SWMR writer holds it.

Within one process, every reader of a file shares one open of it (:func:`open_shared`): HDF5
returns wrong rows (stale or unwritten chunks) when two handles of the same growing dataset
refresh independently, e.g. the live analyzer and an adaptive plan's probe reading one file.
"""

from __future__ import annotations

import os
import threading

import h5py

from .._errors import PhotonFileError
from .._files import one_line
from ._mounts import network_filesystem


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
        Neither a plain nor a SWMR open succeeds (not HDF5, corrupt, unreadable), the file
        is shorter than its superblock says (truncated), or a writer still holds it and it
        lies on a network file system (SWMR works on local file systems only).
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
            f = h5py.File(path, "r", swmr=True)
        except OSError:
            raise PhotonFileError(path, f"{problem} ({one_line(plain_error)})") from plain_error
        remote = network_filesystem(path)
        if remote is not None:
            f.close()
            raise PhotonFileError(
                path,
                f"open for writing (or left so by a writer that died) on a network file system "
                f"({remote}): HDF5 cannot follow a growing file across hosts; run the live "
                "analysis on the host that writes it, or replay the run once the file is closed",
            ) from None
        return f, True


class SharedPhotonFile:
    """This process's one open of a photon file, shared by all its readers.

    Get it with :func:`open_shared`; each user calls :meth:`release` once. Growing datasets
    are taken with :meth:`dataset`, which hands every user the same handle: a refresh by one
    user is then seen by all, and no two handles of one dataset refresh apart.
    """

    def __init__(self, f: h5py.File, swmr: bool, key: tuple[int, int]) -> None:
        self.file = f
        #: Whether the file is read in SWMR mode (its datasets need refreshing).
        self.swmr = swmr
        self._key = key
        self._users = 1
        self._datasets: dict[str, h5py.Dataset | None] = {}

    def dataset(self, name: str) -> h5py.Dataset | None:
        """The shared handle of dataset ``name``, or None when there is no such dataset."""
        with _registry_lock:
            if name not in self._datasets:
                node = self.file.get(name)
                self._datasets[name] = node if isinstance(node, h5py.Dataset) else None
            return self._datasets[name]

    def release(self) -> None:
        """Stop using the file; the last user's release closes it."""
        with _registry_lock:
            self._users -= 1
            if self._users > 0:
                return
            if _open_files.get(self._key) is self:
                del _open_files[self._key]
            self._datasets.clear()
            if self.file.id.valid:
                self.file.close()


_registry_lock = threading.RLock()
_open_files: dict[tuple[int, int], SharedPhotonFile] = {}


def open_shared(
    path: str | os.PathLike[str], problem: str = "not a readable HDF5 file"
) -> SharedPhotonFile:
    """The process's open of ``path`` (opened by :func:`open_for_reading` on first use).

    Raises
    ------
    PhotonFileError
        As :func:`open_for_reading`; also when the file does not exist.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PhotonFileError(path, f"{problem} ({one_line(exc)})") from exc
    key = (st.st_dev, st.st_ino)
    with _registry_lock:
        shared = _open_files.get(key)
        if shared is not None and shared.file.id.valid:
            shared._users += 1
            return shared
        f, swmr = open_for_reading(path, problem)
        shared = _open_files[key] = SharedPhotonFile(f, swmr, key)
        return shared
