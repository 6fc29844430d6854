"""Damaged, truncated and foreign files: a warning naming the shortfall, or a one-line error.

The corrupt files are built in tmp_path from the real sample files. The expected photons
of a truncated file are ptufile's decode of the records that remain (an implementation
independent of the reader's record classification).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import h5py
import numpy as np
import ptufile
import pytest

from qd_bluesky.analysis import (
    PhotonFileError,
    PhotonFileWarning,
    read_photon_hdf5,
    read_photons,
    read_ptu,
    write_photon_hdf5,
)

DATA = Path(__file__).resolve().parents[1] / "data"
T3_FILE = DATA / "hydraharp_v10_t3.ptu"


def layout(path: Path) -> tuple[bytes, int, int]:
    """File bytes, offset of the first record, declared number of records."""
    data = path.read_bytes()
    with ptufile.PtuFile(path) as ptu:
        return data, ptu.record_offset, int(ptu.tags["TTResult_NumberOfRecords"])


def expected_photons(path: Path, n_records: int) -> dict[str, np.ndarray]:
    """Photons among the first ``n_records`` records, decoded by ptufile."""
    with ptufile.PtuFile(path) as ptu:
        decoded = ptu.decode_records(ptu.read_records()[:n_records])
    photon = decoded["channel"] >= 0
    return {k: decoded[k][photon] for k in ("time", "dtime", "channel")}


def set_declared_records(data: bytes, value: int) -> bytes:
    """Patch TTResult_NumberOfRecords (an Int8 tag: value 40 bytes after its id)."""
    pos = data.index(b"TTResult_NumberOfRecords\0")
    out = bytearray(data)
    struct.pack_into("<q", out, pos + 40, value)
    return bytes(out)


def assert_one_line_error(exc: PhotonFileError, path: Path, *words: str) -> None:
    text = str(exc)
    assert "\n" not in text and path.name in text, text
    for word in words:
        assert word in text, text


# --- truncated PTU ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keep_records", "extra_bytes"),
    [(None, 2), (100_000, 0), (100_000, 3)],
    ids=["mid-last-record", "many-records", "many-records-and-partial"],
)
def test_truncated_ptu_keeps_complete_records_and_warns(
    tmp_path: Path, keep_records: int | None, extra_bytes: int
) -> None:
    data, offset, declared = layout(T3_FILE)
    # cut mid-record: drop the last record except `extra_bytes` of it
    complete = declared - 1 if keep_records is None else keep_records
    cut = tmp_path / "cut.ptu"
    cut.write_bytes(data[: offset + 4 * complete + extra_bytes])

    with pytest.warns(PhotonFileWarning) as caught:
        table = read_ptu(cut)

    message = (
        f"truncated: header declares {declared} records, file holds {complete} "
        f"({declared - complete} missing"
    )
    assert len(table.warnings) == 1 and table.warnings[0].startswith(message)
    if extra_bytes:
        assert f"partial trailing record of {extra_bytes} bytes was dropped" in table.warnings[0]
    assert any(str(w.message).endswith(table.warnings[0]) for w in caught)
    assert str(cut) in str(caught[0].message)

    truth = expected_photons(T3_FILE, complete)
    assert len(table) == truth["time"].size
    np.testing.assert_array_equal(table.macrotime, truth["time"])
    np.testing.assert_array_equal(table.microtime, truth["dtime"])
    np.testing.assert_array_equal(table.channel, truth["channel"])
    # read_photons reports the same
    with pytest.warns(PhotonFileWarning, match="truncated"):
        assert len(read_photons(cut)) == len(table)


def test_unfinalised_header_reads_what_is_there(tmp_path: Path) -> None:
    data, offset, declared = layout(T3_FILE)
    path = tmp_path / "unfinalised.ptu"
    path.write_bytes(set_declared_records(data, 0))
    with pytest.warns(PhotonFileWarning, match="header declares 0 records"):
        table = read_ptu(path)
    assert len(table) == len(read_ptu(T3_FILE))
    assert f"reading the {declared} complete records" in table.warnings[0]


def test_trailing_bytes_after_declared_records(tmp_path: Path) -> None:
    data, _, declared = layout(T3_FILE)
    path = tmp_path / "trailing.ptu"
    path.write_bytes(data + b"\xff" * 10)
    with pytest.warns(PhotonFileWarning, match="10 more bytes"):
        table = read_ptu(path)
    np.testing.assert_array_equal(table.macrotime, read_ptu(T3_FILE).macrotime)


def test_clean_file_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_ptu(T3_FILE).warnings == []


# --- garbage ---------------------------------------------------------------------------------
def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.ptu"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(PhotonFileError) as err:
        read_photons(path)
    assert_one_line_error(
        err.value, path, "not a PTU, PT2/PT3/HT2/HT3/T3R, SPC or Photon-HDF5 file"
    )
    with pytest.raises(PhotonFileError) as err:
        read_ptu(path)
    assert_one_line_error(err.value, path, "no PicoQuant PTU signature")
    with pytest.raises(PhotonFileError) as err:
        read_photon_hdf5(path)
    assert_one_line_error(err.value, path, "not a readable HDF5 file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ptu"
    path.write_bytes(b"")
    for reader in (read_photons, read_ptu, read_photon_hdf5):
        with pytest.raises(PhotonFileError) as err:
            reader(path)
        assert_one_line_error(err.value, path, "empty file")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nothing_here.ptu"
    for reader in (read_photons, read_ptu, read_photon_hdf5):
        with pytest.raises(PhotonFileError) as err:
            reader(missing)
        assert_one_line_error(err.value, missing, "no such file")
    with pytest.raises(PhotonFileError) as err:
        read_photons(tmp_path)
    assert_one_line_error(err.value, tmp_path, "is a directory")


def test_wrong_magic(tmp_path: Path) -> None:
    # A PicoQuant histogram file (PHU) signature followed by a real PTU header
    path = tmp_path / "histogram.ptu"
    path.write_bytes(b"PQHISTO\0" + T3_FILE.read_bytes()[8:])
    with pytest.raises(PhotonFileError) as err:
        read_ptu(path)
    assert_one_line_error(err.value, path, "not a TTTR")


@pytest.mark.parametrize("header_bytes", [16, 100, 3000])
def test_header_cut_short(tmp_path: Path, header_bytes: int) -> None:
    path = tmp_path / "short_header.ptu"
    path.write_bytes(T3_FILE.read_bytes()[:header_bytes])
    with pytest.raises(PhotonFileError) as err:
        read_photons(path)
    assert_one_line_error(err.value, path, "header corrupt or cut short")


def test_header_garbled(tmp_path: Path) -> None:
    data = bytearray(T3_FILE.read_bytes())
    rng = np.random.default_rng(11)
    data[200:600] = rng.bytes(400)  # tag ids, types and string lengths become noise
    path = tmp_path / "garbled.ptu"
    path.write_bytes(bytes(data))
    with pytest.raises(PhotonFileError) as err:
        read_ptu(path)
    assert_one_line_error(err.value, path)


def test_unsupported_record_type(tmp_path: Path) -> None:
    data = bytearray(T3_FILE.read_bytes())
    pos = data.index(b"TTResultFormat_TTTRRecType\0")
    struct.pack_into("<q", data, pos + 40, 0x00ABCDEF)
    path = tmp_path / "alien.ptu"
    path.write_bytes(bytes(data))
    with pytest.raises(PhotonFileError) as err:
        read_ptu(path)
    assert_one_line_error(err.value, path, "unsupported PTU record type 0x00abcdef")


def test_measurement_mode_contradicts_record_type(tmp_path: Path) -> None:
    data = bytearray(T3_FILE.read_bytes())
    pos = data.index(b"Measurement_Mode\0")
    struct.pack_into("<q", data, pos + 40, 2)  # claims T2 for HydraHarp T3 records
    path = tmp_path / "contradiction.ptu"
    path.write_bytes(bytes(data))
    with pytest.raises(PhotonFileError) as err:
        read_ptu(path)
    assert_one_line_error(err.value, path, "Measurement_Mode=2 contradicts HydraHarp 400 (v1) T3")


# --- HDF5 that is not Photon-HDF5 ----------------------------------------------------------
def test_hdf5_without_photon_data(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.arange(3)
    for reader in (read_photons, read_photon_hdf5):
        with pytest.raises(PhotonFileError) as err:
            reader(path)
        assert_one_line_error(err.value, path, "no /photon_data group")


def test_hdf5_missing_units(tmp_path: Path) -> None:
    path = tmp_path / "no_units.h5"
    with h5py.File(path, "w") as f:
        f["photon_data/timestamps"] = np.arange(10)
    with pytest.raises(PhotonFileError) as err:
        read_photon_hdf5(path)
    assert_one_line_error(err.value, path, "timestamps_unit")


def test_truncated_hdf5(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    write_photon_hdf5(good, read_ptu(T3_FILE))
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PhotonFileError) as err:
        read_photons(cut)
    assert_one_line_error(err.value, cut)
