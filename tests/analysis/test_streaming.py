"""``analyze_file`` streams Photon-HDF5 files: the same numbers as the whole-file analysis, and
a peak memory that does not grow with the file's length."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import pytest

from qd_bluesky.analysis import (
    PhotonAnalysis,
    StreamUnits,
    _analyze,
    analyze_file,
    write_photon_hdf5,
)
from qd_bluesky.analysis._io import read_photons

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import generate  # noqa: E402


def whole_file(path, bin_ms=20.0):
    """The analysis of the whole file in one piece (what analyze_file did before streaming)."""
    table = read_photons(path)
    analysis = PhotonAnalysis(
        StreamUnits.of(table),
        flid_bin_s=bin_ms * 1e-3,
        t0_ticks=int(table.macrotime[0]),
        channels=tuple(table.channels),
    )
    analysis.add(table.macrotime, table.microtime, table.channel)
    summary = analysis.summary(bin_ms=bin_ms)
    return {**summary, "warnings": list(table.warnings) + summary["warnings"]}


def canonical(result):
    return json.dumps({k: v for k, v in result.items() if k not in ("source", "format")})


@pytest.mark.parametrize(
    "chunk_rows, window_bins, flid_bytes, workers",
    [(777, 7, 0, 1), (1 << 20, 3000, 1 << 28, 2), (4096, 1, 0, 2), (5000, 3000, 1 << 28, 2)],
)
def test_chunked_equals_whole_file(
    tmp_path, monkeypatch, chunk_rows, window_bins, flid_bytes, workers
):
    # Blinking between X0 and X- with a gap-free and a sparse stretch of bins.
    syn = generate(
        6.0, ((35e3, 125e-9), (12e3, 42e-9)), dwell_s=0.2, background_cps=300, g2_zero=0.1
    )
    path = write_photon_hdf5(tmp_path / "s.h5", syn.table())
    # flid_bytes 0: the FLID window by window in a second read; else whole in the one read
    monkeypatch.setattr(_analyze, "FLID_WINDOW_BINS", window_bins)
    monkeypatch.setattr(_analyze, "FLID_MEMORY_BYTES", flid_bytes)
    streamed = analyze_file(path, chunk_rows=chunk_rows, workers=workers)
    reference = whole_file(path)
    # Bit for bit: the JSON texts (floats printed with all their digits) are equal.
    assert canonical(streamed) == canonical(reference)
    assert len(streamed["flid"]["lifetime_ns"]) == 300


def test_empty_bins_between_windows(tmp_path, monkeypatch):
    # A 2 s gap without photons spans whole windows of 5 bins.
    syn = generate(4.0, ((35e3, 20e-9),), seed=2)
    keep = (syn.macrotime * syn.period_s < 1.0) | (syn.macrotime * syn.period_s > 3.0)
    table = syn.table()
    table = type(table)(
        table.macrotime[keep],
        table.microtime[keep],
        table.channel[keep],
        *(getattr(table, k) for k in ("macrotime_unit_s", "microtime_unit_s", "microtime_bins")),
        table.rep_rate_hz,
        "T3",
        format="synthetic",
    )
    path = write_photon_hdf5(tmp_path / "gap.h5", table)
    monkeypatch.setattr(_analyze, "FLID_WINDOW_BINS", 5)
    monkeypatch.setattr(_analyze, "FLID_MEMORY_BYTES", 0)
    streamed = analyze_file(path, chunk_rows=1000)
    assert canonical(streamed) == canonical(whole_file(path))
    assert streamed["flid"]["intensity_cps"][100] == 0.0  # in the gap
    assert streamed["flid"]["lifetime_ns"][100] is None


def test_a_channel_missing_from_the_first_chunk(tmp_path):
    # The first 3000 photons are all on detector 1: the one read starts again when detector 0
    # appears, and g2 and the channels come out as from the whole file.
    table = generate(3.0, ((35e3, 20e-9),), g2_zero=0.2, seed=5).table()
    table.channel[:3000] = 1
    path = write_photon_hdf5(tmp_path / "late.h5", table)
    streamed = analyze_file(path, chunk_rows=2000)
    assert streamed["channels"] == [0, 1]
    assert streamed["g2_zero"] is not None
    assert canonical(streamed) == canonical(whole_file(path))


def peak_bytes(path) -> int:
    tracemalloc.start()
    try:
        analyze_file(path, chunk_rows=1 << 16)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_file_length(tmp_path):
    # Dense photons (2 Mc/s) so that photons, not per-bin results, would dominate.
    short = write_photon_hdf5(tmp_path / "a.h5", generate(1.0, ((2e6, 5e-9),), seed=4).table())
    long = write_photon_hdf5(tmp_path / "b.h5", generate(4.0, ((2e6, 5e-9),), seed=4).table())
    n_short = len(read_photons(short))
    n_long = len(read_photons(long))
    analyze_file(short)  # numba compilation and imports outside the measurement
    grow = peak_bytes(long) - peak_bytes(short)
    # Reading the file whole costs 11 bytes per photon (plus copies): 66 MB more for the long
    # file. Streamed, only the results of 150 more FLID bins (~100 bytes each) may add up.
    assert grow < 0.05 * 11 * (n_long - n_short), (grow, n_long - n_short)


def test_workers_must_be_one_or_two(tmp_path):
    with pytest.raises(ValueError, match="workers must be 1 or 2, got 3"):
        analyze_file(tmp_path / "never-read.h5", workers=3)
