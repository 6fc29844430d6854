"""The ``levels`` entry of ``analyze_file``: change points, levels, groups and dwell statistics."""

from __future__ import annotations

import math
from typing import Any

from ._changepoints import critical_value
from ._dwell import PowerLawFit, blinking_statistics
from ._levels import find_levels
from ._photons import PhotonTable
from ._pipeline import DEFAULT_IRF_FWHM_S


def _finite(value: float, scale: float = 1.0) -> float | None:
    return float(value * scale) if math.isfinite(value) else None


def power_law_summary(
    fit: PowerLawFit | None, dwells: int, missing: float | None = None
) -> dict[str, Any]:
    """``alpha``, ``alpha_stderr``, ``xmin_s`` and ``dwells`` of a dwell-time fit.

    Without a fit (too few dwells) the three numbers are ``missing``: None in JSON, NaN in an
    event stream.
    """
    if fit is None:
        return {"alpha": missing, "alpha_stderr": missing, "xmin_s": missing, "dwells": dwells}
    return {
        "alpha": fit.alpha,
        "alpha_stderr": fit.alpha_stderr,
        "xmin_s": fit.xmin,
        "dwells": dwells,
    }


def check_confidence(confidence: float) -> None:
    """Raise ValueError unless ``confidence`` is a calibrated level (0.69, 0.90, 0.95, 0.99)."""
    critical_value(confidence, 100)


def levels_summary(
    table: PhotonTable, summary: dict[str, Any], *, confidence: float
) -> dict[str, Any]:
    """JSON-safe change points, levels, groups and blinking statistics of a whole recording.

    Parameters
    ----------
    table
        The photons (all detectors merged).
    summary
        ``PhotonAnalysis.summary()`` of the same photons: its whole-decay fit gives the decay
        start, the IRF and the flat background of the level lifetimes (none without a fit).
    confidence
        Of the change-point test: 0.69, 0.90, 0.95 or 0.99.

    Raises
    ------
    ValueError
        If ``confidence`` is not one of the calibrated levels.
    """
    check_confidence(confidence)
    kw: dict[str, Any] = {}
    decay = summary["decay"]
    if decay is not None and table.microtime_unit_s and table.rep_rate_hz:
        irf = decay["irf_fwhm_ns"]
        # as the FLID does: the fit's background fraction of all photons, as a constant rate
        duration = max(summary["duration_s"], table.macrotime_unit_s)
        kw = dict(
            microtime=table.microtime,
            microtime_unit_s=table.microtime_unit_s,
            period_s=1.0 / table.rep_rate_hz,
            decay_start_s=decay["shift_ns"] * 1e-9,
            background_cps=decay["background_fraction"] * summary["photons"] / duration,
            irf_fwhm_s=DEFAULT_IRF_FWHM_S if irf is None else irf * 1e-9,
        )
    lv = find_levels(table.macrotime, table.macrotime_unit_s, confidence=confidence, **kw)
    blink = blinking_statistics(lv)
    return {
        "confidence": confidence,
        "change_points_s": [float(t) for t in lv.change_points_s],
        "levels": [
            {
                "start_s": float(lv.start_s[i]),
                "end_s": float(lv.end_s[i]),
                "photons": int(lv.photons[i]),
                "intensity_cps": float(lv.intensity_cps[i]),
                "lifetime_ns": _finite(lv.lifetime_s[i], 1e9),
                "group": int(lv.group[i]),
            }
            for i in range(len(lv))
        ],
        "groups": [
            {
                "group": g,
                "intensity_cps": float(lv.group_intensity_cps[g]),
                "lifetime_ns": _finite(lv.group_lifetime_s[g], 1e9),
                "time_fraction": float(lv.group_time_fraction[g]),
                "num_levels": int(lv.group_num_levels[g]),
            }
            for g in range(len(lv.group_intensity_cps))
        ],
        "blinking": {
            "threshold_cps": _finite(blink.threshold_cps),
            "on": power_law_summary(blink.on, len(blink.on_s)),
            "off": power_law_summary(blink.off, len(blink.off_s)),
        },
    }
