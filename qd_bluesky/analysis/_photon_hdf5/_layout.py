"""Creating the spec nodes of a new Photon-HDF5 file, each with its TITLE attribute.

Every node is created before SWMR starts: a SWMR writer may grow datasets, not add them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._photons import CHANNEL_DTYPE, MACROTIME_DTYPE, MICROTIME_DTYPE
from ._spec import (
    FORMAT_NAME,
    FORMAT_URL,
    FORMAT_VERSION,
    TITLES,
    USER_CHUNK_ROWS,
    split_ch_title,
)


def _software_version() -> str:
    try:
        return metadata.version("qd-bluesky")
    except metadata.PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _bytes(text: str) -> np.bytes_:
    return np.bytes_(str(text).encode("utf-8"))


class _Builder:
    """Creates spec nodes with their TITLE attribute (before SWMR starts)."""

    def __init__(self, f: h5py.File) -> None:
        self.f = f

    def _title(self, obj: h5py.HLObject, path: str, title: str | None = None) -> None:
        title = title if title is not None else TITLES[path]
        obj.attrs["TITLE"] = _bytes(title)

    def group(self, path: str) -> h5py.Group:
        group = self.f.require_group(path)
        self._title(group, path)
        return group

    def string(self, path: str, text: str) -> h5py.Dataset:
        ds = self.f.create_dataset(path, data=_bytes(text))
        self._title(ds, path)
        self._python_flavor(ds)
        return ds

    def scalar(self, path: str, value: Any, dtype: DTypeLike) -> h5py.Dataset:
        ds = self.f.create_dataset(path, data=np.asarray(value, dtype=dtype))
        self._title(ds, path)
        self._python_flavor(ds)
        return ds

    @staticmethod
    def _python_flavor(ds: h5py.Dataset) -> None:
        # PyTables (phconvert, FRETBursts) then reads scalars as Python bytes/numbers, as
        # in files written by phconvert (``.read().decode()``), not as 0-d arrays.
        ds.attrs["CLASS"] = np.bytes_(b"ARRAY")
        ds.attrs["VERSION"] = np.bytes_(b"2.4")
        ds.attrs["FLAVOR"] = np.bytes_(b"python")

    def array(
        self, path: str, values: ArrayLike, dtype: DTypeLike, title: str | None = None
    ) -> h5py.Dataset:
        ds = self.f.create_dataset(path, data=np.atleast_1d(np.asarray(values, dtype=dtype)))
        self._title(ds, path, title)
        return ds

    def column(self, path: str, dtype: DTypeLike, chunk_rows: int) -> h5py.Dataset:
        ds = self.f.create_dataset(
            path, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk_rows,)
        )
        self._title(ds, path)
        return ds


class Layout(NamedTuple):
    """The nodes a streaming writer grows or rewrites after the layout is created."""

    duration: h5py.Dataset
    counts: h5py.Dataset
    timestamps: h5py.Dataset
    detectors: h5py.Dataset
    nanotimes: h5py.Dataset | None
    #: ``{group: {name: dataset}}`` of the growable ``/user/<group>/<name>`` columns.
    user_columns: dict[str, dict[str, h5py.Dataset]]


def create_layout(
    f: h5py.File,
    path: Path,
    *,
    channels: int,
    macrotime_unit_s: float,
    microtime_unit_s: float | None,
    microtime_bins: int,
    rep_rate_hz: float | None,
    chunk_rows: int,
    description: str,
    user_columns: Mapping[str, Mapping[str, DTypeLike]],
    user: Mapping[str, Mapping[str, ArrayLike]],
    sample: Mapping[str, str | int],
    provenance: Mapping[str, str],
    excitation_wavelengths_m: Sequence[float] | None,
    detection_wavelengths_m: Sequence[float] | None,
) -> Layout:
    """Create every node of a Photon-HDF5 file in ``f``; the photon columns start empty.

    The arguments are those of :class:`PhotonHdf5Writer`, already checked; a T3 file is
    one with ``microtime_unit_s``.
    """
    t3 = microtime_unit_s is not None
    growable: dict[str, dict[str, h5py.Dataset]] = {}
    b = _Builder(f)
    f.attrs["TITLE"] = _bytes(TITLES["/"])
    f.attrs["format_name"] = _bytes(FORMAT_NAME)
    f.attrs["format_version"] = _bytes(FORMAT_VERSION)
    f.attrs["format_url"] = _bytes(FORMAT_URL)
    b.string("/description", description)
    duration = b.scalar("/acquisition_duration", 0.0, np.float64)
    b.string("/format_name", FORMAT_NAME)
    b.string("/format_version", FORMAT_VERSION)

    b.group("/identity")
    b.string("/identity/filename", path.name)
    b.string("/identity/filename_full", str(path.resolve()))
    b.string("/identity/creation_time", _now())
    b.string("/identity/software", "qd-bluesky")
    b.string("/identity/software_version", _software_version())
    b.string("/identity/format_name", FORMAT_NAME)
    b.string("/identity/format_version", FORMAT_VERSION)
    b.string("/identity/format_url", FORMAT_URL)

    ids = np.arange(channels, dtype=CHANNEL_DTYPE)
    pulsed = rep_rate_hz is not None
    b.group("/setup")
    b.scalar("/setup/num_pixels", channels, np.int64)
    b.scalar("/setup/num_spots", 1, np.int64)
    b.scalar("/setup/num_spectral_ch", 1, np.int64)
    b.scalar("/setup/num_polarization_ch", 1, np.int64)
    b.scalar("/setup/num_split_ch", channels, np.int64)
    b.scalar("/setup/modulated_excitation", 0, np.int64)
    b.scalar("/setup/lifetime", int(t3), np.int64)
    b.array("/setup/excitation_alternated", [0], np.uint8)
    b.array("/setup/excitation_cw", [0 if pulsed else 1], np.uint8)
    b.array("/setup/laser_repetition_rates", [rep_rate_hz or 0.0], np.float64)
    if excitation_wavelengths_m is not None:
        b.array("/setup/excitation_wavelengths", excitation_wavelengths_m, np.float64)
    if detection_wavelengths_m is not None:
        b.array("/setup/detection_wavelengths", detection_wavelengths_m, np.float64)
    b.group("/setup/detectors")
    b.array("/setup/detectors/id", ids, CHANNEL_DTYPE)
    counts = b.array("/setup/detectors/counts", np.zeros(channels, np.int64), np.int64)

    b.group("/photon_data")
    timestamps = b.column("/photon_data/timestamps", MACROTIME_DTYPE, chunk_rows)
    detectors = b.column("/photon_data/detectors", CHANNEL_DTYPE, chunk_rows)
    b.group("/photon_data/timestamps_specs")
    b.scalar("/photon_data/timestamps_specs/timestamps_unit", macrotime_unit_s, np.float64)
    nanotimes = None
    if t3:
        nanotimes = b.column("/photon_data/nanotimes", MICROTIME_DTYPE, chunk_rows)
        b.group("/photon_data/nanotimes_specs")
        unit, bins = microtime_unit_s, microtime_bins
        b.scalar("/photon_data/nanotimes_specs/tcspc_unit", unit, np.float64)
        b.scalar("/photon_data/nanotimes_specs/tcspc_num_bins", bins, np.int64)
        b.scalar("/photon_data/nanotimes_specs/tcspc_range", unit * bins, np.float64)
    specs = "/photon_data/measurement_specs"
    b.group(specs)
    b.string(f"{specs}/measurement_type", "generic")
    if pulsed:
        b.scalar(f"{specs}/laser_repetition_rate", rep_rate_hz, np.float64)
    b.group(f"{specs}/detectors_specs")
    b.array(f"{specs}/detectors_specs/spectral_ch1", ids, CHANNEL_DTYPE)
    if channels > 1:
        for i in range(channels):
            b.array(
                f"{specs}/detectors_specs/split_ch{i + 1}",
                [i],
                CHANNEL_DTYPE,
                title=split_ch_title(i + 1),
            )

    b.group("/sample")
    for key, value in sample.items():
        if key == "num_dyes":
            b.scalar(f"/sample/{key}", int(value), np.int64)
        else:
            b.string(f"/sample/{key}", str(value))
    b.group("/provenance")
    for key, value in provenance.items():
        b.string(f"/provenance/{key}", str(value))

    for group, arrays in user.items():
        for name, values in arrays.items():
            f.create_dataset(f"/user/{group}/{name}", data=np.asarray(values))
    for group, columns in user_columns.items():
        growable[group] = {
            name: f.create_dataset(
                f"/user/{group}/{name}",
                shape=(0,),
                maxshape=(None,),
                dtype=np.dtype(dtype),
                chunks=(USER_CHUNK_ROWS,),
            )
            for name, dtype in columns.items()
        }
    return Layout(duration, counts, timestamps, detectors, nanotimes, growable)
