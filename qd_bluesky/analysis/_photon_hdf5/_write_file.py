"""Writing a whole photon table as one complete Photon-HDF5 file."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from numpy.typing import ArrayLike

from .._photons import PhotonTable
from ._markers import card_marker_rows
from ._spec import TABLE_MARKERS_GROUP
from ._writer import PhotonHdf5Writer


def write_photon_hdf5(
    path: str | os.PathLike[str],
    table: PhotonTable,
    *,
    description: str = "",
    user: Mapping[str, Mapping[str, ArrayLike]] | None = None,
    sample: Mapping[str, str | int] | None = None,
    excitation_wavelengths_m: Sequence[float] | None = None,
    detection_wavelengths_m: Sequence[float] | None = None,
    chunk_rows: int = 65536,
) -> Path:
    """Write a photon table as a complete Photon-HDF5 file.

    Parameters
    ----------
    path
        File to create (overwritten if it exists).
    table
        The photons; its units, mode and repetition rate go into the file's specs.
    description
        Free text for ``/description``.
    user
        ``{group: {name: array}}`` written under ``/user/<group>/`` (e.g. the simulator's
        bias waveform and ground-truth charge states).
        The table's markers, if any, go to ``/user/markers/{timestamp, channel, photon_index}``
        (one row per marker input set, as the TCSPC IOC writes a card's markers; the spec has
        no place for them) and :func:`read_photon_hdf5` restores them on whole-file reads.
    sample, excitation_wavelengths_m, detection_wavelengths_m
        Optional metadata, see :class:`PhotonHdf5Writer`.
    chunk_rows
        HDF5 chunk length of the photon columns.

    Returns
    -------
    Path
        The file written.
    """
    n_channels = int(table.channel.max()) + 1 if len(table) else 1
    provenance: dict[str, str] = {}
    if table.source:
        src = Path(table.source)
        provenance = {"filename": src.name, "filename_full": str(src.resolve())}
        if src.exists():
            st = src.stat()
            stamp = "%Y-%m-%d %H:%M:%S"
            provenance["creation_time"] = time.strftime(stamp, time.localtime(st.st_ctime))
            provenance["modification_time"] = time.strftime(stamp, time.localtime(st.st_mtime))
    t3 = table.mode == "T3" and table.microtime_unit_s is not None
    user = dict(user or {})
    if table.markers is not None and len(table.markers):
        if TABLE_MARKERS_GROUP in user:
            raise ValueError(
                f"user group {TABLE_MARKERS_GROUP!r} is reserved for the table's markers"
            )
        user[TABLE_MARKERS_GROUP] = card_marker_rows(table.markers, table.macrotime)
    with PhotonHdf5Writer(
        path,
        macrotime_unit_s=table.macrotime_unit_s,
        microtime_unit_s=table.microtime_unit_s if t3 else None,
        microtime_bins=table.microtime_bins,
        rep_rate_hz=table.rep_rate_hz,
        description=description,
        channels=n_channels,
        chunk_rows=chunk_rows,
        swmr=False,
        user=user,
        sample=sample,
        provenance=provenance,
        excitation_wavelengths_m=excitation_wavelengths_m,
        detection_wavelengths_m=detection_wavelengths_m,
    ) as writer:
        # A table read from a damaged file may run backwards in places: store it as it is.
        writer._append(table.macrotime, table.microtime, table.channel, check_order=False)
    return Path(path)
