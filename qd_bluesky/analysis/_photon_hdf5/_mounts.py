"""Which file system holds a file: a file still being written is only followed on a local one.

HDF5's SWMR relies on POSIX ordering of the writer's writes as the reader sees them, which network
file systems do not give (HDF5's SWMR documentation). A reader on another host may see a superblock
or chunk index newer than the data, and read garbage, without any error. So the live analysis runs
on the host that writes the photon file, and other hosts read it once it is closed (replay).
"""

from __future__ import annotations

import os

#: File-system types (``/proc/mounts``' third field) that reach another host's disk.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "afs", "ceph", "coda",
        "glusterfs", "fuse.glusterfs", "ncpfs", "sshfs", "fuse.sshfs", "davfs", "fuse.davfs2",
        "fuse.s3fs", "fuse.rclone",
    }
)  # fmt: skip
#: The kernel's table of mounts (Linux).
MOUNT_TABLE = "/proc/mounts"


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the file system that holds ``path`` (e.g. ``"ext4"``, ``"nfs4"``).

    Parameters
    ----------
    path
        Any path; symbolic links are resolved first.
    mounts
        The text of a mount table in ``/proc/mounts`` format; default: this host's. None is
        returned where there is none (not Linux).
    """
    if mounts is None:
        try:
            with open(MOUNT_TABLE, encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1]).rstrip("/") or "/"
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        # the longest mount point wins; a later mount on the same point hides an earlier one
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def network_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The network file-system type holding ``path``, or None when it is local (or unknown)."""
    kind = filesystem_type(path, mounts)
    return kind if kind in NETWORK_FILESYSTEMS else None
