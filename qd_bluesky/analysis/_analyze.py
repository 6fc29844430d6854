"""``analyze_file``: the whole analysis of one photon file, as ``qd-bluesky analyze`` prints it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ._blinking import check_confidence, levels_summary
from ._errors import AnalysisError
from ._io import read_photons
from ._pipeline import PhotonAnalysis, StreamUnits

#: What a caller may demand of a file; a file that cannot give it is an error, not a null.
REQUIREMENTS = ("lifetime", "g2")


def analyze_file(
    path: str | os.PathLike[str],
    bin_ms: float = 20.0,
    *,
    require: Iterable[str] = (),
    levels: bool = False,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Read a PTU or Photon-HDF5 file and analyse it: rate, decay fit, FLID and g2(0).

    Parameters
    ----------
    path
        A PicoQuant PTU (T2 or T3) or Photon-HDF5 file; the format is taken from the content.
    bin_ms
        FLID bin width in milliseconds.
    require
        Results the caller needs: ``"lifetime"`` (T3 data with microtimes) and/or ``"g2"`` (two
        detector channels and a pulsed sync). A file that cannot give one raises
        :class:`AnalysisError`; otherwise those results are ``None`` when the data lack them.
    levels
        Add the key ``levels``: change points, levels, groups and blinking statistics
        (:func:`qd_bluesky.analysis._blinking.levels_summary`).
    confidence
        Of the change-point test (0.69, 0.90, 0.95 or 0.99), with ``levels``.

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
    table = read_photons(path)
    if len(table) == 0:
        raise AnalysisError(f"{path}: the file holds no photon records")
    units = StreamUnits.of(table)
    channels = tuple(table.channels)
    if "lifetime" in require and not units.pulsed:
        raise AnalysisError(
            f"{path}: a lifetime needs T3 data with microtimes; this is a {table.mode} file"
        )
    if "g2" in require:
        if len(channels) < 2:
            raise AnalysisError(
                f"{path}: g2 needs two detector channels; photons were recorded on "
                f"channel {channels[0]} only"
            )
        if not units.pulsed:
            raise AnalysisError(
                f"{path}: pulsed g2 needs a laser sync; this is a {table.mode} file"
            )
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
