"""``qd-bluesky analyze`` as a user runs it: a subprocess, outside the source tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from qd_bluesky.analysis import analyze_file
from qd_bluesky.data import EXAMPLE_PTU

DATA = Path(__file__).parents[1] / "data"


def qd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the repository, so the installed package is what runs.
    return subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_json_equals_analyze_file(tmp_path):
    proc = qd("analyze", str(DATA / "hydraharp_v10_t3.ptu"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert printed == json.loads(json.dumps(analyze_file(DATA / "hydraharp_v10_t3.ptu")))
    for key in (
        "format photons duration_s count_rate_cps rep_rate_hz channels lifetime_ns decay "
        "g2_zero flid"
    ).split():
        assert key in printed
    assert set(printed["decay"]) >= {
        "model",
        "tau_ns",
        "fraction",
        "background_fraction",
        "irf_fwhm_ns",
    }


def test_example_and_bin_width(tmp_path):
    proc = qd("analyze", "--example", "--bin-ms", "10", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["source"] == str(EXAMPLE_PTU)
    assert result["flid"]["bin_ms"] == 10
    n_bins = len(result["flid"]["intensity_cps"])
    assert n_bins == pytest.approx(result["duration_s"] / 0.01, abs=1.5)


def test_readable_summary(tmp_path):
    proc = qd("analyze", str(DATA / "hydraharp_v20_t3.ptu"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = analyze_file(DATA / "hydraharp_v20_t3.ptu")
    assert f"{expected['photons']:,}" in proc.stdout
    assert f"{expected['lifetime_ns']:.2f} ns" in proc.stdout
    assert f"{expected['g2_zero']:.3f}" in proc.stdout


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    real = (DATA / "hydraharp_v10_t3.ptu").read_bytes()
    (tmp / "cut_header.ptu").write_bytes(real[:1000])
    (tmp / "random.ptu").write_bytes(np.random.default_rng(0).bytes(50_000))
    (tmp / "empty.ptu").write_bytes(b"")
    with h5py.File(tmp / "no_photons.h5", "w") as f:
        f["description"] = "not photons"
    corrupt = bytearray(real)
    corrupt[8:16] = b"\xff" * 8  # the version field and what follows in the header
    (tmp / "corrupt.ptu").write_bytes(bytes(corrupt))
    return {
        "cut header": (tmp / "cut_header.ptu", [], "cut_header.ptu"),
        "random bytes": (tmp / "random.ptu", [], "random.ptu"),
        "empty": (tmp / "empty.ptu", [], "empty"),
        "hdf5 without photon_data": (tmp / "no_photons.h5", [], "photon_data"),
        "missing": (tmp / "missing.ptu", [], "missing.ptu"),
        "t2 asked for lifetime": (DATA / "picoharp_v30_t2.ptu", ["--require", "lifetime"], "T2"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "cut header",
        "random bytes",
        "empty",
        "hdf5 without photon_data",
        "missing",
        "t2 asked for lifetime",
    ],
)
def test_bad_input_gets_one_line(tmp_path, case):
    path, extra, needle = _bad_inputs(tmp_path)[case]
    proc = qd("analyze", str(path), *extra, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qd-bluesky: error: ")
    assert path.name in lines[0] and needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = qd("--debug", "analyze", str(tmp_path / "missing.ptu"), cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_truncated_file_is_analysed_with_a_warning(tmp_path):
    real = (DATA / "hydraharp_v10_t3.ptu").read_bytes()
    cut = tmp_path / "cut.ptu"
    cut.write_bytes(real[: len(real) // 2 + 3])  # half the records and a partial one
    proc = qd("analyze", str(cut), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert any("truncated" in w for w in result["warnings"])
    assert "truncated" in proc.stderr
    # Exactly the photon records among the whole 32-bit records left after the header (the
    # header ends with the 48-byte Header_End tag; a HydraHarp T3 photon has bit 31 clear).
    start = real.index(b"Header_End") + 48
    whole = (len(real) // 2 + 3 - start) // 4
    records = np.frombuffer(real, dtype="<u4", count=whole, offset=start)
    assert result["photons"] == np.count_nonzero(records >> 31 == 0) > 0


def test_usage_error(tmp_path):
    proc = qd("analyze", "--bin-ms", "-5", str(DATA / "hydraharp_v10_t3.ptu"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "bin" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_legacy_format_by_content_and_its_one_line_error(tmp_path):
    """An HT3 v2.0 file under a foreign name is analysed; its header cut short is one line."""
    real = (DATA / "libpicoquant" / "hydraharp_v20.ht3").read_bytes()
    disguised = tmp_path / "recording.dat"
    disguised.write_bytes(real)
    proc = qd("analyze", str(disguised), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["format"] == "ht3" and result["photons"] == 44141
    assert result == json.loads(json.dumps(analyze_file(disguised)))
    cut = tmp_path / "cut.ht3"
    cut.write_bytes(real[:300])
    proc = qd("analyze", str(cut), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"qd-bluesky: error: {cut}: header corrupt or cut short"
