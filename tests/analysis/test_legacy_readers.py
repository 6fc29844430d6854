"""PicoQuant PT2/PT3/HT2/HT3/T3R and Becker & Hickl SPC readers.

Real files (tests/data/libpicoquant) against libpicoquant's decodes of their first records;
PT3, PT2 and SPC, of which no sample exists here, by round trip through writers of the
published layouts (``legacy_writers``); corrupt files against the one-line errors.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import ptufile
import pytest

from qd_bluesky.analysis import (
    PhotonFileError,
    PhotonFileWarning,
    analyze_file,
    read_photons,
    read_picoquant_legacy,
    read_spc,
)
from qd_bluesky.analysis._io import sniff_format
from qd_bluesky.analysis._records import HYDRAHARP_V2_T2, decode_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
from legacy_writers import (  # noqa: E402
    PT2_WRAP,
    PT3_WRAP,
    SPC_WRAP,
    pt2_records,
    pt3_records,
    spc_records,
    write_picoharp,
)
from test_bad_files import assert_one_line_error  # noqa: E402

LPQ = Path(__file__).resolve().parents[1] / "data" / "libpicoquant"


def reference(name: str) -> np.ndarray:
    return np.loadtxt(LPQ / f"{name}.data", delimiter=",", dtype=np.int64, ndmin=2)


def read_quietly(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_photons(path)
    return table, [str(w.message) for w in caught]


# --- real files against libpicoquant ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "resolution_ps", "sync_hz", "declared"),
    [
        ("hydraharp_v10.ht3", 4.0, 10004460, 72463591),
        ("hydraharp_v20.ht3", 16.0, 998898, 53606),
    ],
)
def test_ht3_first_records_equal_libpicoquant(name, resolution_ps, sync_hz, declared) -> None:
    table, shown = read_quietly(LPQ / name)
    ref = reference(name)  # channel, sync count, delay in ps (libpicoquant: dtime x res)
    n = len(ref)
    assert table.format == "ht3" and table.mode == "T3" and sniff_format(LPQ / name)
    np.testing.assert_array_equal(table.channel[:n], ref[:, 0])
    np.testing.assert_array_equal(table.macrotime[:n], ref[:, 1])
    np.testing.assert_array_equal(
        table.microtime[:n].astype(np.int64) * int(resolution_ps), ref[:, 2]
    )
    assert table.microtime_unit_s == pytest.approx(resolution_ps * 1e-12, rel=1e-12)
    assert table.rep_rate_hz == sync_hz and table.macrotime_unit_s == 1.0 / sync_hz
    assert table.microtime.max() < table.microtime_bins
    assert np.all(np.diff(table.macrotime) >= 0)
    if name == "hydraharp_v10.ht3":  # the sample was cut after 1050 records
        assert shown and "truncated: header declares 72463591 records, file holds 1050" in shown[0]
    else:
        assert shown == [] and table.warnings == []


def test_ht2_v1_first_records_equal_libpicoquant() -> None:
    """Version 1.0 T2 ticks are 0.5 ps (the header's resolution); libpicoquant halves them."""
    table, shown = read_quietly(LPQ / "hydraharp_v10.ht2")
    ref = reference("hydraharp_v10.ht2")
    photons = ref[ref[:, 0] != 4]  # libpicoquant labels sync records as channel 4
    assert table.format == "ht2" and table.mode == "T2" and table.macrotime_unit_s == 0.5e-12
    n = len(photons)
    assert n > 10 and len(table) >= n
    np.testing.assert_array_equal(table.channel[:n], photons[:, 0])
    np.testing.assert_array_equal(table.macrotime[:n] // 2, photons[:, 1])
    assert "truncated: header declares 52378636 records, file holds 25" in shown[0]


def test_ht2_v2_sync_records_equal_libpicoquant() -> None:
    """The v2.0 sample holds only sync records: no photons, and the syncs give the rate."""
    table, _ = read_quietly(LPQ / "hydraharp_v20.ht2")
    ref = reference("hydraharp_v20.ht2")
    assert set(ref[:, 0].tolist()) == {4} and len(table) == 0
    data = (LPQ / "hydraharp_v20.ht2").read_bytes()
    raw = np.frombuffer(data[len(data) - 4 * 25 :], dtype="<u4")
    decoded = decode_records(raw, HYDRAHARP_V2_T2)
    assert decoded.n_sync == len(ref) == 25
    assert decoded.sync_span == (ref[0, 1], ref[-1, 1])  # 1 ps ticks, no overflow yet
    # 24 sync periods over the span agree with the header's rate meter (998 880 Hz)
    assert table.rep_rate_hz == 998880 and table.warnings[-1].startswith("truncated")


def test_t3r_first_records_equal_libpicoquant() -> None:
    table, shown = read_quietly(LPQ / "timeharp_v50.t3r")
    ref = reference("timeharp_v50.t3r")  # channel, time tag, raw microtime bin
    n = len(ref)
    assert table.format == "t3r" and table.mode == "T3"
    np.testing.assert_array_equal(table.channel[:n], ref[:, 0])
    np.testing.assert_array_equal(table.macrotime[:n], ref[:, 1])
    np.testing.assert_array_equal(table.microtime[:n], ref[:, 2])
    # time tags count the 100 ns global clock; 70.24 ps bins (the .resolution file)
    assert table.macrotime_unit_s == pytest.approx(100e-9)
    assert table.microtime_unit_s * 1e12 == pytest.approx(70.24, abs=0.005)
    assert table.rep_rate_hz == 4999168
    assert shown == [
        f"{LPQ / 'timeharp_v50.t3r'}: header declares 86997 records but the file holds 1 more "
        "bytes after them: reading the declared records only"
    ]


def test_ptu_t2_equals_libpicoquant_up_to_its_v2_wrap() -> None:
    """libpicoquant unwraps HydraHarp v2 T2 overflows by 33 552 000 ticks where PicoQuant's
    layout (and ptufile, tttrlib) use 2**25: the difference is 2432 ps per overflow."""
    name = "hydraharp_v30_t2.ptu"
    table, shown = read_quietly(LPQ / name)
    ref = reference(name)
    with ptufile.PtuFile(LPQ / name) as ptu:
        raw = ptu.read_records()
    overflow = (raw >> 25) == 0x7F
    n_wraps = np.cumsum(np.where(overflow, np.where(raw & 0x1FFFFFF, raw & 0x1FFFFFF, 1), 0))
    photon = raw >> 31 == 0
    wraps_before = n_wraps[photon][: len(ref)]
    assert wraps_before[-1] > 3  # the comparison spans several overflows
    n = len(ref)
    np.testing.assert_array_equal(table.channel[:n], ref[:, 0])
    np.testing.assert_array_equal(
        table.macrotime[:n] - (2**25 - 33_552_000) * wraps_before, ref[:, 1]
    )
    assert shown == [] and table.format == "ptu"


def test_analyze_legacy_file_gives_sane_numbers() -> None:
    path = LPQ / "hydraharp_v20.ht3"
    table = read_photons(path)
    result = analyze_file(path)
    assert result["format"] == "ht3" and result["photons"] == len(table) == 44141
    assert result["rep_rate_hz"] == 998898
    duration = (table.macrotime[-1] - table.macrotime[0]) / 998898
    assert result["duration_s"] == pytest.approx(duration, rel=1e-12)
    assert result["count_rate_cps"] == pytest.approx(len(table) / duration, rel=1e-9)
    assert result["microtime_unit_ps"] == pytest.approx(16.0)
    assert sum(result["flid"]["intensity_cps"]) * 0.02 == pytest.approx(len(table), rel=1e-9)


# --- PT3, PT2 and SPC by round trip -------------------------------------------------------
def _events(rng, n: int, span: int, n_marker: int):
    times = np.sort(rng.choice(span, n, replace=False))
    kind = np.full(n, "photon", dtype=object)
    kind[rng.choice(n, n_marker, replace=False)] = "marker"
    return times, kind


def test_pt3_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 4000
    # long gaps: several empty wraps in a row
    times, kind = _events(rng, n, 40 * PT3_WRAP, 60)
    channel = rng.integers(0, 4, n)
    bits = rng.integers(1, 16, n)
    dtime = rng.integers(0, 4096, n)
    events = [
        (int(t), k, int(c if k == "photon" else b), int(d if k == "photon" else 0))
        for t, k, c, b, d in zip(times, kind, channel, bits, dtime, strict=True)
    ]
    records = pt3_records(events)
    assert np.count_nonzero(records == 0xF0000000) >= 39  # every wrap has its record
    path = write_picoharp(
        tmp_path / "rt.bin", 3, records, sync_rate=20_000_000, resolution_ns=0.004
    )
    assert sniff_format(path) == "picoquant-legacy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_photons(path)
    ph = kind == "photon"
    assert table.format == "pt3" and table.mode == "T3"
    np.testing.assert_array_equal(table.macrotime, times[ph])
    np.testing.assert_array_equal(table.channel, channel[ph])
    np.testing.assert_array_equal(table.microtime, dtime[ph])
    np.testing.assert_array_equal(table.markers["macrotime"], times[~ph])
    np.testing.assert_array_equal(table.markers["bits"], bits[~ph])
    assert table.rep_rate_hz == 20e6 and table.macrotime_unit_s == 1 / 20e6
    assert table.microtime_unit_s == pytest.approx(4e-12, rel=1e-6)
    assert table.microtime_bins == 12_500  # 50 ns period / 4 ps bins


def test_pt2_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 3000
    times, kind = _events(rng, n, 5 * PT2_WRAP, 40)
    channel = rng.integers(0, 5, n)  # T2: input 0 is a detector too
    bits = (times & 0xF).astype(np.int64)
    kind[bits == 0] = "photon"  # a marker needs nonzero bits (its time's low nibble)
    events = [
        (int(t), k, int(c if k == "photon" else b))
        for t, k, c, b in zip(times, kind, channel, bits, strict=True)
    ]
    path = write_picoharp(
        tmp_path / "rt.pt2", 2, pt2_records(events), sync_rate=1000, resolution_ns=0.004
    )
    table, shown = read_quietly(path)
    ph = kind == "photon"
    assert table.format == "pt2" and table.mode == "T2" and shown == []
    np.testing.assert_array_equal(table.macrotime, times[ph])
    np.testing.assert_array_equal(table.channel, channel[ph])
    np.testing.assert_array_equal(table.markers["macrotime"], times[~ph])
    np.testing.assert_array_equal(table.markers["bits"], bits[~ph])
    assert table.macrotime_unit_s == 4e-12 and table.rep_rate_hz is None
    assert not table.microtime.any()


def _spc_events(rng, n: int):
    # bursts and long pauses: single, a few and many wraps between events
    gaps = rng.choice(
        [5, 900, SPC_WRAP + 7, 2 * SPC_WRAP + 1, 40 * SPC_WRAP], n, p=[0.5, 0.3, 0.1, 0.05, 0.05]
    )
    times = np.cumsum(gaps)
    kind = rng.choice(
        np.array(["photon", "marker", "invalid", "gap"], dtype=object), n, p=[0.9, 0.04, 0.03, 0.03]
    )
    rout = rng.integers(0, 16, n)
    micro = rng.integers(0, 4096, n)
    return times, kind, rout, micro


def test_spc_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    times, kind, rout, micro = _spc_events(rng, 5000)
    records = spc_records(
        list(zip(times.tolist(), kind, rout.tolist(), micro.tolist(), strict=True)), 500
    )
    path = tmp_path / "rt.spc"
    path.write_bytes(records.tobytes())
    assert sniff_format(path) == "spc"
    table, shown = read_quietly(path)
    ph = (kind == "photon") | (kind == "gap")  # a GAP-flagged record is still a photon
    mk = kind == "marker"
    assert (
        table.format == "spc"
        and table.mode == "T3"
        and table.macrotime_unit_s == pytest.approx(50e-9)
    )
    np.testing.assert_array_equal(table.macrotime, times[ph])
    np.testing.assert_array_equal(table.channel, rout[ph])
    np.testing.assert_array_equal(table.microtime, micro[ph])
    np.testing.assert_array_equal(table.markers["macrotime"], times[mk])
    np.testing.assert_array_equal(table.markers["bits"], rout[mk])
    n_gap, n_invalid = int(np.sum(kind == "gap")), int(np.sum(kind == "invalid"))
    assert table.warnings == [
        f"{n_gap} records flagged GAP: the card's FIFO overflowed and photons were lost there",
        f"{n_invalid} records with an undefined channel code were skipped (corrupt records?)",
    ]
    assert len(shown) == 2


def test_spc_partial_last_record_is_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    times, _, rout, micro = _spc_events(rng, 300)
    kind = np.full(times.size, "photon", dtype=object)
    records = spc_records(
        list(zip(times.tolist(), kind, rout.tolist(), micro.tolist(), strict=True)), 125
    )
    path = tmp_path / "cut.spc"
    path.write_bytes(records.tobytes()[:-3])
    with pytest.warns(PhotonFileWarning, match="partial trailing record of 1 bytes"):
        table = read_photons(path)
    np.testing.assert_array_equal(table.macrotime, times[:-1])


def test_random_bytes_are_not_spc(tmp_path: Path) -> None:
    # headers that pass the SPC header check, followed by noise: never taken for SPC
    rng = np.random.default_rng(9)
    for i in range(50):
        body = rng.bytes(4096)
        path = tmp_path / f"noise{i}.bin"
        path.write_bytes(((1 << 31) | 500).to_bytes(4, "little") + body)
        assert sniff_format(path) is None
    # read_spc itself trusts the caller past the header record; a non-SPC one is refused
    bad = tmp_path / "bad.spc"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(PhotonFileError) as err:
        read_spc(bad)
    assert_one_line_error(err.value, bad, "no Becker & Hickl SPC header")


# --- corrupt legacy files -----------------------------------------------------------------
@pytest.mark.parametrize("keep", [16, 100, 700])
def test_legacy_header_cut_short(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "short.ht3"
    path.write_bytes((LPQ / "hydraharp_v20.ht3").read_bytes()[:keep])
    with pytest.raises(PhotonFileError) as err:
        read_photons(path)
    assert_one_line_error(err.value, path, "header corrupt or cut short")


def test_legacy_partial_final_record(tmp_path: Path) -> None:
    data = (LPQ / "hydraharp_v20.ht3").read_bytes()
    path = tmp_path / "cut.ht3"
    path.write_bytes(data[:-2])
    with pytest.warns(PhotonFileWarning) as caught:
        table = read_photons(path)
    assert table.warnings == [
        "truncated: header declares 53606 records, file holds 53605 (1 missing; a partial "
        "trailing record of 2 bytes was dropped)"
    ]
    assert str(path) in str(caught[0].message)
    whole = read_photons(LPQ / "hydraharp_v20.ht3")
    last_is_photon = int.from_bytes(data[-4:], "little") >> 31 == 0
    assert len(table) == len(whole) - last_is_photon


def test_legacy_unknown_version_and_mode(tmp_path: Path) -> None:
    data = bytearray((LPQ / "hydraharp_v20.ht3").read_bytes())
    data[16:22] = b"9.9\0\0\0"
    path = tmp_path / "future.ht3"
    path.write_bytes(bytes(data))
    with pytest.raises(PhotonFileError) as err:
        read_photons(path)
    assert_one_line_error(err.value, path, "unsupported hydraharp file format version '9.9'")

    histogram = write_picoharp(
        tmp_path / "histo.phd", 0, np.zeros(4, "<u4"), sync_rate=1, resolution_ns=0.004
    )
    with pytest.raises(PhotonFileError) as err:
        read_picoquant_legacy(histogram)
    assert_one_line_error(err.value, histogram, "histogram file")


def test_legacy_undefined_records_are_counted(tmp_path: Path) -> None:
    records = pt3_records([(5, "photon", 0, 7), (9, "photon", 1, 8)])
    bad = np.concatenate([records[:1], np.array([0x5 << 28], "<u4"), records[1:]])  # channel 5
    path = write_picoharp(tmp_path / "odd.pt3", 3, bad, sync_rate=10**6, resolution_ns=0.004)
    with pytest.warns(PhotonFileWarning, match="1 records with an undefined channel code"):
        table = read_photons(path)
    np.testing.assert_array_equal(table.macrotime, [5, 9])


def test_t3r_version_6_header(tmp_path: Path) -> None:
    """The 5.0 sample rewritten to the 6.0 layout (creator name and version instead of the
    hardware version; each board led by its hardware ident and version) reads the same."""
    data = (LPQ / "timeharp_v50.t3r").read_bytes()
    v6 = bytearray(data[:16]) + b"6.0\0\0\0"
    v6 += b"TimeHarp Software".ljust(18, b"\0") + b"6.0.0.0".ljust(12, b"\0")
    board_at = 22 + 6 + 18 + 2 + 256 + 19 * 4 + 64 + 36 + 16 + 20  # one board in the sample
    v6 += data[28:board_at]
    v6 += b"TimeHarp 200".ljust(16, b"\0") + b"2.4".ljust(8, b"\0") + data[board_at:]
    path = tmp_path / "v6.t3r"
    path.write_bytes(bytes(v6))
    table, _ = read_quietly(path)
    whole, _ = read_quietly(LPQ / "timeharp_v50.t3r")
    np.testing.assert_array_equal(table.macrotime, whole.macrotime)
    np.testing.assert_array_equal(table.microtime, whole.microtime)
    assert table.microtime_unit_s == whole.microtime_unit_s
    assert table.rep_rate_hz == whole.rep_rate_hz == 4999168
