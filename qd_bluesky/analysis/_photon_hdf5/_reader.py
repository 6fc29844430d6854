"""Reading Photon-HDF5 rows, also from a file that a SWMR writer is still growing."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
from numpy.typing import NDArray

from .._errors import PhotonFileError
from .._files import check_readable_file, one_line
from .._photons import (
    CHANNEL_DTYPE,
    MACROTIME_DTYPE,
    MARKER_DTYPE,
    MICROTIME_DTYPE,
    PhotonTable,
)
from ._markers import table_markers
from ._spec import TABLE_MARKERS_GROUP
from ._swmr import open_shared


class PhotonHdf5Reader:
    """Read rows of a Photon-HDF5 file, also while another process appends to it (SWMR).

    Parameters
    ----------
    path
        A Photon-HDF5 file (single spot: ``/photon_data``).

    Notes
    -----
    A file held by a SWMR writer is opened with ``swmr=True``; :meth:`refresh` then makes
    rows the writer has flushed since visible. Rows are file rows: ``read(a, b)`` returns
    the photons of rows ``a:b`` (rows whose detector id the file declares a non-photon id
    go to ``markers``). Markers stored under ``/user/markers`` by
    :func:`write_photon_hdf5` are attached when all rows are read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_readable_file(path)
        self._shared = open_shared(self.path)
        self._f: h5py.File | None = self._shared.file
        self.swmr = self._shared.swmr
        try:
            self._parse()
        except PhotonFileError:
            self.close()
            raise
        except Exception as exc:  # h5py raises many kinds for damaged files
            self.close()
            raise PhotonFileError(
                self.path, f"unreadable Photon-HDF5 content ({type(exc).__name__}: {one_line(exc)})"
            ) from exc

    def _file(self) -> h5py.File:
        if self._f is None:
            raise ValueError(f"{self.path}: the reader is closed")
        return self._f

    def _fail(self, problem: str) -> PhotonFileError:
        return PhotonFileError(self.path, problem)

    def _scalar(self, group: h5py.Group, name: str) -> float | None:
        obj = group.get(name)
        if not isinstance(obj, h5py.Dataset) or obj.size != 1:
            return None
        value = obj[()]
        try:
            return float(np.asarray(value).reshape(()))
        except (TypeError, ValueError):
            return None

    def _parse(self) -> None:
        f = self._shared.file
        if "photon_data" not in f:
            spots = [k for k in f if re.fullmatch(r"photon_data\d+", k)]
            if spots:
                raise self._fail(
                    f"multi-spot Photon-HDF5 ({len(spots)} photon_data groups) is not supported"
                )
            raise self._fail("no /photon_data group: not a Photon-HDF5 file")
        pd = f["photon_data"]
        if not isinstance(pd, h5py.Group):
            raise self._fail("/photon_data is not a group: not a Photon-HDF5 file")

        def column(name: str, required: bool) -> h5py.Dataset | None:
            ds = self._shared.dataset(f"photon_data/{name}")
            if ds is None and not required:
                return None
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "iu":
                raise self._fail(f"/photon_data/{name} is missing or not a 1-D integer array")
            return ds

        self._timestamps = column("timestamps", True)
        self._detectors = column("detectors", False)
        self._nanotimes = column("nanotimes", False)

        specs = pd.get("timestamps_specs")
        unit = self._scalar(specs, "timestamps_unit") if isinstance(specs, h5py.Group) else None
        if unit is None or not unit > 0:
            raise self._fail("no positive /photon_data/timestamps_specs/timestamps_unit")
        self.macrotime_unit_s = unit

        self.microtime_unit_s = None
        self.microtime_bins = 0
        if self._nanotimes is not None:
            nspecs = pd.get("nanotimes_specs")
            if not isinstance(nspecs, h5py.Group):
                raise self._fail("nanotimes without /photon_data/nanotimes_specs")
            tcspc_unit = self._scalar(nspecs, "tcspc_unit")
            if tcspc_unit is None or not tcspc_unit > 0:
                raise self._fail("no positive /photon_data/nanotimes_specs/tcspc_unit")
            bins = self._scalar(nspecs, "tcspc_num_bins")
            if bins is None:
                tcspc_range = self._scalar(nspecs, "tcspc_range")
                bins = round(tcspc_range / tcspc_unit) if tcspc_range else None
            if bins is None or not 1 <= bins <= 1 << 16:
                raise self._fail(
                    f"nanotimes_specs/tcspc_num_bins = {bins} (need 1..65536 for 16-bit microtimes)"
                )
            self.microtime_unit_s = tcspc_unit
            self.microtime_bins = int(bins)
        self.mode = "T3" if self._nanotimes is not None else "T2"

        self.rep_rate_hz = None
        self._warnings: list[str] = []
        mspecs = pd.get("measurement_specs")
        if isinstance(mspecs, h5py.Group):
            rate = self._scalar(mspecs, "laser_repetition_rate")
            if rate and rate > 0:
                self.rep_rate_hz = rate
        if self.rep_rate_hz is None and isinstance(f.get("setup"), h5py.Group):
            rates = f["setup"].get("laser_repetition_rates")
            if isinstance(rates, h5py.Dataset):
                positive = np.unique(np.asarray(rates[()], dtype=float).ravel())
                positive = positive[positive > 0]
                if positive.size:
                    self.rep_rate_hz = float(positive[0])
                if positive.size > 1:
                    self._warnings.append(
                        f"several laser repetition rates {positive.tolist()} Hz: using the first"
                    )

        self._non_photon_ids = np.empty(0, dtype=np.int64)
        dspecs = mspecs.get("detectors_specs") if isinstance(mspecs, h5py.Group) else None
        if isinstance(dspecs, h5py.Group):
            ids = [
                np.asarray(dspecs[k][()]).ravel()
                for k in dspecs
                if k.startswith("non_photon_id") and isinstance(dspecs[k], h5py.Dataset)
            ]
            if ids:
                self._non_photon_ids = np.unique(np.concatenate(ids).astype(np.int64))

    @property
    def rows(self) -> int:
        """Rows present in every photon column (as of the last :meth:`refresh`)."""
        columns = [c for c in (self._timestamps, self._detectors, self._nanotimes) if c is not None]
        # A SWMR writer grows the columns one after the other: count complete rows only.
        return min(c.shape[0] for c in columns)

    def refresh(self) -> int:
        """See rows flushed by a SWMR writer since the last call; return :attr:`rows`."""
        if self.swmr:
            for c in (self._timestamps, self._detectors, self._nanotimes):
                if c is not None:
                    c.refresh()
        return self.rows

    def read(self, start: int = 0, stop: int | None = None) -> PhotonTable:
        """Photons of file rows ``start:stop`` (clipped to the rows present)."""
        self._file()
        if start < 0 or (stop is not None and stop < 0):
            raise ValueError(f"row range must be non-negative, got {start}:{stop}")
        n = self.rows
        stop = n if stop is None else min(stop, n)
        start = min(start, stop)
        try:
            macro = self._timestamps[start:stop].astype(MACROTIME_DTYPE, copy=False)
            if self._detectors is not None:
                det = self._detectors[start:stop]
            else:
                det = np.zeros(stop - start, dtype=CHANNEL_DTYPE)
            if self._nanotimes is not None:
                micro = self._nanotimes[start:stop]
            else:
                micro = np.zeros(stop - start, dtype=MICROTIME_DTYPE)
        except OSError as exc:
            raise PhotonFileError(
                self.path, f"cannot read rows {start}:{stop} ({one_line(exc)})"
            ) from exc

        markers = None
        if start == 0 and stop == n:
            markers = self._stored_markers()
        if self._non_photon_ids.size and det.size:
            not_photon = np.isin(det, self._non_photon_ids)
            if not_photon.any():
                tagged = np.empty(int(not_photon.sum()), dtype=MARKER_DTYPE)
                tagged["macrotime"] = macro[not_photon]
                tagged["bits"] = det[not_photon].astype(np.uint8)
                markers = (
                    tagged
                    if markers is None
                    else np.sort(
                        np.concatenate([markers, tagged]), order="macrotime", kind="stable"
                    )
                )
                keep = ~not_photon
                macro, det, micro = macro[keep], det[keep], micro[keep]
        if det.size and det.dtype != CHANNEL_DTYPE and (det.min() < 0 or det.max() > 255):
            raise self._fail(
                f"detector ids {int(det.min())}..{int(det.max())} do not fit channels 0..255"
            )
        if micro.size and self.microtime_bins and int(micro.max()) >= self.microtime_bins:
            raise self._fail(
                f"nanotime {int(micro.max())} outside tcspc_num_bins = {self.microtime_bins}"
            )
        table = PhotonTable(
            macrotime=macro,
            microtime=micro,
            channel=det,
            macrotime_unit_s=self.macrotime_unit_s,
            microtime_unit_s=self.microtime_unit_s,
            microtime_bins=self.microtime_bins,
            rep_rate_hz=self.rep_rate_hz,
            mode=self.mode,
            format="photon-hdf5",
            source=str(self.path),
            markers=markers,
        )
        table.warnings.extend(self._warnings)
        return table

    def _stored_markers(self) -> NDArray | None:
        """Markers under ``/user/markers`` (the card's, or those of :func:`write_photon_hdf5`)."""
        node = self._file().get(f"user/{TABLE_MARKERS_GROUP}")
        if not isinstance(node, h5py.Group):
            return None
        return table_markers(self.read_user(TABLE_MARKERS_GROUP))

    def read_user(self, group: str) -> dict[str, NDArray]:
        """The datasets of ``/user/<group>/`` (refreshed first when following a writer)."""
        node = self._file().get(f"user/{group}")
        if not isinstance(node, h5py.Group):
            raise self._fail(f"no /user/{group} group")
        out = {}
        for name in node:
            ds = self._shared.dataset(f"user/{group}/{name}")
            if ds is not None:
                if self.swmr:
                    ds.refresh()
                out[name] = ds[()]
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f = None
            self._shared.release()

    def __enter__(self) -> PhotonHdf5Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_photon_hdf5(
    path: str | os.PathLike[str], *, start: int = 0, stop: int | None = None
) -> PhotonTable:
    """Read the photons of a Photon-HDF5 file (rows ``start:stop``).

    A file with ``/photon_data/nanotimes`` is T3 (``microtime`` = nanotimes in units of
    ``nanotimes_specs/tcspc_unit``, ``tcspc_num_bins`` bins); one without is T2-like.
    The repetition rate comes from ``measurement_specs/laser_repetition_rate``, else from
    the first positive ``/setup/laser_repetition_rates``. A file that a SWMR writer holds
    open is read in SWMR mode, so the rows flushed so far are returned.

    Parameters
    ----------
    path
        The file.
    start, stop
        Row range (clipped to the rows present).

    Raises
    ------
    PhotonFileError
        Missing file, not HDF5, no ``/photon_data``, or specs missing.
    """
    with PhotonHdf5Reader(path) as reader:
        return reader.read(start, stop)
