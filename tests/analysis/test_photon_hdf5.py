"""Photon-HDF5 writing and reading: round trips, spec validity, SWMR streaming."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from qd_bluesky.analysis import (
    PhotonHdf5Reader,
    PhotonHdf5Writer,
    PhotonTable,
    read_photon_hdf5,
    read_photons,
    read_ptu,
    write_photon_hdf5,
)
from qd_bluesky.analysis._photon_hdf5 import CARD_MARKER_COLUMNS
from qd_bluesky.analysis._photons import MARKER_DTYPE

DATA = Path(__file__).resolve().parents[1] / "data"
REAL_FILES = ["hydraharp_v10_t3.ptu", "hydraharp_v20_t3.ptu", "picoharp_v30_t2.ptu"]

# Photon-HDF5 v0.5 fields this writer must always produce (photon-hdf5.readthedocs.io).
MANDATORY = {
    "/description": "string",
    "/acquisition_duration": "scalar",
    "/identity/filename": "string",
    "/identity/software": "string",
    "/identity/software_version": "string",
    "/identity/creation_time": "string",
    "/identity/format_name": "string",
    "/identity/format_version": "string",
    "/identity/format_url": "string",
    "/setup/num_pixels": "scalar",
    "/setup/num_spots": "scalar",
    "/setup/num_spectral_ch": "scalar",
    "/setup/num_polarization_ch": "scalar",
    "/setup/num_split_ch": "scalar",
    "/setup/modulated_excitation": "scalar",
    "/setup/lifetime": "scalar",
    "/setup/excitation_alternated": "array",
    "/setup/excitation_cw": "array",
    "/setup/laser_repetition_rates": "array",
    "/photon_data/timestamps": "array",
    "/photon_data/detectors": "array",
    "/photon_data/timestamps_specs/timestamps_unit": "scalar",
    "/photon_data/measurement_specs/measurement_type": "string",
    "/photon_data/measurement_specs/detectors_specs/spectral_ch1": "array",
    "/sample": "group",
    "/provenance": "group",
}
T3_MANDATORY = {
    "/photon_data/nanotimes": "array",
    "/photon_data/nanotimes_specs/tcspc_unit": "scalar",
    "/photon_data/nanotimes_specs/tcspc_num_bins": "scalar",
    "/photon_data/measurement_specs/laser_repetition_rate": "scalar",
}


def check_mandatory(path: Path, t3: bool, pulsed: bool) -> None:
    required = dict(MANDATORY)
    if t3:
        required.update(T3_MANDATORY)
    with h5py.File(path, "r") as f:
        for name, kind in required.items():
            assert name in f, name
            node = f[name]
            if kind == "group":
                assert isinstance(node, h5py.Group), name
            elif kind == "string":
                assert node.shape == () and node.dtype.kind == "S", name
            elif kind == "scalar":
                assert node.shape == () and node.dtype.kind in "iuf", name
            else:
                assert node.ndim == 1, name
            assert node.attrs["TITLE"], name
        assert f["/identity/format_name"][()] == b"Photon-HDF5"
        assert f["/identity/format_version"][()] == b"0.5"
        assert f["/photon_data/measurement_specs/measurement_type"][()] == b"generic"
        assert f["/setup/lifetime"][()] == int(t3)
        assert f["/setup/excitation_cw"][0] == int(not pulsed)
        n_det = int(f["/setup/num_pixels"][()])
        assert f["/setup/num_split_ch"][()] == n_det
        assert len(f["/photon_data/timestamps"]) == len(f["/photon_data/detectors"])
        if n_det > 1:
            for i in range(n_det):
                split = f[f"/photon_data/measurement_specs/detectors_specs/split_ch{i + 1}"]
                assert split[()].tolist() == [i]
        counts = np.bincount(f["/photon_data/detectors"][()], minlength=n_det)
        np.testing.assert_array_equal(f["/setup/detectors/counts"][()], counts)


def validate_with_phconvert(path: Path):
    """Open with phconvert (the reference implementation), which validates the spec.

    It raises for a missing mandatory field, a wrong type or a TITLE that is not the spec's
    description, and only warns about missing optional fields (wavelengths, author).
    Returns the open PyTables file: close it.
    """
    phconvert = pytest.importorskip("phconvert")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Photon-HDF5 WARNING: Missing field")
        return phconvert.hdf5.load_photon_hdf5(str(path), strict_description=True)


def synthetic_table(n: int, seed: int, t3: bool = True) -> PhotonTable:
    rng = np.random.default_rng(seed)
    return PhotonTable(
        macrotime=np.cumsum(rng.geometric(0.02, n)),
        microtime=rng.integers(0, 3125, n) if t3 else np.zeros(n),
        channel=rng.integers(0, 2, n),
        macrotime_unit_s=4e-7 if t3 else 1e-12,
        microtime_unit_s=1.28e-10 if t3 else None,
        microtime_bins=3125 if t3 else 0,
        rep_rate_hz=2.5e6 if t3 else None,
        mode="T3" if t3 else "T2",
    )


def assert_same_photons(a: PhotonTable, b: PhotonTable) -> None:
    np.testing.assert_array_equal(a.macrotime, b.macrotime)
    np.testing.assert_array_equal(a.microtime, b.microtime)
    np.testing.assert_array_equal(a.channel, b.channel)
    for attr in ("macrotime_unit_s", "microtime_unit_s", "microtime_bins", "rep_rate_hz", "mode"):
        assert getattr(a, attr) == getattr(b, attr), attr


# --- one-shot writing ------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL_FILES)
def test_ptu_round_trip(tmp_path: Path, name: str) -> None:
    ptu = read_ptu(DATA / name)
    out = tmp_path / (Path(name).stem + ".h5")
    write_photon_hdf5(out, ptu, description=f"converted from {name}")
    back = read_photons(out)
    assert back.format == "photon-hdf5" and back.source == str(out)
    assert_same_photons(back, ptu)
    assert back.warnings == [] and back.markers is None
    t3 = ptu.mode == "T3"
    check_mandatory(out, t3=t3, pulsed=ptu.rep_rate_hz is not None)
    with h5py.File(out, "r") as f:
        assert f["/provenance/filename"][()] == name.encode()
        assert f["/description"][()] == f"converted from {name}".encode()
        assert f["/acquisition_duration"][()] == pytest.approx(ptu.duration_s, rel=1e-12)
        if t3:
            # tcspc_range = bins x unit, the full microtime window
            rng = f["/photon_data/nanotimes_specs/tcspc_range"][()]
            assert rng == pytest.approx(ptu.microtime_bins * ptu.microtime_unit_s, rel=1e-12)


@pytest.mark.parametrize("name", ["hydraharp_v20_t3.ptu", "picoharp_v30_t2.ptu"])
def test_phconvert_accepts_and_reads_our_files(tmp_path: Path, name: str) -> None:
    ptu = read_ptu(DATA / name)
    out = tmp_path / "converted.h5"
    write_photon_hdf5(out, ptu, sample={"sample_name": "CdSe/CdS dot", "num_dyes": 1})
    h5 = validate_with_phconvert(out)
    try:
        pd = h5.root.photon_data
        np.testing.assert_array_equal(pd.timestamps.read(), ptu.macrotime)
        np.testing.assert_array_equal(pd.detectors.read(), ptu.channel)
        assert pd.timestamps_specs.timestamps_unit.read() == ptu.macrotime_unit_s
        assert h5.root.sample.sample_name.read() == b"CdSe/CdS dot"
        if ptu.mode == "T3":
            np.testing.assert_array_equal(pd.nanotimes.read(), ptu.microtime)
            assert pd.nanotimes_specs.tcspc_unit.read() == ptu.microtime_unit_s
            assert pd.measurement_specs.laser_repetition_rate.read() == ptu.rep_rate_hz
        else:
            assert "nanotimes" not in pd
            assert "laser_repetition_rate" not in pd.measurement_specs
    finally:
        h5.close()


def test_user_groups_and_setup_extras(tmp_path: Path) -> None:
    table = synthetic_table(1000, seed=5)
    charge = np.random.default_rng(6).integers(-1, 2, 1000).astype(np.int8)
    out = tmp_path / "sim.h5"
    write_photon_hdf5(
        out,
        table,
        user={"truth": {"charge": charge, "rates": np.ones((2, 3))}},
        excitation_wavelengths_m=[442e-9],
        detection_wavelengths_m=[620e-9],
    )
    validate_with_phconvert(out).close()
    with PhotonHdf5Reader(out) as reader:
        truth = reader.read_user("truth")
    np.testing.assert_array_equal(truth["charge"], charge)
    assert truth["charge"].dtype == np.int8 and truth["rates"].shape == (2, 3)
    with h5py.File(out, "r") as f:
        assert f["/setup/excitation_wavelengths"][()].tolist() == [442e-9]


# --- reading files written elsewhere -------------------------------------------------------
def test_reader_row_ranges_and_rate_fallback(tmp_path: Path) -> None:
    table = synthetic_table(5000, seed=8)
    out = tmp_path / "x.h5"
    write_photon_hdf5(out, table)
    rng = np.random.default_rng(9)
    for _ in range(5):
        a, b = sorted(rng.integers(0, 5000, 2))
        part = read_photon_hdf5(out, start=a, stop=b)
        np.testing.assert_array_equal(part.macrotime, table.macrotime[a:b])
        np.testing.assert_array_equal(part.microtime, table.microtime[a:b])
    assert len(read_photon_hdf5(out, start=4990, stop=10**9)) == 10  # clipped like a slice
    with h5py.File(out, "a") as f:  # a file that gives the rate in /setup only
        del f["/photon_data/measurement_specs/laser_repetition_rate"]
    assert read_photon_hdf5(out).rep_rate_hz == 2.5e6


def test_minimal_foreign_files(tmp_path: Path) -> None:
    """No detectors column -> channel 0; no nanotimes -> T2; non-photon ids -> markers."""
    ts = np.array([5, 9, 12, 30, 31], dtype=np.int64)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["/photon_data/timestamps"] = ts
        f["/photon_data/timestamps_specs/timestamps_unit"] = 1e-8
    table = read_photon_hdf5(plain)
    assert table.mode == "T2" and table.microtime_unit_s is None and table.rep_rate_hz is None
    np.testing.assert_array_equal(table.macrotime, ts)
    assert table.channels == [0]

    tagged = tmp_path / "tagged.h5"
    with h5py.File(tagged, "w") as f:
        f["/photon_data/timestamps"] = ts
        f["/photon_data/detectors"] = np.array([0, 1, 254, 1, 0], dtype=np.uint8)
        f["/photon_data/timestamps_specs/timestamps_unit"] = 1e-8
        f["/photon_data/measurement_specs/detectors_specs/non_photon_id1"] = [254]
    table = read_photon_hdf5(tagged)
    np.testing.assert_array_equal(table.macrotime, [5, 9, 30, 31])
    np.testing.assert_array_equal(table.channel, [0, 1, 1, 0])
    assert table.markers.tolist() == [(12, 254)]


# --- streaming -----------------------------------------------------------------------------
def snapshot(path: Path) -> dict[str, tuple]:
    """Every dataset and TITLE (creation-specific identity fields left out)."""
    out: dict[str, tuple] = {}
    skip = {"identity/creation_time", "identity/filename", "identity/filename_full"}

    def visit(name: str, obj: object) -> None:
        title = obj.attrs.get("TITLE")
        if isinstance(obj, h5py.Dataset) and name not in skip:
            value = obj[()]
            out[name] = (obj.dtype.str, np.asarray(value).tolist(), title)
        elif isinstance(obj, h5py.Group):
            out[name] = ("group", None, title)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        out["/attrs"] = ("attrs", sorted((k, str(v)) for k, v in f.attrs.items()), None)
    return out


@pytest.mark.parametrize("t3", [True, False], ids=["T3", "T2"])
def test_streamed_file_equals_one_shot(tmp_path: Path, t3: bool) -> None:
    table = synthetic_table(40_000, seed=12, t3=t3)
    bias_t = np.linspace(0, 1, 300)
    bias_v = np.sin(bias_t)
    one_shot = tmp_path / "one_shot.h5"
    write_photon_hdf5(
        one_shot, table, description="d", user={"bias": {"time_s": bias_t, "bias_v": bias_v}}
    )

    streamed = tmp_path / "streamed.h5"
    rng = np.random.default_rng(13)
    cuts = np.sort(rng.integers(0, len(table), 25))
    with PhotonHdf5Writer(
        streamed,
        macrotime_unit_s=table.macrotime_unit_s,
        microtime_unit_s=table.microtime_unit_s,
        microtime_bins=table.microtime_bins,
        rep_rate_hz=table.rep_rate_hz,
        description="d",
        channels=2,
        chunk_rows=4096,
        user_columns={"bias": {"time_s": np.float64, "bias_v": np.float64}},
    ) as writer:
        assert writer.chunk_shape == (4096,)
        expected = writer.dataset_paths
        assert expected["timestamps"] == "/photon_data/timestamps"
        assert ("nanotimes" in expected) == t3 and expected["bias/bias_v"] == "/user/bias/bias_v"
        # random cuts: some chunks are empty
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(table)], strict=True):
            rows = writer.append(table.macrotime[a:b], table.microtime[a:b], table.channel[a:b])
            assert rows == b == writer.rows_written
        for a, b in ((0, 7), (7, 7), (7, 300)):
            writer.append_user("bias", time_s=bias_t[a:b], bias_v=bias_v[a:b])
    writer.close()  # idempotent
    assert writer.closed
    assert snapshot(streamed) == snapshot(one_shot)
    validate_with_phconvert(streamed).close()
    check_mandatory(streamed, t3=t3, pulsed=t3)


def test_append_rejects_bad_rows_and_keeps_file_intact(tmp_path: Path) -> None:
    table = synthetic_table(1000, seed=14)
    path = tmp_path / "w.h5"
    with PhotonHdf5Writer(
        path,
        macrotime_unit_s=4e-7,
        microtime_unit_s=1.28e-10,
        microtime_bins=3125,
        rep_rate_hz=2.5e6,
    ) as w:
        w.append(table.macrotime[:500], table.microtime[:500], table.channel[:500])
        with pytest.raises(ValueError, match="non-decreasing"):
            w.append(table.macrotime[:10], table.microtime[:10], table.channel[:10])
        with pytest.raises(ValueError, match="channel"):
            w.append([10**9], [0], [2])
        with pytest.raises(ValueError, match="microtime"):
            w.append([10**9], [3125], [0])
        assert w.rows_written == 500
    with pytest.raises(ValueError, match="closed"):
        w.append([1], [1], [1])
    back = read_photon_hdf5(path)
    np.testing.assert_array_equal(back.macrotime, table.macrotime[:500])


class _WriteFails:
    """Dataset proxy whose writes raise, as a Ctrl-C between two h5py calls would."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self._ds = ds

    def __getattr__(self, name: str) -> object:
        return getattr(self._ds, name)

    def __setitem__(self, key: object, value: object) -> None:
        raise KeyboardInterrupt


def test_interrupted_append_leaves_consistent_file(tmp_path: Path) -> None:
    table = synthetic_table(2000, seed=15)
    path = tmp_path / "interrupted.h5"
    writer = PhotonHdf5Writer(
        path,
        macrotime_unit_s=4e-7,
        microtime_unit_s=1.28e-10,
        microtime_bins=3125,
        rep_rate_hz=2.5e6,
    )
    try:
        writer.append(table.macrotime[:1200], table.microtime[:1200], table.channel[:1200])
        real = writer._detectors
        writer._detectors = _WriteFails(real)
        with pytest.raises(KeyboardInterrupt):
            # timestamps grow and are written, then the detectors write is interrupted
            writer.append(table.macrotime[1200:], table.microtime[1200:], table.channel[1200:])
        writer._detectors = real
    finally:
        writer.close()
    with h5py.File(path, "r") as f:
        lengths = {k: len(f[f"/photon_data/{k}"]) for k in ("timestamps", "detectors", "nanotimes")}
    assert lengths == {"timestamps": 1200, "detectors": 1200, "nanotimes": 1200}
    assert_same_photons(read_photon_hdf5(path), table.slice(0, 1200))
    validate_with_phconvert(path).close()


WRITER_PROCESS = r"""
import os, sys
import numpy as np
from qd_bluesky.analysis import PhotonHdf5Writer

path, data = sys.argv[1], np.load(sys.argv[2])
writer = PhotonHdf5Writer(
    path, macrotime_unit_s=4e-7, microtime_unit_s=1.28e-10, microtime_bins=3125,
    rep_rate_hz=2.5e6, chunk_rows=1024, user_columns={"bias": {"row": "i8", "bias_v": "f8"}},
)
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "append":
        a, b = map(int, args)
        rows = writer.append(data["macrotime"][a:b], data["microtime"][a:b], data["channel"][a:b])
        writer.append_user("bias", row=[rows], bias_v=[rows * 1e-3])
        print(rows, flush=True)
    elif command == "crash":
        os._exit(3)  # dies without closing the file
    elif command == "close":
        writer.close()
        print("closed", flush=True)
"""


class WriterProcess:
    """The SWMR writer in another process, driven line by line."""

    def __init__(self, path: Path, table: PhotonTable, tmp_path: Path) -> None:
        data = tmp_path / "photons.npz"
        np.savez(data, macrotime=table.macrotime, microtime=table.microtime, channel=table.channel)
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", WRITER_PROCESS, str(path), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.answer() == "ready"

    def answer(self) -> str:
        line = self.proc.stdout.readline().strip()
        assert line, f"writer process ended (exit code {self.proc.poll()})"
        return line

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def append(self, a: int, b: int) -> int:
        self.send(f"append {a} {b}")
        return int(self.answer())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def test_reader_follows_writer_in_another_process(tmp_path: Path) -> None:
    table = synthetic_table(30_000, seed=21)
    path = tmp_path / "live.h5"
    writer = WriterProcess(path, table, tmp_path)
    try:
        with PhotonHdf5Reader(path) as reader:
            assert reader.swmr and reader.rows == 0
            cuts = np.r_[
                0, np.sort(np.random.default_rng(22).integers(0, len(table), 6)), len(table)
            ]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                assert writer.append(a, b) == b
                assert reader.refresh() == b  # rows appear while the writer is open
                part = reader.read(a, b)
                np.testing.assert_array_equal(part.macrotime, table.macrotime[a:b])
                np.testing.assert_array_equal(part.microtime, table.microtime[a:b])
                np.testing.assert_array_equal(part.channel, table.channel[a:b])
                assert reader.read_user("bias")["row"][-1] == b
            # a fresh one-shot read of the open file sees the same rows
            assert_same_photons(read_photon_hdf5(path), table)
            writer.send("close")
            assert writer.answer() == "closed"
        writer.proc.stdin.close()
        assert writer.proc.wait(timeout=30) == 0
    finally:
        writer.stop()
    with h5py.File(path, "r") as f:
        assert f["/acquisition_duration"][()] == pytest.approx(table.duration_s, rel=1e-12)
    validate_with_phconvert(path).close()


def test_writer_crash_leaves_flushed_rows_readable(tmp_path: Path) -> None:
    table = synthetic_table(10_000, seed=23)
    path = tmp_path / "crashed.h5"
    writer = WriterProcess(path, table, tmp_path)
    try:
        assert writer.append(0, 4000) == 4000
        assert writer.append(4000, 7000) == 7000
        writer.send("crash")
        assert writer.proc.wait(timeout=30) == 3
    finally:
        writer.stop()
    back = read_photon_hdf5(path)  # the file still carries the SWMR writer's open flag
    assert_same_photons(back, table.slice(0, 7000))


def test_two_readers_of_one_growing_file_in_one_process(tmp_path: Path) -> None:
    # The live analyzer and an adaptive plan's probe follow the same file: HDF5 gave wrong rows
    # when two handles of one growing dataset refreshed apart.
    table = synthetic_table(60_000, seed=24)
    path = tmp_path / "shared.h5"
    writer = WriterProcess(path, table, tmp_path)
    cuts = np.r_[0, np.sort(np.random.default_rng(25).integers(0, len(table), 40)), len(table)]
    try:
        with PhotonHdf5Reader(path) as follower, PhotonHdf5Reader(path) as probe:
            probe_from = 0
            for step, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
                writer.append(a, b)
                follower.refresh()
                np.testing.assert_array_equal(follower.read(a, b).macrotime, table.macrotime[a:b])
                if step % 3 == 2:  # the probe looks less often, from its last marker
                    probe.refresh()
                    part = probe.read(probe_from, b)
                    np.testing.assert_array_equal(part.macrotime, table.macrotime[probe_from:b])
                    np.testing.assert_array_equal(part.microtime, table.microtime[probe_from:b])
                    probe_from = b
    finally:
        writer.stop()


def test_markers_go_to_the_card_schema_and_come_back(tmp_path: Path) -> None:
    table = synthetic_table(5_000, seed=26)
    t = table.macrotime
    markers = np.array([(t[10], 0b0001), (t[2000], 0b0100), (t[4000] + 1, 0b0011)], MARKER_DTYPE)
    path = write_photon_hdf5(tmp_path / "markers.h5", replace(table, markers=markers))
    with h5py.File(path, "r") as f:
        rows = {k: f[f"/user/markers/{k}"][()].tolist() for k in CARD_MARKER_COLUMNS}
    # One row per marker input set; photon_index counts the photons before the marker.
    assert rows == {
        "timestamp": [t[10], t[2000], t[4000] + 1, t[4000] + 1],
        "channel": [1, 3, 1, 2],
        "photon_index": [
            int(np.searchsorted(t, t[10])),
            int(np.searchsorted(t, t[2000])),
            int(np.searchsorted(t, t[4000] + 1)),
            int(np.searchsorted(t, t[4000] + 1)),
        ],
    }
    back = read_photon_hdf5(path).markers
    assert back["macrotime"].tolist() == rows["timestamp"]
    assert back["bits"].tolist() == [0b0001, 0b0100, 0b0001, 0b0010]
