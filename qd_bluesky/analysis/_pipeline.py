"""All streaming accumulators of one photon stream behind one ``add()``.

The same object serves a whole file (:func:`analyze_file`), a live acquisition fed chunk by chunk,
and a replay: every accumulator is exact under chunking, so the three give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._accumulators import DecayHistogram, IntensityTrace
from ._errors import AnalysisError
from ._fit import DecayFit, fit_decay
from ._flid import Flid, FlidResult
from ._g2 import G2Pulsed, G2Result
from ._photons import PhotonTable

#: A FLID bin needs this many photons for a lifetime; fewer give NaN (null in JSON).
FLID_MIN_COUNTS = 20
#: A whole-decay fit needs this many photons.
FIT_MIN_COUNTS = 200
#: IRF assumed when none is measured: the TCSPC + APD response of the paper's set-up.
DEFAULT_IRF_FWHM_S = 0.4e-9
#: A bi-exponential replaces the mono-exponential when the Poisson deviance drops by more than this
#: (a likelihood-ratio test with 2 extra parameters at p ~ 1e-6) and both components carry weight.
BI_EXP_DEVIANCE_GAIN = 30.0
BI_EXP_MIN_FRACTION = 0.03


@dataclass(frozen=True)
class StreamUnits:
    """What a photon stream's integers mean."""

    macrotime_unit_s: float
    microtime_unit_s: float | None
    microtime_bins: int
    rep_rate_hz: float | None
    mode: str = "T3"

    @classmethod
    def of(cls, table: PhotonTable) -> StreamUnits:
        return cls(
            table.macrotime_unit_s,
            table.microtime_unit_s,
            table.microtime_bins,
            table.rep_rate_hz,
            table.mode,
        )

    @property
    def pulsed(self) -> bool:
        """T3 data with a laser sync: microtimes and pulse-resolved g2 make sense."""
        return self.mode == "T3" and bool(self.rep_rate_hz) and self.microtime_unit_s is not None


class PhotonAnalysis:
    """Intensity trace, decay histograms, FLID and g2 of one photon stream, fed in chunks.

    Parameters
    ----------
    units
        Units of the stream (see :class:`StreamUnits`).
    flid_bin_s, trace_bin_s
        FLID and intensity-trace bin widths.
    t0_ticks
        Macrotime that bins are aligned to (the start of the acquisition), so that a live run and
        its replay put photons in the same bins.
    channels
        Detector channels; g2 is computed between the first two.
    with_flid
        Accumulate the FLID (per-bin histograms, memory growing with the stream's length).
        Without, :meth:`summary` leaves the FLID empty and a caller computes it window by
        window (``analyze_file`` on a long file).
    """

    def __init__(
        self,
        units: StreamUnits,
        *,
        flid_bin_s: float = 20e-3,
        trace_bin_s: float = 1e-3,
        t0_ticks: int = 0,
        channels: tuple[int, ...] = (0, 1),
        with_flid: bool = True,
    ) -> None:
        if not flid_bin_s > 0 or not trace_bin_s > 0:
            raise ValueError(f"bin widths must be positive, got {flid_bin_s} and {trace_bin_s}")
        self.units = units
        self.channels = tuple(sorted(channels))
        n_channels = max(self.channels, default=0) + 1
        self.n_photons = 0
        self._summary_fit: tuple[int, DecayFit | None] = (-1, None)
        self.first_ticks: int | None = None
        self.last_ticks: int | None = None
        self.trace = IntensityTrace(
            trace_bin_s, units.macrotime_unit_s, t0_ticks=t0_ticks, n_channels=n_channels
        )
        self.decay: DecayHistogram | None = None
        self.flid: Flid | None = None
        self.g2: G2Pulsed | None = None
        # Without microtimes the FLID reduces to its intensity axis.
        self.flid_trace: IntensityTrace | None = None
        if not units.pulsed:
            self.flid_trace = IntensityTrace(
                flid_bin_s, units.macrotime_unit_s, t0_ticks=t0_ticks, n_channels=n_channels
            )
        else:
            self.decay = DecayHistogram(units.microtime_bins, n_channels=n_channels)
            if with_flid:
                self.flid = self.new_flid(t0_ticks, flid_bin_s)
            if len(self.channels) >= 2:
                self.g2 = G2Pulsed(
                    self.channels[0],
                    self.channels[1],
                    macrotime_unit_s=units.macrotime_unit_s,
                    microtime_unit_s=units.microtime_unit_s,
                )

    def add(self, macrotime: np.ndarray, microtime: np.ndarray, channel: np.ndarray) -> None:
        """Accumulate one chunk of photons (in time order, after the previous chunk)."""
        if len(macrotime) == 0:
            return
        self.n_photons += len(macrotime)
        if self.first_ticks is None:
            self.first_ticks = int(macrotime[0])
        self.last_ticks = int(macrotime[-1])
        self.trace.add(macrotime, channel)
        if self.flid_trace is not None:
            self.flid_trace.add(macrotime, channel)
        if self.decay is not None:
            self.decay.add(microtime, channel)
        if self.flid is not None:
            self.flid.add(macrotime, microtime)
        if self.g2 is not None:
            self.g2.add(macrotime, microtime, channel)

    def new_flid(self, t0_ticks: int, flid_bin_s: float) -> Flid:
        """A FLID accumulator of this stream's units with bin 0 at ``t0_ticks``."""
        u = self.units
        return Flid(
            flid_bin_s,
            u.macrotime_unit_s,
            u.microtime_unit_s,
            u.microtime_bins,
            t0_ticks=t0_ticks,
        )

    @property
    def duration_s(self) -> float:
        if self.first_ticks is None:
            return 0.0
        return (self.last_ticks - self.first_ticks) * self.units.macrotime_unit_s

    # ---- estimators over what has been accumulated ----

    def fit(self, *, irf_fwhm_s: float = DEFAULT_IRF_FWHM_S) -> DecayFit:
        """Whole-decay fit: bi-exponential where the data demand it, else mono-exponential."""
        if self.decay is None:
            raise AnalysisError(
                "no microtimes: a lifetime needs T3 data with a laser sync "
                f"(this stream is {self.units.mode})"
            )
        counts = self.decay.summed
        if counts.sum() < FIT_MIN_COUNTS:
            raise AnalysisError(
                f"too few photons for a decay fit ({int(counts.sum())} < {FIT_MIN_COUNTS})"
            )
        kw = dict(period_s=1.0 / self.units.rep_rate_hz, irf_fwhm_s=irf_fwhm_s)
        mono = fit_decay(counts, self.units.microtime_unit_s, model="mono", **kw)
        try:
            bi = fit_decay(counts, self.units.microtime_unit_s, model="bi", **kw)
        except AnalysisError:
            return mono
        if (
            bi.converged
            and mono.deviance - bi.deviance > BI_EXP_DEVIANCE_GAIN
            and min(bi.fraction) > BI_EXP_MIN_FRACTION
        ):
            return bi
        return mono

    def flid_result(
        self,
        fit: DecayFit | None,
        *,
        irf_fwhm_s: float = DEFAULT_IRF_FWHM_S,
        flid: Flid | None = None,
    ) -> FlidResult | None:
        """Per-bin intensity and lifetime, with the decay start and background from ``fit``.

        ``flid`` (default: this analysis's own) may be one window of the stream: the decay
        start and background come from the whole stream all the same.
        """
        flid = flid or self.flid
        if flid is None:
            return None
        duration = max(self.duration_s, self.units.macrotime_unit_s)
        if fit is not None:
            decay_start = fit.shift_s
            background_cps = fit.background_fraction * self.n_photons / duration
        else:
            decay_start, background_cps = 0.0, 0.0
        return flid.result(
            decay_start_s=decay_start,
            background_cps=background_cps,
            period_s=1.0 / self.units.rep_rate_hz,
            min_counts=FLID_MIN_COUNTS,
            irf_fwhm_s=irf_fwhm_s if fit is None else fit.irf_fwhm_s,
        )

    def g2_result(self) -> G2Result | None:
        return None if self.g2 is None else self.g2.result()

    def summary_fit(self) -> DecayFit | None:
        """The whole-decay fit of :meth:`summary` (None without microtimes or photons).

        Kept until more photons come, so that a caller computing the FLID window by window
        and :meth:`summary` fit once.
        """
        if self._summary_fit[0] != self.n_photons:
            fit = None
            if self.decay is not None and self.n_photons >= FIT_MIN_COUNTS:
                fit = self.fit()
            self._summary_fit = (self.n_photons, fit)
        return self._summary_fit[1]

    def summary(self, *, bin_ms: float) -> dict[str, Any]:
        """The JSON-safe summary of ``qd-bluesky analyze`` (see the README for the schema)."""
        u = self.units
        duration = self.duration_s
        out: dict[str, Any] = {
            "photons": int(self.n_photons),
            "duration_s": duration,
            "count_rate_cps": self.n_photons / duration if duration > 0 else None,
            "rep_rate_hz": u.rep_rate_hz,
            "mode": u.mode,
            "channels": [c for c in self.channels],
            "microtime_unit_ps": None if u.microtime_unit_s is None else u.microtime_unit_s * 1e12,
            "lifetime_ns": None,
            "decay": None,
            "g2_zero": None,
            "g2_zero_stderr": None,
            "flid": {"bin_ms": bin_ms, "intensity_cps": [], "lifetime_ns": []},
            "warnings": [],
        }
        fit = self.summary_fit()
        if fit is not None:
            out["decay"] = fit.to_dict()
            out["lifetime_ns"] = fit.dominant_tau_s * 1e9
        try:
            flid = self.flid_result(fit)
        except AnalysisError as exc:
            # e.g. a microtime range shorter than the laser period: keep the rest of the summary.
            out["warnings"].append(f"FLID lifetimes not computed: {exc}")
            flid = None
        if flid is not None:
            out["flid"] = {
                "bin_ms": bin_ms,
                "intensity_cps": json_floats(flid.intensity_cps),
                "lifetime_ns": json_floats(flid.lifetime_s * 1e9),
            }
        elif self.flid_trace is not None:
            rate = self.flid_trace.rate_cps
            out["flid"]["intensity_cps"] = json_floats(rate)
            out["flid"]["lifetime_ns"] = [None] * len(rate)
        g2 = self.g2_result()
        if g2 is not None and np.isfinite(g2.g2_zero):
            out["g2_zero"] = float(g2.g2_zero)
            out["g2_zero_stderr"] = float(g2.g2_zero_stderr)
        return out


def json_floats(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, with NaN as null."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, float)]
