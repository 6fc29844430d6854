"""The photon file seen from the client: how many rows a lost IOC left on disk."""

from __future__ import annotations

from collections.abc import Iterable

import h5py


def rows_on_disk(path: str, datasets: Iterable[str]) -> int:
    """Rows present in every one of ``datasets`` of the photon file ``path``.

    The IOC writes the file in SWMR mode and extends all photon datasets together before each
    flush, so a SWMR reader sees a consistent length even after the writer died mid-run.

    Raises
    ------
    OSError
        The file cannot be opened (missing, or not HDF5).
    KeyError
        A dataset is missing.
    """
    with h5py.File(path, "r", swmr=True) as f:
        rows = []
        for name in datasets:
            dataset = f[name]
            if not isinstance(dataset, h5py.Dataset):
                raise KeyError(f"{name} in {path} is not a dataset")
            rows.append(int(dataset.shape[0]))
        return min(rows)
