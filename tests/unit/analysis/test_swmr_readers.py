"""Two readers in one process of a file a SWMR writer is filling both see the new rows.

HDF5 shares a file that a process opens twice: the second, plain open succeeds on a file the
first reader holds in SWMR mode, and its datasets must still be refreshed (the live analyzer
and the adaptive plan's probe read the same photon file at once).
"""

from __future__ import annotations

import numpy as np

from qd_bluesky.analysis import PhotonHdf5Reader, PhotonHdf5Writer


def test_a_second_reader_of_a_growing_file_sees_new_rows(tmp_path):
    path = tmp_path / "growing.h5"
    writer = PhotonHdf5Writer(
        path,
        macrotime_unit_s=4e-7,
        microtime_unit_s=25e-12,
        microtime_bins=16000,
        rep_rate_hz=2.5e6,
        chunk_rows=64,
        swmr=True,
    )
    rows = np.arange(100, dtype=np.int64)
    writer.append(rows, np.ones(100, np.uint16), np.zeros(100, np.uint8))
    first = PhotonHdf5Reader(path)
    second = PhotonHdf5Reader(path)
    try:
        assert first.swmr and second.swmr
        writer.append(rows + 100, np.ones(100, np.uint16), np.zeros(100, np.uint8))
        assert second.refresh() == first.refresh() == 200
        np.testing.assert_array_equal(second.read(150, 200).macrotime, rows[50:] + 100)
    finally:
        first.close()
        second.close()
        writer.close()
