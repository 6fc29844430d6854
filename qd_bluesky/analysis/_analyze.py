"""``analyze_file``: the whole analysis of one photon file, as ``qd-bluesky analyze`` prints it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._blinking import check_confidence, levels_summary
from ._errors import AnalysisError
from ._flid import Flid
from ._io import read_photons, sniff_format
from ._photon_hdf5 import PhotonHdf5Reader
from ._photons import PhotonTable
from ._pipeline import PhotonAnalysis, PhotonSettings, StreamUnits, json_floats

#: Photon-HDF5 rows per read (11 MB of photons).
CHUNK_ROWS = 1 << 20
#: FLID bins accumulated at once (60 s of 20 ms bins: 10 MB of coarse histograms).
FLID_WINDOW_BINS = 3000

#: What a caller may demand of a file; a file that cannot give it is an error, not a null.
REQUIREMENTS = ("lifetime", "g2")
#: The FLID bin of the analysis' defaults, in ms (the paper's 20 ms).
FLID_BIN_MS = PhotonSettings.flid_bin_s * 1e3


def analyze_file(
    path: str | os.PathLike[str],
    bin_ms: float = FLID_BIN_MS,
    *,
    require: Iterable[str] = (),
    levels: bool = False,
    confidence: float = 0.95,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Read a PTU or Photon-HDF5 file and analyse it: rate, decay fit, FLID and g2(0).

    Parameters
    ----------
    path
        A PicoQuant PTU (T2 or T3) or Photon-HDF5 file; the format is taken from the content.
    bin_ms
        FLID bin width in milliseconds (default :data:`FLID_BIN_MS`, 20 ms).
    require
        Results the caller needs: ``"lifetime"`` (T3 data with microtimes) and/or ``"g2"`` (two
        detector channels and a pulsed sync). A file that cannot give one raises
        :class:`AnalysisError`; otherwise those results are ``None`` when the data lack them.
    levels
        Add the key ``levels``: change points, levels, groups and blinking statistics
        (:func:`qd_bluesky.analysis._blinking.levels_summary`). The change points need every
        arrival time at once, so the file is then read whole.
    confidence
        Of the change-point test (0.69, 0.90, 0.95 or 0.99), with ``levels``.
    chunk_rows
        Photon-HDF5 rows read at a time: the peak memory of a Photon-HDF5 file's analysis
        does not grow with its length (apart from 16 bytes per FLID bin of the result). A
        PTU file is read whole.

    Returns
    -------
    dict
        JSON-safe; the keys are documented in the README ("JSON schema").
    """
    require = set(require)
    if unknown := require - set(REQUIREMENTS):
        raise ValueError(f"unknown requirement(s) {sorted(unknown)}; choose from {REQUIREMENTS}")
    if not bin_ms > 0:
        raise ValueError(f"--bin-ms must be positive, got {bin_ms}")
    if levels:
        check_confidence(confidence)
    elif sniff_format(path) == "photon-hdf5":
        return _analyze_photon_hdf5(path, bin_ms, require, chunk_rows)
    # A PTU file is decoded whole by ptufile (its records are not photons one to one).
    table = read_photons(path)
    if len(table) == 0:
        raise AnalysisError(f"{path}: the file holds no photon records")
    units = StreamUnits.of(table)
    channels = tuple(table.channels)
    _check_requirements(path, units, channels, table.mode, require)
    analysis = PhotonAnalysis(
        units,
        flid_bin_s=bin_ms * 1e-3,
        t0_ticks=int(table.macrotime[0]),
        channels=channels,
    )
    analysis.add(table.macrotime, table.microtime, table.channel)
    summary = analysis.summary(bin_ms=bin_ms)
    result = {
        "source": os.fspath(path),
        "format": table.format,
        **summary,
        "warnings": list(table.warnings) + summary["warnings"],
    }
    if levels:
        result["levels"] = levels_summary(table, summary, confidence=confidence)
    return result


def _check_requirements(
    path: Any, units: StreamUnits, channels: tuple[int, ...], mode: str, require: set[str]
) -> None:
    if "lifetime" in require and not units.pulsed:
        raise AnalysisError(
            f"{path}: a lifetime needs T3 data with microtimes; this is a {mode} file"
        )
    if "g2" in require:
        if len(channels) < 2:
            raise AnalysisError(
                f"{path}: g2 needs two detector channels; photons were recorded on "
                f"channel {channels[0]} only"
            )
        if not units.pulsed:
            raise AnalysisError(f"{path}: pulsed g2 needs a laser sync; this is a {mode} file")


def _chunks(reader: PhotonHdf5Reader, chunk_rows: int) -> Iterator[PhotonTable]:
    for a in range(0, reader.rows, chunk_rows):
        table = reader.read(a, a + chunk_rows)
        if len(table):
            yield table


def _analyze_photon_hdf5(
    path: Any, bin_ms: float, require: set[str], chunk_rows: int
) -> dict[str, Any]:
    """:func:`analyze_file` of a Photon-HDF5 file in chunks of rows, in bounded memory.

    Three passes: the channels and the first photon; the decay, g2 and counts (whose fit
    gives the FLID's decay start and background); the FLID window by window, keeping only
    each bin's intensity and lifetime. Every accumulator is exact under chunking and a FLID
    bin's lifetime depends on that bin alone, so the result equals the whole-file analysis.
    """
    with PhotonHdf5Reader(path) as reader:
        seen: set[int] = set()
        first_ticks = None
        for table in _chunks(reader, chunk_rows):
            seen.update(np.unique(table.channel).tolist())
            if first_ticks is None:
                first_ticks = int(table.macrotime[0])
                units = StreamUnits.of(table)
                mode, warnings = table.mode, list(table.warnings)
        if first_ticks is None:
            raise AnalysisError(f"{path}: the file holds no photon records")
        channels = tuple(sorted(seen))
        _check_requirements(path, units, channels, mode, require)
        analysis = PhotonAnalysis(
            units,
            flid_bin_s=bin_ms * 1e-3,
            t0_ticks=first_ticks,
            channels=channels,
            with_flid=False,
        )
        for table in _chunks(reader, chunk_rows):
            analysis.add(table.macrotime, table.microtime, table.channel)
        summary = analysis.summary(bin_ms=bin_ms)
        if analysis.decay is not None:
            try:
                intensity, lifetime = _windowed_flid(analysis, reader, chunk_rows, bin_ms)
            except AnalysisError as exc:
                summary["warnings"].append(f"FLID lifetimes not computed: {exc}")
            else:
                summary["flid"] = {
                    "bin_ms": bin_ms,
                    "intensity_cps": json_floats(intensity),
                    "lifetime_ns": json_floats(lifetime * 1e9),
                }
    return {
        "source": os.fspath(path),
        "format": "photon-hdf5",
        **summary,
        "warnings": warnings + summary["warnings"],
    }


def _windowed_flid(
    analysis: PhotonAnalysis, reader: PhotonHdf5Reader, chunk_rows: int, bin_ms: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Intensity and lifetime of every FLID bin, accumulated ``FLID_WINDOW_BINS`` at a time.

    Windows start on whole ticks (as the live analyzer's, see ``callbacks._bins``); a bin
    width that is not a whole number of ticks gets one window (the whole file).
    """
    fit = analysis.summary_fit()
    t0 = analysis.first_ticks
    flid = analysis.new_flid(t0, bin_ms * 1e-3)
    tpb = flid.ticks_per_bin
    n_bins = int((analysis.last_ticks - t0) / tpb) + 1
    window = FLID_WINDOW_BINS if float(tpb).is_integer() else n_bins
    window_ticks = int(window * tpb) if window < n_bins else None
    intensity = np.zeros(n_bins)  # bins without photons: 0 cps and no lifetime
    lifetime = np.full(n_bins, np.nan)
    w = 0

    def close(flid: Flid, first_bin: int) -> None:
        result = analysis.flid_result(fit, flid=flid)
        end = first_bin + len(result)
        intensity[first_bin:end] = result.intensity_cps
        lifetime[first_bin:end] = result.lifetime_s

    for table in _chunks(reader, chunk_rows):
        m, mu = table.macrotime, table.microtime
        pos = 0
        while pos < len(m):
            if window_ticks is None:
                cut = len(m)
            else:
                edge = t0 + (w + 1) * window_ticks
                cut = pos + int(np.searchsorted(m[pos:], edge, side="left"))
            flid.add(m[pos:cut], mu[pos:cut])
            if cut == len(m):
                break
            close(flid, w * window)
            w = int(m[cut] - t0) // window_ticks
            flid = analysis.new_flid(t0 + w * window_ticks, bin_ms * 1e-3)
            pos = cut
    close(flid, w * window)
    return intensity, lifetime
