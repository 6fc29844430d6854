"""Checking a photon file against the photon-file contract (docs/photon-file.md) and Photon-HDF5.

Every check reads the file as a client would (read-only, SWMR when a writer holds it), and the
photon columns in blocks, so a file of 10^9 photons is checked in bounded memory. Each problem
is one line that names the node and what is wrong with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .._errors import PhotonFileError
from .._photons import CHANNEL_DTYPE, MACROTIME_DTYPE, MICROTIME_DTYPE
from ._markers import BIAS_MARKER_COLUMNS, BIAS_MARKER_PATH, OVERFLOW_PATH
from ._spec import FORMAT_NAME, FORMAT_VERSION, TITLES
from ._swmr import open_for_reading

#: Rows read at a time from the photon columns (~100 MB per block at most).
BLOCK_ROWS = 1 << 23
#: Relative tolerance of the unit relations (stored as float64 from the card's own numbers).
UNIT_RTOL = 1e-6

#: Nodes Photon-HDF5 0.5 requires of every file (``/photon_data/nanotimes*`` when
#: ``/setup/lifetime`` is 1).
REQUIRED = (
    "/acquisition_duration",
    "/description",
    "/identity",
    "/setup/num_pixels",
    "/setup/num_spots",
    "/setup/num_spectral_ch",
    "/setup/num_polarization_ch",
    "/setup/num_split_ch",
    "/setup/modulated_excitation",
    "/setup/lifetime",
    "/setup/excitation_alternated",
    "/photon_data/timestamps",
    "/photon_data/timestamps_specs/timestamps_unit",
)
T3_REQUIRED = (
    "/photon_data/nanotimes",
    "/photon_data/nanotimes_specs/tcspc_unit",
    "/photon_data/nanotimes_specs/tcspc_num_bins",
    "/photon_data/nanotimes_specs/tcspc_range",
    "/photon_data/measurement_specs/laser_repetition_rate",
)
#: The photon columns' dtypes in this package's files (the contract, not the spec).
COLUMN_DTYPES = {
    "timestamps": np.dtype(MACROTIME_DTYPE),
    "detectors": np.dtype(CHANNEL_DTYPE),
    "nanotimes": np.dtype(MICROTIME_DTYPE),
}


@dataclass
class Validation:
    """The outcome of :func:`validate_photon_file`.

    ``problems`` break the contract or the spec; ``notices`` are facts a user must know that do
    not make the file invalid (photons lost to a FIFO overrun, a file still being written).
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    photons: int = 0
    mode: str = ""

    @property
    def valid(self) -> bool:
        return not self.problems


def validate_photon_file(path: str | os.PathLike[str]) -> Validation:
    """Check a photon file against the photon-file contract and Photon-HDF5 0.5.

    Parameters
    ----------
    path
        The file (a closed file, or one a SWMR writer still holds).

    Returns
    -------
    Validation
        The problems and notices found, one line each, and what the file holds.

    Raises
    ------
    PhotonFileError
        The path is not a readable HDF5 file at all (missing, not HDF5, truncated header).
    """
    path = Path(path)
    if not path.is_file():
        raise PhotonFileError(path, "no such file")
    f, swmr = open_for_reading(path, "not an HDF5 file")
    out = Validation(path)
    with f:
        if swmr:
            out.notices.append(
                "held by a writer, or left unclosed by one that died: opened in SWMR mode"
            )
        _Checks(f, out).run()
    return out


class _Checks:
    def __init__(self, f: h5py.File, out: Validation) -> None:
        self.f = f
        self.out = out

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def scalar(self, path: str) -> float | None:
        node = self.f.get(path)
        if not isinstance(node, h5py.Dataset) or node.shape not in ((), (1,)):
            return None
        try:
            value = float(np.asarray(node[()]).reshape(()))
        except (TypeError, ValueError):
            return None
        return value

    def text(self, path: str) -> str | None:
        node = self.f.get(path)
        if not isinstance(node, h5py.Dataset):
            return None
        value = node[()]
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def run(self) -> None:
        if "photon_data" not in self.f:
            self.problem("no /photon_data group: not a Photon-HDF5 file")
            return
        self.spec()
        n = self.columns()
        if n is None:
            return
        self.out.photons = n
        self.units()
        self.closed(n)
        self.bias_markers(n)
        self.overflow()

    # -- Photon-HDF5 --------------------------------------------------------------------------
    def spec(self) -> None:
        for name in ("format_name", "format_version"):
            found = self.text(f"/identity/{name}")
            if found is None:
                self.problem(f"/identity/{name} is missing")
        if (self.text("/identity/format_name") or FORMAT_NAME) != FORMAT_NAME:
            self.problem(f"/identity/format_name is not {FORMAT_NAME!r}")
        version = self.text("/identity/format_version")
        if version is not None and version != FORMAT_VERSION:
            self.problem(f"/identity/format_version is {version!r}, not {FORMAT_VERSION!r}")
        lifetime = self.scalar("/setup/lifetime")
        t3 = "nanotimes" in self.f["photon_data"]
        self.out.mode = "T3" if t3 else "T2"
        for path in REQUIRED + (T3_REQUIRED if t3 else ()):
            if path not in self.f:
                self.problem(f"{path} is missing")
        if lifetime is not None and bool(lifetime) != t3:
            self.problem(
                f"/setup/lifetime is {lifetime:g} but the file "
                f"{'has' if t3 else 'has no'} /photon_data/nanotimes"
            )
        for path, title in TITLES.items():
            node = self.f.get(path) if path != "/" else self.f
            if node is None:
                continue
            stored = node.attrs.get("TITLE")
            if isinstance(stored, bytes):
                stored = stored.decode("utf-8", "replace")
            if stored != title:
                self.problem(f"{path}: TITLE attribute is {stored!r}, not the spec's text")

    # -- the contract -------------------------------------------------------------------------
    def columns(self) -> int | None:
        data = self.f["photon_data"]
        lengths = {}
        for name, dtype in COLUMN_DTYPES.items():
            ds = data.get(name)
            if ds is None:
                continue
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                self.problem(f"/photon_data/{name} is not a 1-D dataset")
                return None
            if ds.dtype != dtype:
                self.problem(f"/photon_data/{name} is {ds.dtype}, not {dtype}")
            lengths[name] = ds.shape[0]
        if "timestamps" not in lengths or "detectors" not in lengths:
            if "detectors" not in lengths:
                self.problem("/photon_data/detectors is missing")
            return None
        if len(set(lengths.values())) > 1:
            self.problem(
                "the photon columns differ in length ("
                + ", ".join(f"{k} {v}" for k, v in lengths.items())
                + ")"
            )
            return None
        n = lengths["timestamps"]
        ids = self.f.get("/setup/detectors/id")
        known = set(np.asarray(ids[()]).ravel().tolist()) if isinstance(ids, h5py.Dataset) else None
        bins = self.scalar("/photon_data/nanotimes_specs/tcspc_num_bins")
        counts = np.zeros(256, np.int64)
        previous: int | None = None
        decreasing = 0
        first_bad = -1
        late_nanotime = 0
        for start, stop in _blocks(n):
            t = data["timestamps"][start:stop]
            if t.size:
                steps = np.flatnonzero(np.diff(t) < 0)
                if previous is not None and t[0] < previous:
                    steps = np.concatenate(([-1], steps))
                if steps.size and first_bad < 0:
                    first_bad = start + int(steps[0]) + 1
                decreasing += steps.size
                previous = int(t[-1])
            d = data["detectors"][start:stop]
            counts += np.bincount(d.astype(np.int64), minlength=256)[:256]
            if bins is not None and "nanotimes" in data:
                late_nanotime += int(np.count_nonzero(data["nanotimes"][start:stop] >= bins))
        if decreasing:
            self.problem(
                f"/photon_data/timestamps decrease {decreasing} times (first at row "
                f"{first_bad}): they must be unwrapped and non-decreasing"
            )
        if late_nanotime:
            self.problem(
                f"/photon_data/nanotimes: {late_nanotime} values >= tcspc_num_bins ({bins:g})"
            )
        seen = set(np.flatnonzero(counts).tolist())
        if known is not None and not seen <= known:
            self.problem(
                f"/photon_data/detectors holds ids {sorted(seen - known)} that "
                "/setup/detectors/id does not list"
            )
        self._counts = counts
        self._known = known
        if n:
            self._first = int(data["timestamps"][0])
            self._last = int(data["timestamps"][n - 1])
        return n

    def units(self) -> None:
        unit = self.scalar("/photon_data/timestamps_specs/timestamps_unit")
        if unit is not None and not (math.isfinite(unit) and unit > 0):
            self.problem(f"/photon_data/timestamps_specs/timestamps_unit is {unit:g}, not > 0")
            unit = None
        if self.out.mode != "T3":
            return
        tcspc_unit = self.scalar("/photon_data/nanotimes_specs/tcspc_unit")
        bins = self.scalar("/photon_data/nanotimes_specs/tcspc_num_bins")
        span = self.scalar("/photon_data/nanotimes_specs/tcspc_range")
        rate = self.scalar("/photon_data/measurement_specs/laser_repetition_rate")
        if tcspc_unit is not None and not (math.isfinite(tcspc_unit) and tcspc_unit > 0):
            self.problem(f"/photon_data/nanotimes_specs/tcspc_unit is {tcspc_unit:g}, not > 0")
            tcspc_unit = None
        if bins is not None and not (1 <= bins <= 65536 and bins == int(bins)):
            self.problem(
                f"/photon_data/nanotimes_specs/tcspc_num_bins is {bins:g}, not in 1..65536"
            )
            bins = None
        if None not in (tcspc_unit, bins, span) and not _close(span, tcspc_unit * bins):
            self.problem(
                f"/photon_data/nanotimes_specs/tcspc_range is {span:.6g} s, not tcspc_unit x "
                f"tcspc_num_bins ({tcspc_unit * bins:.6g} s)"
            )
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            self.problem(f"laser_repetition_rate is {rate:g}, not > 0")
            rate = None
        if unit is None or rate is None:
            return
        # T3 timestamps count sync pulses; the card may divide the sync by an integer.
        divider = unit * rate
        if divider < 1 - UNIT_RTOL or not _close(divider, round(divider)):
            self.problem(
                f"timestamps_unit ({unit:.6g} s) is not a whole number of laser periods "
                f"(x laser_repetition_rate = {divider:.6g}): T3 timestamps count sync pulses"
            )
        elif None not in (tcspc_unit, bins) and tcspc_unit * bins > unit * (1 + UNIT_RTOL):
            self.problem(
                f"the TCSPC range ({tcspc_unit * bins:.6g} s) exceeds the sync period "
                f"({unit:.6g} s): nanotimes would overlap the next sync"
            )

    def closed(self, n: int) -> None:
        duration = self.scalar("/acquisition_duration")
        unit = self.scalar("/photon_data/timestamps_specs/timestamps_unit")
        stored = self.f.get("/setup/detectors/counts")
        if duration is None or unit is None or n == 0:
            return
        if duration == 0:
            self.out.notices.append(
                "/acquisition_duration is 0: the writer has not closed the file (still "
                "acquiring, or it died); every announced row is readable"
            )
            return
        span = (self._last - self._first) * unit
        if duration < span * (1 - UNIT_RTOL):
            self.problem(
                f"/acquisition_duration ({duration:.6g} s) is shorter than the photons' span "
                f"({span:.6g} s)"
            )
        if isinstance(stored, h5py.Dataset) and self._known is not None:
            ids = np.asarray(self.f["/setup/detectors/id"][()]).astype(np.int64).ravel()
            stored_counts = np.asarray(stored[()]).astype(np.int64).ravel()
            if stored_counts.shape == ids.shape and not np.array_equal(
                stored_counts, self._counts[ids]
            ):
                self.problem(
                    f"/setup/detectors/counts {stored_counts.tolist()} differ from the photons "
                    f"per detector {self._counts[ids].tolist()}"
                )

    def bias_markers(self, n: int) -> None:
        group = self.f.get(BIAS_MARKER_PATH)
        if group is None:
            return
        where = f"/{BIAS_MARKER_PATH}"
        missing = [c for c in BIAS_MARKER_COLUMNS if c not in group]
        if missing:
            self.problem(f"{where} lacks {', '.join(missing)}")
            return
        cols = {c: np.asarray(group[c][()]) for c in BIAS_MARKER_COLUMNS}
        if len({v.shape for v in cols.values()}) > 1:
            self.problem(f"{where}: the marker columns differ in length")
            return
        for name in ("photon_index", "sync", "t_s"):
            if np.any(np.diff(cols[name]) < 0):
                self.problem(f"{where}/{name} decreases: markers must be in time order")
        index = cols["photon_index"]
        if index.size and (index.min() < 0 or index.max() > n):
            self.problem(f"{where}/photon_index leaves 0..{n} (the photon rows)")
        if not np.all(np.isfinite(cols["bias_v"])):
            self.problem(f"{where}/bias_v holds non-finite values")

    def overflow(self) -> None:
        group = self.f.get(OVERFLOW_PATH)
        if group is None or "dropped" not in group:
            return
        dropped = np.asarray(group["dropped"][()])
        if dropped.size:
            self.out.notices.append(
                f"{int(dropped.sum())} photons were lost to FIFO overruns at {dropped.size} "
                f"places (/{OVERFLOW_PATH})"
            )


def _blocks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, BLOCK_ROWS):
        yield start, min(start + BLOCK_ROWS, n)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= UNIT_RTOL * max(abs(a), abs(b))
