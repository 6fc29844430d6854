"""Which file system holds a photon file: growing files are followed on local ones only."""

from __future__ import annotations

import pytest

from qd_bluesky.analysis._photon_hdf5._mounts import filesystem_type, network_filesystem

# A facility's host: local disks, the beamline's NFS share and an SMB share with a space in its
# mount point, a tmpfs, and an NFS export mounted under a local directory.
MOUNTS = """\
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/nvme0n1p3 /data xfs rw,relatime 0 0
fileserver:/export/qd /data/shared nfs4 rw,relatime,vers=4.2 0 0
//nas/lab\\040data /mnt/lab\\040data cifs rw,relatime 0 0
storage:/scratch /scratch nfs rw,relatime,vers=3 0 0
/dev/sdb1 /scratch xfs rw,relatime 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/user/photons/run1.h5", "ext4"),
        ("/data/run1.h5", "xfs"),
        ("/data/shared/run1.h5", "nfs4"),  # the longest mount point wins
        ("/data/sharedother/run1.h5", "xfs"),  # a prefix of the name is not a parent
        ("/mnt/lab data/run1.h5", "cifs"),  # \040 is a space
        ("/scratch/run1.h5", "xfs"),  # a later mount on the same point hides the earlier
        ("/run/user/1000/x.h5", "tmpfs"),
    ],
)
def test_the_file_system_of_a_path(path, kind):
    assert filesystem_type(path, MOUNTS) == kind


def test_network_file_systems_are_named_and_local_ones_are_not():
    assert network_filesystem("/data/shared/a.h5", MOUNTS) == "nfs4"
    assert network_filesystem("/mnt/lab data/a.h5", MOUNTS) == "cifs"
    assert network_filesystem("/data/a.h5", MOUNTS) is None
    assert network_filesystem("/scratch/a.h5", MOUNTS) is None
    assert filesystem_type("/anything", "") is None  # no table: unknown, not network


def test_this_hosts_temporary_directory_is_local(tmp_path):
    # The tests' own files (and the simulated IOC's) are followed live: a local file system.
    assert filesystem_type(tmp_path) is not None
    assert network_filesystem(tmp_path) is None
