"""``validate_photon_file`` and ``qd-bluesky validate``: the photon-file contract
(docs/photon-file.md) holds for the files this package writes, and each documented way to break
it is found and named in one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from qd_bluesky.analysis import PhotonFileError, validate_photon_file
from qd_bluesky.analysis._photon_hdf5 import (
    BIAS_MARKER_COLUMNS,
    BIAS_MARKER_GROUP,
    OVERFLOW_COLUMNS,
    OVERFLOW_GROUP,
    PhotonHdf5Writer,
)

PERIOD_S = 400e-9  # 2.5 MHz
BIN_S = 25e-12
BINS = 16000  # 400 ns / 25 ps


def write_ioc_like(path: Path, *, rows: int = 50_000, seed: int = 0) -> Path:
    """A file laid out as the TCSPC IOC writes it: T3, two detectors, bias markers."""
    rng = np.random.default_rng(seed)
    macro = np.cumsum(rng.geometric(0.01, rows)).astype(np.int64)
    micro = rng.integers(0, BINS, rows).astype(np.uint16)
    chan = rng.integers(0, 2, rows).astype(np.uint8)
    with PhotonHdf5Writer(
        path,
        macrotime_unit_s=PERIOD_S,
        microtime_unit_s=BIN_S,
        microtime_bins=BINS,
        rep_rate_hz=1 / PERIOD_S,
        user_columns={
            BIAS_MARKER_GROUP: BIAS_MARKER_COLUMNS,
            OVERFLOW_GROUP: OVERFLOW_COLUMNS,
        },
    ) as w:
        half = rows // 2
        w.append(macro[:half], micro[:half], chan[:half])
        w.append_user(
            BIAS_MARKER_GROUP,
            photon_index=[0, half],
            sync=[0, int(macro[half])],
            t_s=[0.0, macro[half] * PERIOD_S],
            bias_v=[0.0, -1.4],
            current_a=[0.0, -1e-9],
        )
        w.append(macro[half:], micro[half:], chan[half:])
    return path


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return write_ioc_like(tmp_path / "good.h5")


def test_the_packages_files_are_valid(good: Path, tmp_path: Path) -> None:
    v = validate_photon_file(good)
    assert v.valid, v.problems
    assert (v.mode, v.photons, v.notices) == ("T3", 50_000, [])
    # and a file written by the simulator's command, with its ground truth under /user
    out = tmp_path / "sim.h5"
    cmd = [sys.executable, "-m", "qd_bluesky.cli", "simulate", "--duration", "1", "--out", out]
    subprocess.run(list(map(str, cmd)), check=True, capture_output=True)
    v = validate_photon_file(out)
    assert v.valid, v.problems


def _edit(path: Path, change: Callable[[h5py.File], None]) -> Path:
    broken = path.with_name("broken.h5")
    shutil.copy(path, broken)
    with h5py.File(broken, "r+") as f:
        change(f)
    return broken


def _replace(f: h5py.File, path: str, data) -> None:
    title = f[path].attrs.get("TITLE")
    del f[path]
    f[path] = data
    if title is not None:
        f[path].attrs["TITLE"] = title


def _swap_rows(f: h5py.File) -> None:
    t = f["photon_data/timestamps"][()]
    t[100], t[101] = t[101], t[100] - 1
    f["photon_data/timestamps"][:] = t


#: (what the contract says, how the file is broken, the line that must name it)
BROKEN = [
    (
        "timestamps are unwrapped and non-decreasing",
        _swap_rows,
        r"^/photon_data/timestamps decrease 1 times \(first at row 101\)",
    ),
    (
        "nanotimes < tcspc_num_bins",
        lambda f: f["photon_data/nanotimes"].__setitem__(7, BINS),
        r"^/photon_data/nanotimes: 1 values >= tcspc_num_bins \(16000\)",
    ),
    (
        "the photon columns have the contract's dtypes",
        lambda f: _replace(f, "photon_data/detectors", f["photon_data/detectors"][()].astype("i4")),
        r"^/photon_data/detectors is int32, not uint8$",
    ),
    (
        "the photon columns have equal lengths",
        lambda f: f["photon_data/detectors"].resize((49_999,)),
        r"^the photon columns differ in length \(timestamps 50000, detectors 49999",
    ),
    (
        "detector ids are those of /setup/detectors/id",
        lambda f: f["photon_data/detectors"].__setitem__(3, 5),
        r"^/photon_data/detectors holds ids \[5\] that /setup/detectors/id does not list",
    ),
    (
        "tcspc_range = tcspc_unit x tcspc_num_bins",
        lambda f: _replace(f, "photon_data/nanotimes_specs/tcspc_range", 1e-6),
        r"^/photon_data/nanotimes_specs/tcspc_range is 1e-06 s, not tcspc_unit x tcspc_num_bins",
    ),
    (
        "T3 timestamps count (divided) sync pulses",
        lambda f: _replace(f, "photon_data/measurement_specs/laser_repetition_rate", 3.3e6),
        r"^timestamps_unit \(4e-07 s\) is not a whole number of laser periods",
    ),
    (
        "the TCSPC range fits in one sync period",
        lambda f: (
            _replace(f, "photon_data/timestamps_specs/timestamps_unit", 200e-9)
            or _replace(f, "photon_data/measurement_specs/laser_repetition_rate", 5e6)
        ),
        r"^the TCSPC range \(4e-07 s\) exceeds the sync period \(2e-07 s\)",
    ),
    (
        "/setup/detectors/counts are the photons per detector",
        lambda f: f["setup/detectors/counts"].__setitem__(0, 1),
        r"^/setup/detectors/counts \[1, \d+\] differ from the photons per detector",
    ),
    (
        "bias markers are in time order",
        lambda f: (
            f["user/bias/photon_index"].__setitem__(1, -1) or f["user/bias/sync"].__setitem__(1, -1)
        ),
        r"^/user/bias/photon_index decreases: markers must be in time order",
    ),
    (
        "bias markers point into the photon rows",
        lambda f: f["user/bias/photon_index"].__setitem__(1, 60_000),
        r"^/user/bias/photon_index leaves 0\.\.50000",
    ),
    (
        "the bias markers have every column",
        lambda f: f.__delitem__("user/bias/sync"),
        r"^/user/bias lacks sync$",
    ),
    (
        "Photon-HDF5: the required fields exist",
        lambda f: f.__delitem__("setup/num_spots"),
        r"^/setup/num_spots is missing$",
    ),
    (
        "Photon-HDF5: /setup/lifetime says whether nanotimes exist",
        lambda f: _replace(f, "setup/lifetime", 0),
        r"^/setup/lifetime is 0 but the file has /photon_data/nanotimes$",
    ),
    (
        "Photon-HDF5: every field carries the spec's TITLE",
        lambda f: f["photon_data/timestamps"].attrs.__setitem__("TITLE", b"stamps"),
        r"^/photon_data/timestamps: TITLE attribute is 'stamps', not the spec's text$",
    ),
    (
        "Photon-HDF5: the format version",
        lambda f: _replace(f, "identity/format_version", np.bytes_(b"0.4")),
        r"^/identity/format_version is '0\.4', not '0\.5'$",
    ),
]


@pytest.mark.parametrize(("rule", "damage", "pattern"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_rule_is_named_in_one_line(good, rule, damage, pattern) -> None:
    v = validate_photon_file(_edit(good, damage))
    assert not v.valid
    assert any(re.search(pattern, p) for p in v.problems), v.problems
    assert all("\n" not in p for p in v.problems)


def test_unclosed_file_and_overruns_are_notices(tmp_path: Path) -> None:
    """A writer that died leaves every flushed row readable: a notice, not a problem; photons
    lost to a FIFO overrun are counted from /user/overflow."""
    path = tmp_path / "open.h5"
    w = PhotonHdf5Writer(
        path,
        macrotime_unit_s=PERIOD_S,
        microtime_unit_s=BIN_S,
        microtime_bins=BINS,
        rep_rate_hz=1 / PERIOD_S,
        user_columns={OVERFLOW_GROUP: OVERFLOW_COLUMNS},
    )
    w.append(np.arange(10, 1010, dtype=np.int64), np.zeros(1000, np.uint16), np.zeros(1000, "u1"))
    w.append_user(OVERFLOW_GROUP, photon_index=[1000], t_s=[0.5], dropped=[1234])
    w._f.close()  # as a killed writer leaves it: flushed rows, no /acquisition_duration
    v = validate_photon_file(path)
    assert v.valid, v.problems
    assert any(
        n.startswith("/acquisition_duration is 0: the writer has not closed") for n in v.notices
    )
    assert "1234 photons were lost to FIFO overruns at 1 places (/user/overflow)" in v.notices


def test_not_a_photon_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(PhotonFileError, match=r"notes\.h5: not an HDF5 file \("):
        validate_photon_file(text)
    with pytest.raises(PhotonFileError, match=r"missing\.h5: no such file$"):
        validate_photon_file(tmp_path / "missing.h5")
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f["x"] = 1
    v = validate_photon_file(bare)
    assert v.problems == ["no /photon_data group: not a Photon-HDF5 file"]


def test_truncated_file(good: Path, tmp_path: Path) -> None:
    """A file cut short (a copy that stopped) is refused in one line, at once: a SWMR open
    would accept it and then retry its reads past the end without end."""
    cut = tmp_path / "cut.h5"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PhotonFileError, match=r"cut\.h5: truncated: the file is shorter than"):
        validate_photon_file(cut)


def test_command_line(good: Path, tmp_path: Path) -> None:
    """One line per problem and per file, exit 1 when any file fails; --json for machines."""
    broken = _edit(good, _swap_rows)
    text = tmp_path / "notes.txt"
    text.write_text("x")
    cmd = [sys.executable, "-m", "qd_bluesky.cli", "validate", str(good), str(broken), str(text)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert (
        f"{broken}: problem: /photon_data/timestamps decrease 1 times (first at row 101): they "
        "must be unwrapped and non-decreasing"
    ) in lines
    assert f"{good}: valid (T3, 50000 photons)" in lines
    assert any(line.startswith(f"{text}: problem: not an HDF5 file (") for line in lines)
    assert out.stderr == ""
    out = subprocess.run([*cmd[:4], "--json", str(good)], capture_output=True, text=True)
    assert out.returncode == 0
    (result,) = json.loads(out.stdout)["files"]
    assert result == {
        "file": str(good),
        "valid": True,
        "mode": "T3",
        "photons": 50000,
        "problems": [],
        "notices": [],
    }


def test_phconvert_agrees_on_our_valid_file(good: Path) -> None:
    """The reference implementation reads the file the validator accepts."""
    phconvert = pytest.importorskip("phconvert")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Photon-HDF5 WARNING: Missing field")
        h5 = phconvert.hdf5.load_photon_hdf5(str(good), strict_description=True)
    try:
        assert h5.root.photon_data.timestamps.shape == (50_000,)
    finally:
        h5.close()
