"""The streaming accumulators of one photon stream, their composition and the one fit step.

The analysis is built from small parts that a caller schedules as it needs:

* the binned accumulators: :func:`trace_accumulator` (counts per bin) and
  :func:`flid_accumulator` (a FLID where the stream has microtimes, else its intensity axis),
  fed through :func:`add_photons` and read per bin through :func:`per_bin_arrays`;
* :class:`StretchAccumulator`: the photons, time span, decay histogram and pulsed g2 of one
  stretch of the stream (a whole file, one segment of a run, the calibration rows);
* the fit step, :meth:`StretchAccumulator.results` (:func:`fit_accumulated`): the project's
  decay fit, the mono-exponential behind it, and g2.

:class:`PhotonAnalysis` composes them for a whole file (:func:`analyze_file`); the live analyzer
(``qd_bluesky.callbacks``) schedules the same parts per segment and per window. Every accumulator
is exact under chunking, so a file, a live run fed chunk by chunk and its replay agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ._accumulators import DecayHistogram, IntensityTrace
from ._errors import AnalysisError
from ._feed import feed_photons
from ._fit import DEFAULT_IRF_FWHM_S, FIT_MIN_COUNTS, DecayFit, fit_decay_models
from ._flid import MIN_COUNTS as FLID_MIN_COUNTS  # fewer photons in a bin: NaN (JSON null)
from ._flid import Flid, FlidResult
from ._g2 import G2Pulsed, G2Result
from ._photons import PhotonTable

#: Detector channels of the card (two APDs behind a beam splitter); g2 is computed between them.
DEFAULT_CHANNELS = (0, 1)


@dataclass(frozen=True)
class PhotonSettings:
    """The analysis defaults, defined here once for every caller.

    Attributes
    ----------
    flid_bin_s
        FLID time bin (20 ms in the paper).
    trace_bin_s
        Intensity-trace bin (1 ms in the paper).
    irf_fwhm_s
        Gaussian IRF assumed in the fits (the set-up's ~400 ps).
    """

    flid_bin_s: float = 20e-3
    trace_bin_s: float = 1e-3
    irf_fwhm_s: float = DEFAULT_IRF_FWHM_S


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


# ---- binned accumulators ------------------------------------------------------------------

Binned = IntensityTrace | Flid


def trace_accumulator(
    units: StreamUnits, bin_s: float, *, t0_ticks: int, n_channels: int
) -> IntensityTrace:
    """Counts per ``bin_s`` bin and channel, bin 0 at ``t0_ticks``."""
    return IntensityTrace(bin_s, units.macrotime_unit_s, t0_ticks=t0_ticks, n_channels=n_channels)


def flid_accumulator(units: StreamUnits, bin_s: float, *, t0_ticks: int, n_channels: int) -> Binned:
    """The FLID's accumulator: a :class:`Flid` with microtimes, else its intensity axis alone."""
    if not units.pulsed:
        return trace_accumulator(units, bin_s, t0_ticks=t0_ticks, n_channels=n_channels)
    return Flid(
        bin_s,
        units.macrotime_unit_s,
        units.microtime_unit_s,
        units.microtime_bins,
        t0_ticks=t0_ticks,
    )


def add_photons(acc: Binned, macrotime: NDArray, microtime: NDArray, channel: NDArray) -> None:
    """Feed one chunk of photons to a binned accumulator, whichever columns it takes."""
    if isinstance(acc, Flid):
        acc.add(macrotime, microtime)
    else:
        acc.add(macrotime, channel)


def per_bin_arrays(acc: Binned) -> tuple[NDArray, ...]:
    """A binned accumulator's arrays, first axis its bins so far.

    A :class:`Flid` gives its counts and microtime histograms, an :class:`IntensityTrace` its
    counts of all channels together.
    """
    if isinstance(acc, Flid):
        return acc.counts, acc.histograms
    return (acc.total,)


# ---- one stretch of photons and the fit step -----------------------------------------------


@dataclass(frozen=True)
class FitResults:
    """What the fit step makes of a stretch's histograms.

    Attributes
    ----------
    decay
        The decay histogram of all channels together (empty without microtimes).
    fit
        The project's fit (bi-exponential where the data demand it, else mono-exponential),
        None without microtimes or when the fit failed.
    mono
        The mono-exponential fit (None likewise).
    problem
        Why there is no fit (too few photons, no decay), None otherwise.
    g2
        The pulsed g2, None without it.
    """

    decay: NDArray[np.int64]
    fit: DecayFit | None
    mono: DecayFit | None
    problem: str | None
    g2: G2Result | None


def fit_accumulated(
    units: StreamUnits,
    decay: DecayHistogram | None,
    g2: G2Pulsed | None,
    *,
    irf_fwhm_s: float = DEFAULT_IRF_FWHM_S,
) -> FitResults:
    """The fit step: the decay fits (a failure is a ``problem``, not an error) and g2.

    Parameters
    ----------
    units
        Units of the stream.
    decay, g2
        The accumulated histograms (None where the stream has none).
    irf_fwhm_s
        Gaussian IRF of the fits.

    Returns
    -------
    FitResults
    """
    fit = mono = problem = None
    counts = decay.summed if decay is not None else np.zeros(0, dtype=np.int64)
    if decay is not None:
        try:
            fits = fit_decay_models(
                counts,
                units.microtime_unit_s,
                period_s=1.0 / units.rep_rate_hz,
                irf_fwhm_s=irf_fwhm_s,
            )
            fit, mono = fits.best, fits.mono
        except AnalysisError as exc:  # too few photons, no decay: a NaN, not a failure
            problem = str(exc)
    return FitResults(counts, fit, mono, problem, None if g2 is None else g2.result())


@dataclass(frozen=True)
class FlidCalibration:
    """What the FLID's per-bin lifetimes take from a whole-decay fit.

    Attributes
    ----------
    decay_start_s
        Time of zero delay in the microtime frame.
    background_cps
        Flat background rate, all detectors together.
    irf_fwhm_s
        Gaussian IRF of the fit.
    """

    decay_start_s: float
    background_cps: float
    irf_fwhm_s: float


class StretchAccumulator:
    """Photons, time span, decay histogram and pulsed g2 of one stretch of a stream.

    Parameters
    ----------
    units
        Units of the stream; without microtimes there is neither decay nor g2.
    channels
        Detector channels; g2 is computed between the first two.
    with_g2
        Accumulate g2 (when the stream allows it).
    """

    def __init__(
        self, units: StreamUnits, channels: tuple[int, ...], *, with_g2: bool = True
    ) -> None:
        self.units = units
        channels = tuple(sorted(channels))
        n_channels = max(channels, default=0) + 1
        self.photons = 0
        self.first_ticks: int | None = None
        self.last_ticks: int | None = None
        self.decay: DecayHistogram | None = None
        self.g2: G2Pulsed | None = None
        if units.pulsed:
            self.decay = DecayHistogram(units.microtime_bins, n_channels=n_channels)
            if with_g2 and len(channels) >= 2:
                self.g2 = G2Pulsed(
                    channels[0],
                    channels[1],
                    macrotime_unit_s=units.macrotime_unit_s,
                    microtime_unit_s=units.microtime_unit_s,
                )

    def add(self, macrotime: NDArray, microtime: NDArray, channel: NDArray) -> None:
        """Accumulate one chunk of photons (in time order, after the previous chunk)."""
        if len(macrotime) == 0:
            return
        self.count(macrotime)
        if self.decay is not None or self.g2 is not None:
            feed_photons(macrotime, microtime, channel, decay=self.decay, g2=self.g2)

    def count(self, macrotime: NDArray) -> None:
        """Count a non-empty chunk's photons and time span (what :meth:`add` does besides
        feeding the decay and g2)."""
        self.photons += len(macrotime)
        if self.first_ticks is None:
            self.first_ticks = int(macrotime[0])
        self.last_ticks = int(macrotime[-1])

    @property
    def duration_s(self) -> float:
        """Time from the stretch's first photon to its last."""
        if self.first_ticks is None:
            return 0.0
        return (self.last_ticks - self.first_ticks) * self.units.macrotime_unit_s

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held by the decay and g2 accumulators (fixed-size histograms
        and g2's short tail of the previous chunk)."""
        return sum(
            v.nbytes
            for part in (self.decay, self.g2)
            if part is not None
            for v in vars(part).values()
            if isinstance(v, np.ndarray)
        )

    def results(self, *, irf_fwhm_s: float = DEFAULT_IRF_FWHM_S) -> FitResults:
        """The fit step on what has been accumulated (see :func:`fit_accumulated`)."""
        return fit_accumulated(self.units, self.decay, self.g2, irf_fwhm_s=irf_fwhm_s)

    def flid_calibration(
        self, fit: DecayFit | None, *, irf_fwhm_s: float = DEFAULT_IRF_FWHM_S
    ) -> FlidCalibration:
        """Decay start and background of this stretch's ``fit``, for the FLID lifetimes.

        The fit's background fraction of this stretch's photons over its time gives the rate;
        without a fit, the decay starts at 0 with no background and the IRF is ``irf_fwhm_s``.
        """
        if fit is None:
            return FlidCalibration(0.0, 0.0, irf_fwhm_s)
        duration = max(self.duration_s, self.units.macrotime_unit_s)
        return FlidCalibration(
            fit.shift_s,
            fit.background_fraction * self.photons / duration,
            fit.irf_fwhm_s if fit.irf_fwhm_s else irf_fwhm_s,
        )


class PhotonAnalysis:
    """Intensity trace, decay histograms, FLID and g2 of one photon stream, fed in chunks.

    A composition of :func:`trace_accumulator`, :func:`flid_accumulator` and one
    :class:`StretchAccumulator` over the whole stream.

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
    workers
        Threads that accumulate a large chunk (1 or 2; see :func:`feed_photons`).

    Raises
    ------
    ValueError
        A bin width that is not positive.
    """

    def __init__(
        self,
        units: StreamUnits,
        *,
        flid_bin_s: float = PhotonSettings.flid_bin_s,
        trace_bin_s: float = PhotonSettings.trace_bin_s,
        t0_ticks: int = 0,
        channels: tuple[int, ...] = DEFAULT_CHANNELS,
        with_flid: bool = True,
        workers: int = 1,
    ) -> None:
        if not flid_bin_s > 0 or not trace_bin_s > 0:
            raise ValueError(f"bin widths must be positive, got {flid_bin_s} and {trace_bin_s}")
        self.units = units
        self.workers = workers
        self.channels = tuple(sorted(channels))
        n_channels = max(self.channels, default=0) + 1
        self._summary_fit: tuple[int, DecayFit | None] = (-1, None)
        self.trace = trace_accumulator(units, trace_bin_s, t0_ticks=t0_ticks, n_channels=n_channels)
        self.stretch = StretchAccumulator(units, self.channels)
        self.flid: Flid | None = None
        # Without microtimes the FLID reduces to its intensity axis.
        self.flid_trace: IntensityTrace | None = None
        if not units.pulsed:
            self.flid_trace = trace_accumulator(
                units, flid_bin_s, t0_ticks=t0_ticks, n_channels=n_channels
            )
        elif with_flid:
            self.flid = self.new_flid(t0_ticks, flid_bin_s)

    def add(self, macrotime: np.ndarray, microtime: np.ndarray, channel: np.ndarray) -> None:
        """Accumulate one chunk of photons (in time order, after the previous chunk)."""
        if len(macrotime) == 0:
            return
        self.stretch.count(macrotime)
        # one pass for the trace, decay, FLID and g2
        feed_photons(
            macrotime,
            microtime,
            channel,
            trace=self.trace,
            decay=self.stretch.decay,
            flid=self.flid,
            g2=self.stretch.g2,
            workers=self.workers,
        )
        if self.flid_trace is not None:
            self.flid_trace.add(macrotime, channel)

    def new_flid(self, t0_ticks: int, flid_bin_s: float) -> Flid:
        """A FLID accumulator of this stream's units (with microtimes), bin 0 at ``t0_ticks``."""
        n_channels = max(self.channels, default=0) + 1
        flid = flid_accumulator(self.units, flid_bin_s, t0_ticks=t0_ticks, n_channels=n_channels)
        return cast(Flid, flid)

    @property
    def decay(self) -> DecayHistogram | None:
        return self.stretch.decay

    @property
    def g2(self) -> G2Pulsed | None:
        return self.stretch.g2

    @property
    def n_photons(self) -> int:
        return self.stretch.photons

    @property
    def first_ticks(self) -> int | None:
        return self.stretch.first_ticks

    @property
    def last_ticks(self) -> int | None:
        return self.stretch.last_ticks

    @property
    def duration_s(self) -> float:
        return self.stretch.duration_s

    # ---- estimators over what has been accumulated ----

    def fit(self, *, irf_fwhm_s: float = DEFAULT_IRF_FWHM_S) -> DecayFit:
        """Whole-decay fit: bi-exponential where the data demand it, else mono-exponential.

        Raises
        ------
        AnalysisError
            No microtimes, too few photons, or no decay to fit.
        """
        if self.decay is None:
            raise AnalysisError(
                "no microtimes: a lifetime needs T3 data with a laser sync "
                f"(this stream is {self.units.mode})"
            )
        return fit_decay_models(
            self.decay.summed,
            self.units.microtime_unit_s,
            period_s=1.0 / self.units.rep_rate_hz,
            irf_fwhm_s=irf_fwhm_s,
        ).best

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
        cal = self.stretch.flid_calibration(fit, irf_fwhm_s=irf_fwhm_s)
        return flid.result(
            decay_start_s=cal.decay_start_s,
            background_cps=cal.background_cps,
            period_s=1.0 / self.units.rep_rate_hz,
            min_counts=FLID_MIN_COUNTS,
            irf_fwhm_s=cal.irf_fwhm_s,
            workers=self.workers,
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
    """Floats for JSON, with NaN (and infinities) as null."""
    values = np.asarray(values, float)
    out: list[float | None] = values.tolist()  # one C loop for the tens of thousands of bins
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out
