"""The streaming Photon-HDF5 writer: photons appended and flushed while readers follow (SWMR)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._errors import PhotonFileError
from .._files import one_line
from .._photons import CHANNEL_DTYPE, MACROTIME_DTYPE, MICROTIME_DTYPE
from ._layout import create_layout
from ._spec import PROVENANCE_FIELDS, SAMPLE_FIELDS


class PhotonHdf5Writer:
    """Stream photons into a Photon-HDF5 file that readers can follow while it grows (SWMR).

    Every spec node is created in the constructor (SWMR forbids creating objects later),
    including growable 1-D columns under ``/user/<group>/`` declared in ``user_columns``.
    Each :meth:`append` grows the photon columns and flushes, so a reader that opens the
    file with ``swmr=True`` (see :class:`PhotonHdf5Reader`) sees every row once ``append``
    has returned.

    Parameters
    ----------
    path
        File to create (overwritten if it exists).
    macrotime_unit_s
        Timestamp unit: the sync period in T3, the tick in T2.
    microtime_unit_s
        TCSPC bin width; ``None`` writes a T2 file (no nanotimes).
    microtime_bins
        TCSPC bins in one period (T3); ignored for T2.
    rep_rate_hz
        Laser repetition rate, or ``None``. A T3 file needs one: ``None`` there means
        1 / ``macrotime_unit_s`` (T3 timestamps count sync pulses). A T2 file without a
        rate is described as CW excitation (``laser_repetition_rates = [0]``), the spec's
        convention when no pulse rate applies.
    description
        Free text for ``/description``.
    channels
        Number of detectors; ids ``0 .. channels-1``. Two detectors are described as two
        channels behind a non-polarizing beam splitter (Hanbury Brown-Twiss).
    chunk_rows
        HDF5 chunk length of the photon columns.
    swmr
        Switch the file to SWMR mode after creating the layout.
    user_columns
        ``{group: {name: dtype}}``: growable 1-D datasets under ``/user/<group>/``,
        filled with :meth:`append_user`.
    user
        ``{group: {name: array}}``: fixed datasets written under ``/user/<group>/``.
    sample
        Optional ``/sample`` fields (``sample_name``, ``dye_names``, ``buffer_name``,
        ``num_dyes``).
    provenance
        Optional ``/provenance`` fields (``filename``, ``filename_full``,
        ``creation_time``, ``modification_time``, ``software``, ``software_version``).
    excitation_wavelengths_m, detection_wavelengths_m
        Optional ``/setup`` wavelengths in metres; omitted when not given.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        macrotime_unit_s: float,
        microtime_unit_s: float | None,
        microtime_bins: int,
        rep_rate_hz: float | None,
        description: str = "",
        channels: int = 2,
        chunk_rows: int = 65536,
        swmr: bool = True,
        user_columns: Mapping[str, Mapping[str, DTypeLike]] | None = None,
        user: Mapping[str, Mapping[str, ArrayLike]] | None = None,
        sample: Mapping[str, str | int] | None = None,
        provenance: Mapping[str, str] | None = None,
        excitation_wavelengths_m: Sequence[float] | None = None,
        detection_wavelengths_m: Sequence[float] | None = None,
    ) -> None:
        if not (np.isfinite(macrotime_unit_s) and macrotime_unit_s > 0):
            raise ValueError(f"macrotime_unit_s must be a positive time, got {macrotime_unit_s}")
        self.t3 = microtime_unit_s is not None
        if self.t3:
            if not (np.isfinite(microtime_unit_s) and microtime_unit_s > 0):
                raise ValueError(
                    f"microtime_unit_s must be a positive time or None, got {microtime_unit_s}"
                )
            if not 1 <= int(microtime_bins) <= 1 << 16:
                raise ValueError(f"microtime_bins must be in 1..65536, got {microtime_bins}")
        if rep_rate_hz is not None and not (np.isfinite(rep_rate_hz) and rep_rate_hz > 0):
            raise ValueError(f"rep_rate_hz must be positive or None, got {rep_rate_hz}")
        if not 1 <= int(channels) <= 256:
            raise ValueError(f"channels must be in 1..256, got {channels}")
        if int(chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        for name, fields, allowed in (
            ("sample", sample, SAMPLE_FIELDS),
            ("provenance", provenance, PROVENANCE_FIELDS),
        ):
            unknown = set(fields or ()) - set(allowed)
            if unknown:
                raise ValueError(f"unknown {name} fields {sorted(unknown)}; allowed: {allowed}")

        self.path = Path(path)
        self.macrotime_unit_s = float(macrotime_unit_s)
        self.microtime_unit_s = float(microtime_unit_s) if self.t3 else None
        self.microtime_bins = int(microtime_bins) if self.t3 else 0
        if rep_rate_hz is None and self.t3:
            rep_rate_hz = 1.0 / self.macrotime_unit_s
        self.rep_rate_hz = float(rep_rate_hz) if rep_rate_hz is not None else None
        self.channels = int(channels)
        self.chunk_rows = int(chunk_rows)
        self.swmr = bool(swmr)
        self._rows = 0
        self._first: int | None = None
        self._last: int | None = None
        self._counts = np.zeros(self.channels, dtype=np.int64)
        self._user_rows: dict[str, int] = {}
        self._user_ds: dict[str, dict[str, h5py.Dataset]] = {}
        self._f: h5py.File | None = None

        try:
            self._f = h5py.File(self.path, "w", libver="latest" if self.swmr else None)
        except OSError as exc:
            raise PhotonFileError(self.path, f"cannot create: {one_line(exc)}") from exc
        try:
            layout = create_layout(
                self._f,
                self.path,
                channels=self.channels,
                macrotime_unit_s=self.macrotime_unit_s,
                microtime_unit_s=self.microtime_unit_s,
                microtime_bins=self.microtime_bins,
                rep_rate_hz=self.rep_rate_hz,
                chunk_rows=self.chunk_rows,
                description=description,
                user_columns=user_columns or {},
                user=user or {},
                sample=sample or {},
                provenance=provenance or {},
                excitation_wavelengths_m=excitation_wavelengths_m,
                detection_wavelengths_m=detection_wavelengths_m,
            )
            self._duration, self._counts_ds = layout.duration, layout.counts
            self._timestamps, self._detectors = layout.timestamps, layout.detectors
            self._nanotimes = layout.nanotimes
            self._user_ds = layout.user_columns
            self._user_rows = {group: 0 for group in layout.user_columns}
            self._f.flush()
            if self.swmr:
                self._f.swmr_mode = True
        except BaseException:
            self._f.close()
            self._f = None
            raise

    # -- public API ---------------------------------------------------------------------
    @property
    def rows_written(self) -> int:
        """Photon rows committed (flushed) to the file."""
        return self._rows

    @property
    def closed(self) -> bool:
        return self._f is None

    @property
    def chunk_shape(self) -> tuple[int]:
        """HDF5 chunk shape of the photon columns."""
        return (self.chunk_rows,)

    @property
    def dataset_paths(self) -> dict[str, str]:
        """Column key -> HDF5 path: photon columns, then ``"<group>/<name>"`` user columns."""
        paths = {
            "timestamps": "/photon_data/timestamps",
            "detectors": "/photon_data/detectors",
        }
        if self.t3:
            paths["nanotimes"] = "/photon_data/nanotimes"
        for group, columns in self._user_ds.items():
            for name in columns:
                paths[f"{group}/{name}"] = f"/user/{group}/{name}"
        return paths

    def append(
        self,
        macrotime: ArrayLike,
        microtime: ArrayLike | None,
        channel: ArrayLike,
    ) -> int:
        """Append photons and flush them to the file.

        Parameters
        ----------
        macrotime
            Timestamps, non-decreasing and not before the last appended one.
        microtime
            TCSPC bins (T3); ignored (may be None) for a T2 file.
        channel
            Detector ids, ``0 .. channels-1``.

        Returns
        -------
        int
            Total rows in the file.
        """
        return self._append(macrotime, microtime, channel, check_order=True)

    def _append(
        self,
        macrotime: ArrayLike,
        microtime: ArrayLike | None,
        channel: ArrayLike,
        *,
        check_order: bool,
    ) -> int:
        self._check_open()
        macro = np.ascontiguousarray(macrotime, dtype=MACROTIME_DTYPE)
        chan = np.asarray(channel)
        if macro.ndim != 1 or chan.shape != macro.shape:
            raise ValueError(
                f"macrotime and channel must be 1-D of equal length, got shapes "
                f"{macro.shape} and {chan.shape}"
            )
        n = macro.size
        if n == 0:
            return self._rows
        if chan.min() < 0 or chan.max() >= self.channels:
            raise ValueError(f"channel values must be in 0..{self.channels - 1}")
        chan = chan.astype(CHANNEL_DTYPE, copy=False)
        micro = None
        if self.t3:
            if microtime is None:
                raise ValueError("a T3 file needs microtime")
            micro = np.asarray(microtime)
            if micro.shape != macro.shape:
                raise ValueError(f"microtime has shape {micro.shape}, expected {macro.shape}")
            if micro.min() < 0 or micro.max() >= self.microtime_bins:
                raise ValueError(f"microtime values must be in 0..{self.microtime_bins - 1}")
            micro = micro.astype(MICROTIME_DTYPE, copy=False)
        if check_order and (
            (self._last is not None and macro[0] < self._last) or np.any(macro[1:] < macro[:-1])
        ):
            raise ValueError("macrotime must be non-decreasing across appends")

        start, stop = self._rows, self._rows + n
        try:
            for ds, data in (
                (self._timestamps, macro),
                (self._detectors, chan),
                (self._nanotimes, micro),
            ):
                if ds is not None:
                    ds.resize((stop,))
                    ds[start:stop] = data
            counts = self._counts + np.bincount(chan, minlength=self.channels)
            self._counts_ds[:] = counts
            self._f.flush()
        except BaseException:
            # An interrupted append must not leave columns of different lengths behind.
            self._trim()
            raise
        self._counts = counts
        self._rows = stop
        self._first = int(macro[0]) if self._first is None else self._first
        self._last = int(macro[-1])
        return stop

    def append_user(self, group: str, **columns: ArrayLike) -> int:
        """Append rows to the growable ``/user/<group>/`` columns and flush.

        All columns declared for ``group`` in ``user_columns`` must be given, with equal
        lengths. Returns the total rows of the group.
        """
        self._check_open()
        if group not in self._user_ds:
            raise KeyError(f"no user column group {group!r}; declared: {list(self._user_ds)}")
        datasets = self._user_ds[group]
        if set(columns) != set(datasets):
            raise ValueError(
                f"group {group!r} needs columns {sorted(datasets)}, got {sorted(columns)}"
            )
        arrays = {
            name: np.atleast_1d(np.asarray(v, dtype=datasets[name].dtype))
            for name, v in columns.items()
        }
        lengths = {a.shape for a in arrays.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise ValueError(f"user columns of {group!r} must be 1-D of equal length")
        start = self._user_rows[group]
        stop = start + next(iter(arrays.values())).size
        try:
            for name, data in arrays.items():
                datasets[name].resize((stop,))
                datasets[name][start:stop] = data
            self._f.flush()
        except BaseException:
            self._trim()
            raise
        self._user_rows[group] = stop
        return stop

    def close(self) -> None:
        """Finalise ``/acquisition_duration`` and close the file. Safe to call twice."""
        if self._f is None:
            return
        try:
            self._trim()
            if self._first is not None and self._last is not None:
                self._duration[()] = (self._last - self._first) * self.macrotime_unit_s
            self._f.flush()
        finally:
            self._f.close()
            self._f = None

    def __enter__(self) -> PhotonHdf5Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._rows} rows"
        return f"<PhotonHdf5Writer {str(self.path)!r} {'T3' if self.t3 else 'T2'} {state}>"

    def _check_open(self) -> None:
        if self._f is None:
            raise ValueError(f"{self.path}: the writer is closed")

    def _trim(self) -> None:
        """Cut every growable column back to its committed length."""
        for ds in (self._timestamps, self._detectors, self._nanotimes):
            if ds is not None and ds.shape[0] != self._rows:
                ds.resize((self._rows,))
        if self._counts_ds is not None:
            self._counts_ds[:] = self._counts
        for group, datasets in self._user_ds.items():
            for ds in datasets.values():
                if ds.shape[0] != self._user_rows[group]:
                    ds.resize((self._user_rows[group],))
