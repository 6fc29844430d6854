"""The one way to open a photon file for reading, whether or not a SWMR writer holds it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py

from .._errors import PhotonFileError
from .._files import PhotonFileWarning, one_line

#: File system types (``/proc/mounts``) that do not give the POSIX write ordering HDF5 SWMR
#: needs: a reader there may see a file that is being written as corrupt.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "afs", "ceph",
        "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "lustre", "gpfs", "beegfs",
        "ncpfs", "coda", "davfs", "fuse.davfs2", "fuse.s3fs", "fuse.rclone",
    }
)  # fmt: skip


def mount_of(path: str | os.PathLike[str], mounts: str) -> tuple[str, str] | None:
    """(mount point, file system type) of the mount that holds ``path``, from the text of
    ``/proc/mounts`` (``mounts``); None when no entry covers it.

    The longest mount point that contains the path wins, the last of equal ones (a mount
    stacked over another); ``\\040`` and the other octal escapes of the table are decoded.
    """
    target = os.path.abspath(os.fspath(path))
    best: tuple[str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fields[2])
    return best


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \040, \011, \012, \134.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def network_filesystem(
    path: str | os.PathLike[str], mounts_file: str | os.PathLike[str] = "/proc/mounts"
) -> str | None:
    """The network file system type (e.g. ``"nfs4"``) that holds ``path``, else None.

    None as well where the mount table cannot be read (not Linux).
    """
    try:
        mounts = Path(mounts_file).read_text(errors="replace")
    except OSError:
        return None
    found = mount_of(os.path.realpath(path), mounts)
    if found is not None and found[1] in NETWORK_FS_TYPES:
        return f"{found[1]} at {found[0]}"
    return None


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
            f = h5py.File(path, "r", swmr=True)
        except OSError:
            raise PhotonFileError(path, f"{problem} ({one_line(plain_error)})") from plain_error
        network = network_filesystem(path)
        if network is not None:
            # docs/photon-file.md: SWMR across hosts is unsupported; read closed files only.
            warnings.warn(
                f"{path}: a file being written, read over a network file system ({network}): "
                "HDF5 SWMR is not supported there, rows may read as corrupt; run the analyzer "
                "on the writing host",
                PhotonFileWarning,
                stacklevel=2,
            )
        return f, True
