"""Which mount holds a photon file: HDF5 SWMR is unsupported on network file systems."""

from __future__ import annotations

from qd_bluesky.analysis._photon_hdf5._swmr import mount_of, network_filesystem

# /proc/mounts of a lab PC: NFS home, a CIFS share with a space in its path, a 9p share,
# a local disk mounted over part of the NFS tree, and a bind mount stacked on /data.
MOUNTS = """\
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
fileserver:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
//nas/lab\\040data /mnt/lab\\040data cifs rw,relatime,vers=3.1.1 0 0
hostshare /mnt/host 9p rw,trans=virtio 0 0
/dev/sdb1 /home/alice/scratch xfs rw,relatime 0 0
/dev/sdc1 /data ext4 rw,relatime 0 0
fileserver:/export/data /data nfs rw,relatime 0 0
"""


def test_the_longest_mount_point_that_holds_the_path_wins():
    assert mount_of("/home/alice/photons/run.h5", MOUNTS) == ("/home", "nfs4")
    assert mount_of("/home/alice/scratch/run.h5", MOUNTS) == ("/home/alice/scratch", "xfs")
    assert mount_of("/home/alice/scratchpad/run.h5", MOUNTS) == ("/home", "nfs4")
    assert mount_of("/var/tmp/run.h5", MOUNTS) == ("/", "ext4")
    assert mount_of("/mnt/host/run.h5", MOUNTS) == ("/mnt/host", "9p")


def test_escaped_spaces_and_stacked_mounts():
    assert mount_of("/mnt/lab data/qd/run.h5", MOUNTS) == ("/mnt/lab data", "cifs")
    assert mount_of("/mnt/lab/run.h5", MOUNTS) == ("/", "ext4")
    # The later of two mounts on /data hides the first.
    assert mount_of("/data/photons/run.h5", MOUNTS) == ("/data", "nfs")


def test_network_filesystem_reads_the_mount_table(tmp_path):
    table = tmp_path / "mounts"
    table.write_text(MOUNTS)
    assert network_filesystem("/home/bob/run.h5", table) == "nfs4 at /home"
    assert network_filesystem("/mnt/lab data/run.h5", table) == "cifs at /mnt/lab data"
    assert network_filesystem("/home/alice/scratch/run.h5", table) is None
    assert network_filesystem("/var/tmp/run.h5", table) is None
    # No mount table (not Linux): nothing is claimed.
    assert network_filesystem("/home/bob/run.h5", tmp_path / "absent") is None
