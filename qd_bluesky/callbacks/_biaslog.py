"""The bias markers the TCSPC IOC writes into the photon file (``/user/bias``), read as they grow.

Photon ``k`` saw the bias of the last marker with ``photon_index <= k`` (the run contract). The
markers of rows that exist are in the file before the rows are announced, and later markers only
name later rows, so a lookup of announced rows gives the same answer live and on replay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import h5py
import numpy as np
from numpy.typing import NDArray

from qd_bluesky.analysis._photon_hdf5 import (
    BIAS_MARKER_PATH,
    BIAS_MARKER_REQUIRED,
    SharedPhotonFile,
    open_shared,
)


def open_user_group(
    path: str | os.PathLike[str], group_path: str, names: Sequence[str], what: str
) -> tuple[SharedPhotonFile, dict[str, h5py.Dataset]] | None:
    """The process's open of the file and the (shared) datasets ``names`` of ``group_path``,
    or None when one is missing; the caller releases the file.

    Raises
    ------
    PhotonFileError
        The file cannot be opened as HDF5, plainly or as a SWMR reader.
    """
    shared = open_shared(path, what)
    datasets = {name: shared.dataset(f"{group_path}/{name}") for name in names}
    present = {name: ds for name, ds in datasets.items() if ds is not None}
    if len(present) < len(datasets):
        shared.release()
        return None
    return shared, present


def read_appended(
    datasets: dict[str, h5py.Dataset], swmr: bool, start: int
) -> tuple[int, dict[str, NDArray]]:
    """Rows from ``start`` on that every dataset holds now: (new end, columns; {} if none)."""
    if swmr:
        for ds in datasets.values():
            ds.refresh()
    n = min(ds.shape[0] for ds in datasets.values())
    if n <= start:
        return start, {}
    return n, {name: ds[start:n] for name, ds in datasets.items()}


class BiasLog:
    """Incremental reader of the ``/user/bias`` markers of a (growing) photon file.

    Use :meth:`open`, which returns None for a file without markers.
    """

    def __init__(
        self, shared: SharedPhotonFile, path: str, datasets: dict[str, h5py.Dataset]
    ) -> None:
        self._shared: SharedPhotonFile | None = shared
        self._swmr = shared.swmr
        self._path = path
        self._ds = datasets
        self.photon_index = np.zeros(0, dtype=np.int64)
        self.bias_v = np.zeros(0, dtype=np.float64)
        self._read = 0  # file rows read so far

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BiasLog | None:
        """The marker log of ``path``, or None when the file has no ``/user/bias`` markers.

        Raises
        ------
        PhotonFileError
            The file cannot be opened as HDF5, plainly or as a SWMR reader.
        """
        opened = open_user_group(
            path, BIAS_MARKER_PATH, BIAS_MARKER_REQUIRED, "cannot open the bias markers"
        )
        return None if opened is None else cls(opened[0], os.fspath(path), opened[1])

    def refresh(self) -> None:
        """Read the markers appended since the last call."""
        self._read, new = read_appended(self._ds, self._swmr, self._read)
        if new:
            rows = new["photon_index"].astype(np.int64)
            bias = new["bias_v"].astype(np.float64)
            self.photon_index = np.concatenate((self.photon_index, rows))
            self.bias_v = np.concatenate((self.bias_v, bias))

    def bias_at(self, rows: NDArray) -> NDArray[np.float64]:
        """Bias seen by each photon row (NaN before the first marker)."""
        i = np.searchsorted(self.photon_index, np.asarray(rows, dtype=np.int64), side="right") - 1
        out = np.full(i.shape, np.nan)
        ok = i >= 0
        out[ok] = self.bias_v[i[ok]]
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the markers held."""
        return self.photon_index.nbytes + self.bias_v.nbytes

    def forget_before(self, row: int) -> None:
        """Drop the markers no lookup of rows ``>= row`` needs (memory of long runs)."""
        i = int(np.searchsorted(self.photon_index, row, side="right")) - 1
        if i > 0:
            self.photon_index = self.photon_index[i:]
            self.bias_v = self.bias_v[i:]

    def close(self) -> None:
        if self._shared is not None:
            self._shared.release()
            self._shared = None
