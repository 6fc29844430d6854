"""``analyze_file``: the whole analysis of one photon file, as ``qd-bluesky analyze`` prints it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._blinking import check_confidence, levels_summary
from ._errors import AnalysisError
from ._flid import Flid
from ._io import read_photons, sniff_format
from ._kernels import channel_set
from ._photon_hdf5 import PhotonHdf5Reader
from ._photons import PhotonTable
from ._pipeline import PhotonAnalysis, PhotonSettings, StreamUnits, json_floats

#: Photon-HDF5 rows per read (11 MB of photons).
CHUNK_ROWS = 1 << 20
#: FLID bins accumulated at once when the whole FLID exceeds ``FLID_MEMORY_BYTES`` (60 s of
#: 20 ms bins: 10 MB of coarse histograms).
FLID_WINDOW_BINS = 3000
#: The coarse FLID histograms of a whole Photon-HDF5 file are kept up to this size (80 000
#: bins, 27 min at 20 ms), so the file is read once; a longer file's FLID is accumulated
#: window by window in a second read.
FLID_MEMORY_BYTES = 256 << 20

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
    workers: int | None = None,
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
    workers
        Threads (1 or 2; default: 2 where the machine has two cores). A second thread reads the
        next Photon-HDF5 chunk and accumulates half of each chunk; the result is the same.

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
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if workers not in (1, 2):
        raise ValueError(f"workers must be 1 or 2, got {workers}")
    if levels:
        check_confidence(confidence)
    elif sniff_format(path) == "photon-hdf5":
        return _analyze_photon_hdf5(path, bin_ms, require, chunk_rows, workers)
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
        workers=workers,
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


def _chunks(
    reader: PhotonHdf5Reader, chunk_rows: int, prefetch: bool = False
) -> Iterator[PhotonTable]:
    """The non-empty chunks of ``chunk_rows`` rows; with ``prefetch``, the next one is read on
    a second thread while the caller works on the current one (h5py reads without the GIL)."""
    chunks = _read_chunks(reader, chunk_rows)
    if not prefetch:
        yield from chunks
        return
    with ThreadPoolExecutor(1, thread_name_prefix="qd-read") as pool:
        pending = pool.submit(next, chunks, None)
        while (current := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield current


def _read_chunks(reader: PhotonHdf5Reader, chunk_rows: int) -> Iterator[PhotonTable]:
    # (its own frame: the reading thread must not share a variable with the consumer's)
    for a in range(0, reader.rows, chunk_rows):
        table = reader.read(a, a + chunk_rows)
        if len(table):
            yield table


def _flid_bins_bound(reader: PhotonHdf5Reader, first_ticks: int, tpb: float) -> int:
    """FLID bins up to the file's last timestamp (photon or marker): the size of the FLID."""
    rows = reader.rows
    last = reader.read(max(0, rows - 1024), rows).macrotime
    return int((int(last.max()) - first_ticks) / tpb) + 2 if len(last) else 0


def _analyze_photon_hdf5(
    path: Any, bin_ms: float, require: set[str], chunk_rows: int, workers: int = 1
) -> dict[str, Any]:
    """:func:`analyze_file` of a Photon-HDF5 file in chunks of rows, in bounded memory.

    One read: the channels come from the first chunk (a chunk with another channel starts the
    analysis again with all channels seen), and trace, decay, g2 and the FLID's coarse
    histograms are accumulated in one pass per chunk; the FLID lifetimes follow the whole-decay
    fit. A FLID larger than ``FLID_MEMORY_BYTES`` is accumulated window by window in a second
    read instead, keeping only each bin's intensity and lifetime. Every accumulator is exact
    under chunking and a FLID bin's lifetime depends on that bin alone, so the result equals
    the whole-file analysis.
    """
    with PhotonHdf5Reader(path) as reader:
        known: set[int] = set()
        while True:
            analysis = None
            for table in _chunks(reader, chunk_rows, prefetch=workers > 1):
                seen = {int(x) for x in channel_set(table.channel)}
                if analysis is None:
                    known |= seen
                    units = StreamUnits.of(table)
                    mode, warnings = table.mode, list(table.warnings)
                    analysis = _new_analysis(reader, table, units, bin_ms, known, workers)
                elif not seen <= known:
                    known |= seen
                    break  # a channel the first chunk lacked: again, with all channels
                analysis.add(table.macrotime, table.microtime, table.channel)
            else:
                break
        if analysis is None:
            raise AnalysisError(f"{path}: the file holds no photon records")
        _check_requirements(path, units, analysis.channels, mode, require)
        summary = analysis.summary(bin_ms=bin_ms)
        if analysis.decay is not None and analysis.flid is None:
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


def _new_analysis(
    reader: PhotonHdf5Reader,
    first: PhotonTable,
    units: StreamUnits,
    bin_ms: float,
    channels: set[int],
    workers: int,
) -> PhotonAnalysis:
    """The analysis of a file whose first chunk is ``first``; with the whole FLID if it fits
    in ``FLID_MEMORY_BYTES`` (its bins are allocated at once)."""
    t0 = int(first.macrotime[0])
    analysis = PhotonAnalysis(
        units,
        flid_bin_s=bin_ms * 1e-3,
        t0_ticks=t0,
        channels=tuple(sorted(channels)),
        with_flid=False,
        workers=workers,
    )
    if units.pulsed:
        flid = analysis.new_flid(t0, bin_ms * 1e-3)
        n_bins = _flid_bins_bound(reader, t0, flid.ticks_per_bin)
        if n_bins * flid.histograms.shape[1] * flid.histograms.itemsize <= FLID_MEMORY_BYTES:
            flid.reserve(n_bins)
            analysis.flid = flid
    return analysis


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
