"""The analysis of one raw run's photons, fed with what the documents announce.

Nothing here knows about documents or threads: :class:`RunAnalysis` is told the photon file, the
rows that exist (:meth:`~RunAnalysis.announce`) and the step markers
(:meth:`~RunAnalysis.add_marker`), and hands out rows of the derived streams as they become
final. Every row depends on the photons and markers only, not on how the rows were split into
announcements nor on when the markers came, provided a marker comes before the announcement of
its own row (the run contract; so it is live, and so it is in Tiled's replay, where all markers
come first). So the live run and its replay agree to the last bit:

* the trace and the FLID are binned on the absolute macrotime clock from the first photon;
* a FLID bin's lifetime uses a decay start and background fixed once, by a calibration on the
  first ``calibration_photons`` rows;
* a FLID bin's segment and bias are those of the photon at the bin's centre (by row), taken
  once that photon has been read, when every marker of its row is known;
* a segment is reported once all its rows (up to the next marker) have been read.

A marker that comes after its row was read breaks the contract; the segments are then rebuilt
from the file (decays and g2 stay exact) but FLID bins already reported keep their segment tag.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from qd_bluesky.analysis import (
    DEFAULT_CHANNELS,
    AnalysisError,
    PhotonFileError,
    PhotonHdf5Reader,
    PhotonSettings,
    PhotonTable,
    ScalingModel,
    StreamUnits,
    estimate_decay_start,
    find_change_points,
    flid_accumulator,
    flid_lifetimes,
    gamma_ratio_from_flid,
    trace_accumulator,
)
from qd_bluesky.analysis._live_kernels import level_histograms_nogil

from ._background import Background
from ._biaslog import BiasLog
from ._bins import ColumnTable, WindowedBins
from ._levels import CONFIDENCE as LEVELS_CONFIDENCE
from ._levels import LevelTracker
from ._markerbias import CardMarkers, MarkerBias, SwitchingAnalysis, cv_corners
from ._segments import SegmentAccumulator, SegmentResult, SegmentTable
from ._streams import (
    BiasDependenceRow,
    DecayRow,
    FlidMapRow,
    G2Row,
    ReversibilityRow,
    ScalingRow,
    TraceRow,
    peak_field,
)

logger = logging.getLogger(__name__)

#: Detector channels of the card (two APDs behind a beam splitter); g2 is computed between them.
CHANNELS = DEFAULT_CHANNELS

#: Most photon rows whose columns wait in the background's queue (~11 bytes each); beyond,
#: the background reads its rows again from the file.
BACKGROUND_HELD_ROWS = 1 << 24

#: stream -> its new rows (dicts of its ``_streams`` row type; ``tomography``: a ColumnRows).
Rows = dict[str, Any]


@dataclass(frozen=True)
class AnalysisSettings(PhotonSettings):
    """How the live analyzer bins, calibrates and reports (recorded in the derived start).

    The bins and the IRF (``flid_bin_s``, ``trace_bin_s``, ``irf_fwhm_s``) and their defaults
    are the analysis's :class:`~qd_bluesky.analysis.PhotonSettings`.

    Attributes
    ----------
    trace_event_s
        Data time per ``trace`` event.
    calibration_photons
        Rows of the file (from the first) whose decay gives the FLID's decay start and
        background (all rows if fewer).
    step_rows
        Most rows read and analysed in one step; bounds the time a step holds a worker (and
        the memory of one read).
    window_s
        Data time per accumulator window (bounds the FLID's memory, see ``_bins``).
    flid_map_bins
        (intensity, lifetime) bins of the FLID occurrence map.
    state_tolerance
        Relative intensity departure at which a charge state stops following Eq. 1-2.
    start_window_v
        Bias window at the start of each cycle of a continuous run (the leading FLID bins
        within this of the cycle's first bin) whose intensity and lifetime go into the
        ``reversibility`` stream.
    confidence
        Confidence of the change-point test behind the ``levels`` and ``blinking`` streams
        (one of the calibrated 0.69, 0.90, 0.95, 0.99).
    """

    trace_event_s: float = 1.0
    calibration_photons: int = 50_000
    step_rows: int = 1 << 18
    window_s: float = 60.0
    flid_map_bins: tuple[int, int] = (40, 60)  # not square: Tiled names dims by size
    state_tolerance: float = 0.1
    start_window_v: float = 0.2
    confidence: float = LEVELS_CONFIDENCE

    def __post_init__(self) -> None:
        for name in ("flid_bin_s", "trace_bin_s", "trace_event_s", "irf_fwhm_s", "window_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.calibration_photons < 1 or self.step_rows < 1:
            raise ValueError("calibration_photons and step_rows must be at least 1")
        events = self.trace_event_s / self.trace_bin_s
        if abs(events - round(events)) > 1e-9 * events:
            raise ValueError(
                f"trace_event_s ({self.trace_event_s}) must be a whole number of trace bins "
                f"({self.trace_bin_s})"
            )
        # The change-point search's own check: a confidence it has critical values for.
        find_change_points(np.zeros(0, dtype=np.int64), self.confidence)

    @property
    def trace_bins_per_event(self) -> int:
        return round(self.trace_event_s / self.trace_bin_s)

    def metadata(self) -> dict[str, Any]:
        """The ``qd_analysis`` entry of the derived start document (without version/replay)."""
        return {
            "schema": 1,
            "flid_bin_ms": self.flid_bin_s * 1e3,
            "trace_bin_ms": self.trace_bin_s * 1e3,
            "trace_event_s": self.trace_event_s,
            "irf_fwhm_ns": self.irf_fwhm_s * 1e9,
            "calibration_photons": self.calibration_photons,
            "settings": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
            },
        }


@dataclass(frozen=True)
class Calibration:
    """Decay start and flat background of the first rows, for the FLID lifetimes."""

    photons: int
    decay_start_s: float
    background_cps: float
    irf_fwhm_s: float
    problem: str | None = None


class RunAnalysis:
    """Trace, FLID, per-segment decays and g2 of one raw run, fed row range by row range.

    Parameters
    ----------
    settings
        Binning and calibration.
    continuous
        True for a CV scan (``segments="continuous"``): the markers still cut segments (one per
        cycle, or one for the whole scan), the run's gammaA/gamma0 comes from all its FLID
        bins, and a ``tomography`` stream assigns them charge states.
    threaded, nice, wake
        The per-segment decays and g2 and the levels run in a background thread (else inline,
        in the same order, with the same results), ``nice`` steps below the caller's
        priority; ``wake()`` is called when it has rows to hand out or has run dry.
    markers
        What the potentiostat was told, for the card's marker records (``/user/markers``):
        ``{"channel": 1, "cv": {"start", "vertex", "end", "rate", "cycles"}}`` (each
        segment's CV, used when the file has no ``/user/bias``) and/or ``"switching":
        {"period_s", "bin_s"}`` (the ``switching`` streams). None: markers unused.
    """

    def __init__(
        self,
        settings: AnalysisSettings,
        *,
        continuous: bool = False,
        threaded: bool = True,
        nice: int = 0,
        wake: Callable[[], None] | None = None,
        markers: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._marker_program = dict(markers or {})
        self._switching: SwitchingAnalysis | None = None
        self.continuous = continuous
        self._threaded = threaded
        self._nice = nice
        self._wake = wake
        # The per-segment decays and g2 and the levels run behind (see _background); their
        # rows wait in the outbox until the next step hands them out.
        self._background: Background | None = None
        self._outbox: list[tuple[str, list]] = []
        # Rows whose photons were handed to the background, and those it has taken (one
        # writer each, so no lock): their difference is what its queue holds.
        self._held_in = 0
        self._held_out = 0
        self._background_reader: PhotonHdf5Reader | None = None
        self._levels_bias_log: BiasLog | MarkerBias | None = None
        self.segments = SegmentTable()
        self.path: str | None = None
        #: Rows that the documents say exist, and rows read and analysed.
        self.rows_announced = 0
        self.rows_done = 0
        self.notes: list[str] = []
        self._reader: PhotonHdf5Reader | None = None
        self._bias_log: BiasLog | MarkerBias | None = None
        self.units: StreamUnits | None = None
        self.t0_ticks: int | None = None
        self.photons = 0
        self._last_ticks: int | None = None
        self._trace: WindowedBins | None = None
        self._flid: WindowedBins | None = None
        self._coarse_bin_s = math.nan  # of the FLID's microtime histograms
        self._calibrating: SegmentAccumulator | None = None
        self.calibration: Calibration | None = None
        self._segment_acc: dict[int, SegmentAccumulator] = {}
        self._segments_reported = 0
        #: Per reported segment, what the bias_dependence stream needs (the histograms are
        #: dropped: a 540-cycle run would hold 100 MB of them).
        self.segment_summaries: list[dict[str, float]] = []
        # Row of the photon at each FLID bin's centre, for bins from `_centre_base` on.
        self._centre_rows = np.zeros(0, dtype=np.int64)
        self._centre_ticks = np.zeros(0, dtype=np.int64)  # their timestamps (marker bias)
        self._centre_base = 0
        # Every FLID bin reported so far, as compact columns (for the at-stop streams).
        self._flid_columns = ColumnTable()
        self._trace_events = 0
        self._warned_late = False
        # Levels (change points) found while the run is recorded; None after a failure.
        self._levels: LevelTracker | None = None

    # -- what the documents say --------------------------------------------------------------

    def set_path(self, path: str | os.PathLike[str]) -> None:
        """The photon file (from the stream_resource of the timestamps key)."""
        path = os.fspath(path)
        if self.path is not None and os.path.abspath(path) != os.path.abspath(self.path):
            raise AnalysisError(
                f"the photons of one run span two files ({self.path} and {path}): not supported"
            )
        self.path = path

    def announce(self, stop: int) -> None:
        """Rows ``[0, stop)`` exist (from a stream_datum's ``indices.stop``)."""
        self.rows_announced = max(self.rows_announced, int(stop))

    def add_marker(self, row: int, bias_v: float, seq: int) -> None:
        """A segment starts at photon ``row`` (a marker event), at bias ``bias_v``.

        Continuous runs have markers too (one per CV cycle in ``bias_cycling``): they cut
        segments alike; only the bias of each photon comes from the file.
        """
        k = self.segments.add(row, bias_v, seq)
        if row < self.rows_done:
            self._late_marker(k, row)

    def _late_marker(self, k: int, row: int) -> None:
        """A marker for rows already read (the contract promises otherwise): re-read them."""
        if not self._warned_late:
            self._warned_late = True
            self._note(
                f"step marker for row {row} came after its photons were read; FLID bins "
                "already reported keep their segment tags"
            )
        if self._segments_reported and k <= self._segments_reported:
            raise AnalysisError(
                f"step marker for row {row} falls inside segment {k - 1}, which was already "
                "reported: the markers came out of order"
            )
        # Segments from k - 1 on are rebuilt from the file, split at the new marker.
        if self._background is not None:
            self._background.wait()
        for j in [j for j in self._segment_acc if j >= k - 1]:
            del self._segment_acc[j]
        first = self.segments[k - 1].row if k >= 1 else row
        for seg, a, b in self.segments.pieces(first, self.rows_done):
            if seg >= 0:
                self._accumulator(seg).add(*_columns(self._read(a, b)))

    @property
    def has_work(self) -> bool:
        """Rows announced but not yet read."""
        return self.rows_done < self.rows_announced

    # -- reading and accumulating ------------------------------------------------------------

    def _open(self) -> None:
        if self.path is None:
            raise AnalysisError("photon rows were announced before their stream_resource")
        reader = PhotonHdf5Reader(self.path)
        self._reader = reader
        self.units = StreamUnits(
            reader.macrotime_unit_s,
            reader.microtime_unit_s,
            reader.microtime_bins,
            reader.rep_rate_hz,
            reader.mode,
        )
        self._bias_log = BiasLog.open(self.path)
        self._levels_bias_log = BiasLog.open(self.path)
        self._open_markers()
        self._background = Background(
            threaded=self._threaded, wake=self._wake_if_ready, nice=self._nice
        )

    def _open_markers(self) -> None:
        """The card's marker records: each photon's bias without ``/user/bias``, switching."""
        program = self._marker_program
        channel = int(program.get("channel", 1))
        cv, switching = program.get("cv"), program.get("switching")
        unit = self.units.macrotime_unit_s
        if cv is not None and self._bias_log is None:
            corners = cv_corners(cv["start"], cv["vertex"], cv["end"], cv["cycles"])
            logs = [CardMarkers.open(self.path, channel) for _ in range(2)]
            if logs[0] is not None and logs[1] is not None:
                self._bias_log, self._levels_bias_log = (
                    MarkerBias(log, lambda: self.segments.starts, corners, cv["rate"], unit)
                    for log in logs
                )
            else:
                for log in logs:
                    if log is not None:
                        log.close()
        if switching is not None:
            markers = CardMarkers.open(self.path, channel)
            if markers is None:
                self._note("no marker records (/user/markers) in the file: no switching streams")
            else:
                self._switching = SwitchingAnalysis(
                    markers, switching["period_s"], switching.get("bin_s", 0.0), unit
                )

    def _start_bins(self, first_ticks: int) -> None:
        """Align the trace and FLID bins to the first photon, in windows of ``window_s``."""
        s, u = self.settings, self.units
        self.t0_ticks = first_ticks
        n_ch = max(CHANNELS) + 1
        window_events = max(1, round(s.window_s / s.trace_event_s))
        self._trace = WindowedBins(
            lambda t0: trace_accumulator(u, s.trace_bin_s, t0_ticks=t0, n_channels=n_ch),
            t0_ticks=first_ticks,
            window_bins=window_events * s.trace_bins_per_event,
        )
        self._flid = WindowedBins(
            lambda t0: flid_accumulator(u, s.flid_bin_s, t0_ticks=t0, n_channels=n_ch),
            t0_ticks=first_ticks,
            window_bins=round(window_events * s.trace_event_s / s.flid_bin_s),
        )
        if u.pulsed:
            self._coarse_bin_s = self._flid.accumulator.coarse_bin_s
        self._levels = LevelTracker(
            first_ticks,
            u.macrotime_unit_s,
            self._level_lifetimes if u.pulsed else None,
            confidence=s.confidence,
        )
        if self._flid.window_bins is None or self._trace.window_bins is None:
            logger.debug("bins are not whole numbers of ticks: one window for the whole run")

    def _read(self, a: int, b: int):
        table = self._reader.read(a, b)
        if len(table) != b - a:
            # Non-photon records in the file: row numbers and photon positions part ways.
            raise AnalysisError(
                f"{self.path}: rows {a}:{b} hold {b - a - len(table)} non-photon records; "
                "the analyzer needs one photon per row"
            )
        return table

    def _accumulator(self, k: int) -> SegmentAccumulator:
        acc = self._segment_acc.get(k)
        if acc is None:
            acc = SegmentAccumulator(k, self.segments[k].bias_v, self.units, CHANNELS)
            self._segment_acc[k] = acc
        return acc

    def step(self, *, final: bool = False) -> Rows:
        """Read and analyse up to ``step_rows`` announced rows; return the rows now final.

        With ``final`` (the raw run has stopped) and nothing left to read, everything still
        open is closed: the last trace event, the last FLID bins, the last segment.
        """
        out: Rows = defaultdict(list)
        if self._reader is None:
            if self.rows_announced == 0:
                return out  # no photons (yet): nothing to open, nothing to report
            self._open()
        if self.has_work:
            self._advance(min(self.rows_announced, self.rows_done + self.settings.step_rows))
        final = final and not self.has_work
        if self._reader is None:
            return out
        self._calibrate(final)
        self._report_trace(out, final)
        self._report_flid(out, final)
        self._report_levels(final)
        self._report_segments(final)
        self._take_outbox(out)
        return out

    @property
    def has_output(self) -> bool:
        """Rows of the background's finished jobs wait to be handed out."""
        return bool(self._outbox)

    @property
    def behind(self) -> int:
        """Background jobs (decays, g2, levels) not yet run."""
        return 0 if self._background is None else self._background.pending

    def abandon_background(self) -> None:
        """Drop the background jobs not started; the next step or finish raises."""
        if self._background is not None:
            self._background.close()

    def _wake_if_ready(self) -> None:
        # after a background job: rows to hand out, or nothing left to wait for
        if self._wake is not None and (self._outbox or self._background.pending == 0):
            self._wake()

    def _take_outbox(self, out: Rows) -> None:
        if self._background is not None:
            self._background.check()
        while self._outbox:
            stream, rows = self._outbox.pop(0)
            out[stream].extend(rows)

    def _behind(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` in the background, after the jobs before it."""
        self._background.submit(job, *args)

    def _advance(self, target: int) -> None:
        reader = self._reader
        if reader.rows < target and reader.refresh() < target:
            raise PhotonFileError(
                self.path,
                f"the documents announce {target} photon rows but the file holds {reader.rows}",
            )
        n_cal = self.settings.calibration_photons
        start = self.rows_done
        cuts = sorted({start, target, *([n_cal] if start < n_cal < target else [])})
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            for seg, a, b in self.segments.pieces(lo, hi):
                table = self._read(a, b)
                if not len(table):
                    continue
                m = table.macrotime
                if self.t0_ticks is None:
                    self._start_bins(int(m[0]))
                if self._last_ticks is not None and m[0] < self._last_ticks:
                    raise AnalysisError(
                        f"{self.path}: photons out of time order at row {a} "
                        f"(macrotime {int(m[0])} after {self._last_ticks})"
                    )
                self._last_ticks = int(m[-1])
                self.photons += len(table)
                self._trace.add(m, table.microtime, table.channel)
                self._flid.add(m, table.microtime, table.channel)
                self._note_centres(m, a)
                if self._switching is not None:
                    self._switching.add(a, m, table.microtime)
                if a < n_cal and self.units.pulsed:
                    if self._calibrating is None:
                        self._calibrating = SegmentAccumulator(
                            -1, math.nan, self.units, CHANNELS, with_g2=False
                        )
                    self._calibrating.add(*_columns(table))
                # The photons go to the background with the rows; far behind, it reads them
                # again from the file rather than holding them.
                held = self._held_in - self._held_out < BACKGROUND_HELD_ROWS
                if held:
                    self._held_in += b - a
                self._behind(self._add_behind, seg, a, b, _columns(table) if held else None)
        self.rows_done = target

    def _add_behind(self, seg: int, a: int, b: int, columns: tuple | None) -> None:
        """(Background) the levels' and the segment's share of rows ``a:b``."""
        if columns is None:
            if self._background_reader is None:
                self._background_reader = PhotonHdf5Reader(self.path)
            reader = self._background_reader
            if reader.rows < b:
                reader.refresh()
            columns = _columns(reader.read(a, b))
        else:
            self._held_out += b - a
        if self._levels is not None:
            self._levels.add(columns[0], columns[1])
        if seg >= 0:
            self._accumulator(seg).add(*columns)

    def _note_centres(self, m: NDArray, first_row: int) -> None:
        """Rows of the photons at the centres of the FLID bins that end within ``m``."""
        f = self._flid
        known = self._centre_base + len(self._centre_rows)
        last = math.floor((int(m[-1]) - f.t0_ticks) / f.ticks_per_bin - 0.5)
        if last < known:
            return
        bins = np.arange(known, last + 1)
        centres = f.t0_ticks + (bins + 0.5) * f.ticks_per_bin
        index = np.minimum(np.searchsorted(m, centres, side="left"), len(m) - 1)
        self._centre_rows = np.concatenate((self._centre_rows, first_row + index))
        self._centre_ticks = np.concatenate((self._centre_ticks, m[index]))

    # -- calibration ----------------------------------------------------------------------------

    def _calibrate(self, final: bool) -> None:
        if self.calibration is not None or self.units is None or not self.units.pulsed:
            return
        acc = self._calibrating
        have = 0 if acc is None else acc.photons
        if have < self.settings.calibration_photons and not final:
            return
        irf = self.settings.irf_fwhm_s
        if acc is None or have == 0:
            self.calibration = Calibration(0, 0.0, 0.0, irf, "no photons")
            return
        cal = acc.result(irf_fwhm_s=irf)
        self._calibrating = None
        fit = cal.fit
        if fit is None:
            # Too few photons or no decay: the rise still places the FLID's start cell.
            try:
                start = estimate_decay_start(cal.decay, self.units.microtime_unit_s)
            except AnalysisError:
                start = 0.0
            problem = f"calibration on {have} photons: {cal.fit_problem}"
            self._note(problem)
            self.calibration = Calibration(have, start, 0.0, irf, problem)
            return
        flid_cal = acc.flid_calibration(fit, irf_fwhm_s=irf)
        self.calibration = Calibration(
            have,
            float(flid_cal.decay_start_s),
            float(flid_cal.background_cps),
            float(flid_cal.irf_fwhm_s),
        )

    # -- reporting ------------------------------------------------------------------------------

    def _report_trace(self, out: Rows, final: bool) -> None:
        t = self._trace
        if t is None:
            return
        per = self.settings.trace_bins_per_event
        # Events are complete once a photon lies beyond them; at the end, the partial last one.
        complete = (t.last_bin + 1 + per - 1) // per if final else t.last_bin // per
        bin_s = t.ticks_per_bin * self.units.macrotime_unit_s
        while self._trace_events < complete:
            k = self._trace_events
            (counts,) = t.take((k + 1) * per)  # all channels together
            out["trace"].append(TraceRow(time_s=k * per * bin_s, counts=counts.astype(np.int64)))
            self._trace_events += 1

    def _report_flid(self, out: Rows, final: bool) -> None:
        f = self._flid
        if f is None:
            return
        pulsed = self.units.pulsed
        if pulsed and self.calibration is None:
            return  # lifetimes wait for the calibration
        upto = f.last_bin + 1 if final else f.last_bin
        first = f.taken
        if upto <= first:
            return
        arrays = f.take(upto)
        counts = arrays[0].astype(np.int64)
        bin_s = f.ticks_per_bin * self.units.macrotime_unit_s
        if pulsed:
            cal = self.calibration
            tau, err = flid_lifetimes(
                arrays[1],
                coarse_bin_s=self._coarse_bin_s,
                period_s=1.0 / self.units.rep_rate_hz,
                decay_start_s=cal.decay_start_s,
                background_counts=cal.background_cps * bin_s,
                irf_fwhm_s=cal.irf_fwhm_s,
            )
        else:
            tau = err = np.full(len(counts), np.nan)
        # Segment and bias of the photon at each bin's centre (the last photon for a centre
        # beyond the data, which only the final bin can have).
        rows = np.full(upto - first, self.rows_done - 1, dtype=np.int64)
        have = self._centre_rows[first - self._centre_base : upto - self._centre_base]
        rows[: len(have)] = have
        segment = self.segments.segment_of(rows)
        if isinstance(self._bias_log, MarkerBias):
            ticks = np.full(len(rows), self._last_ticks, dtype=np.int64)
            ticks[: len(have)] = self._centre_ticks[
                first - self._centre_base : upto - self._centre_base
            ]
            self._bias_log.refresh()
            bias = self._bias_log.bias_at(rows, ticks)
        elif self._bias_log is not None:
            self._bias_log.refresh()
            bias = self._bias_log.bias_at(rows)
            self._bias_log.forget_before(int(rows[-1]))  # (the levels have their own log)
        else:
            bias = self.segments.bias_of(segment)
        # Forget the centre rows of the bins reported.
        drop = upto - self._centre_base
        self._centre_rows = self._centre_rows[drop:] if drop > 0 else self._centre_rows
        self._centre_ticks = self._centre_ticks[drop:] if drop > 0 else self._centre_ticks
        self._centre_base = max(self._centre_base, upto)
        columns = {
            "time_s": np.arange(first, upto) * bin_s,
            "intensity_cps": counts / bin_s,
            "lifetime_ns": tau * 1e9,
            "lifetime_stderr_ns": err * 1e9,
            "photons": counts,
            "segment": segment.astype(np.int64),
            "bias_v": bias,
        }
        self._flid_columns.append(columns)
        out["flid"].extend(_rows(columns))

    def _report_levels(self, final: bool) -> None:
        """Levels whose closing change point is found, and the blinking of closed segments.

        Searched in the background, on a copy of the segment starts known now. A failure here
        (a bug, a degenerate recording) must not cost the run its other streams: it becomes a
        note and the levels stop for this run (identically on replay).
        """
        if self._levels is None or (self.units.pulsed and self.calibration is None):
            return  # level lifetimes wait for the calibration
        self._behind(self._levels_behind, self.segments.copy(), final)

    def _levels_behind(self, segments: SegmentTable, final: bool) -> None:
        if self._levels is None:
            return
        new: dict[str, list] = defaultdict(list)
        try:
            self._levels.report(segments, self._level_bias, new, final=final)
        except Exception as exc:  # noqa: BLE001 - any failure of the levels is only a note
            logger.debug("levels failed", exc_info=True)
            self._note(f"no more levels in this run: {type(exc).__name__}: {exc}")
            self._levels = None
            return
        if self._levels_bias_log is not None:
            self._levels_bias_log.forget_before(self._levels.row0)
        self._outbox.extend(new.items())

    def _level_bias(self, rows: NDArray, ticks: NDArray) -> NDArray:
        """Bias of photon rows already read (timestamps ``ticks``): from the file's markers,
        else the segment's."""
        if isinstance(self._levels_bias_log, MarkerBias):
            self._levels_bias_log.refresh()
            return self._levels_bias_log.bias_at(rows, ticks)
        if self._levels_bias_log is not None:
            self._levels_bias_log.refresh()
            return self._levels_bias_log.bias_at(rows)
        return self.segments.bias_of(self.segments.segment_of(rows))

    def _level_lifetimes(
        self, photons: NDArray, durations_s: NDArray, microtime: NDArray
    ) -> tuple[NDArray, NDArray]:
        """FLID lifetimes of levels, with the calibration's decay start and background."""
        cal = self.calibration
        hist, coarse_bin_s = level_histograms_nogil(
            photons, microtime, self.units.microtime_unit_s, 1.0 / self.units.rep_rate_hz
        )
        return flid_lifetimes(
            hist,
            coarse_bin_s=coarse_bin_s,
            period_s=1.0 / self.units.rep_rate_hz,
            decay_start_s=cal.decay_start_s,
            background_counts=cal.background_cps * durations_s,
            irf_fwhm_s=cal.irf_fwhm_s,
        )

    def _report_segments(self, final: bool) -> None:
        """Hand the segments whose rows are all read to the background, for their fits."""
        while self._segments_reported < len(self.segments):
            k = self._segments_reported
            end = self.segments.end(k)
            if end is None:
                if not final:
                    return
                end = self.rows_done
            if self.rows_done < end:
                return
            self._behind(self._segment_behind, k)
            self._segments_reported += 1

    def _segment_behind(self, k: int) -> None:
        """(Background) segment ``k``'s fits, g2 and summary."""
        out: Rows = defaultdict(list)
        result = self._accumulator(k).result(irf_fwhm_s=self.settings.irf_fwhm_s)
        del self._segment_acc[k]
        if result.fit_problem:
            self._note(result.fit_problem)
        self.segment_summaries.append(
            {
                "segment": result.segment,
                "bias_v": result.bias_v,
                # tau(V): the mono-exponential lifetime at the static bias (as the
                # simulator's calibration defines it); the bi-exponential's dominant
                # component follows whichever state dominates a mixture.
                "tau_s": result.mono.tau_s[0] if result.mono is not None else math.nan,
                "intensity_cps": result.intensity_cps,
                "g2_zero": result.g2.g2_zero if result.g2 is not None else math.nan,
            }
        )
        if self.units.pulsed:  # T2 data have no decay histogram
            out["decay"].append(_decay_row(result, self.units))
        if result.g2 is not None:
            out["g2"].append(_g2_row(result))
        self._outbox.extend(out.items())

    def finish(self, early: Callable[[Rows], None] | None = None) -> Rows:
        """Read what is left, close everything and add the streams reported at stop.

        ``early`` receives the last trace and FLID rows before the wait for the background
        (decays, g2, levels), which may be behind.
        """
        out: Rows = defaultdict(list)
        while True:
            for key, rows in self.step(final=True).items():
                out[key].extend(rows)
            if not self.has_work:
                break
        if self._reader is None:
            return out
        if early is not None:
            early(out)
            out = defaultdict(list)
        self._background.wait()  # the last segments and levels
        self._take_outbox(out)
        self._report_at_stop(out)
        return out

    def _flid_table(self) -> dict[str, NDArray]:
        return self._flid_columns.columns()

    def _report_at_stop(self, out: Rows) -> None:
        flid = self._flid_table()
        pulsed = bool(flid) and self.units is not None and self.units.pulsed
        scaling, model = None, None
        if pulsed:
            out["flid_map"].append(self._flid_map(flid))
            ok = np.isfinite(flid["lifetime_ns"]) & (flid["intensity_cps"] > 0)
            if self.continuous:
                # The whole sweep: the estimator finds X0 and X- as density peaks on the Eq.
                # 1-2 lines, and the states of the sweep lie further down those lines. (The
                # seconds a sweep spends near 0 V alone hold too few X- visits.)
                near_zero = ok
                reference = "FLID bins of the CV scan"
            else:
                k = self.segments.reference()
                near_zero = None if k is None else ok & (flid["segment"] == k)
                reference = f"FLID bins of the 0 V segment {k}"
            if near_zero is not None:
                scaling, model = self._scaling(flid, near_zero, ok, reference)
                out["scaling"].append(scaling)
        if self.segment_summaries:
            out["bias_dependence"].extend(
                self._bias_dependence(self.segment_summaries, None if self.continuous else scaling)
            )
        if pulsed and self.continuous:
            out["tomography"] = self._tomography(flid, ok, model)  # paged, see ColumnRows
            out["reversibility"].extend(self._reversibility(flid))
        if self._switching is not None:
            cal = self.calibration
            table, response = self._switching.rows(
                self.units.microtime_unit_s if pulsed else None,
                cal.decay_start_s if cal is not None else math.nan,
            )
            out["switching"].extend(table)
            out["switching_response"].extend(response)

    def _reversibility(self, flid: dict[str, NDArray]) -> list[ReversibilityRow]:
        """Intensity and lifetime at the start of every cycle: does the dot come back to X0?

        Per segment (one per cycle in ``bias_cycling``), the leading FLID bins whose bias lies
        within ``start_window_v`` of the segment's first bin: their total photons over their
        time, and the photon-weighted mean of their lifetimes.
        """
        seg, bias = flid["segment"], flid["bias_v"]
        photons, life = flid["photons"], flid["lifetime_ns"]
        bin_s = self._flid.ticks_per_bin * self.units.macrotime_unit_s
        rows = []
        for k in range(len(self.segments)):
            a, b = np.searchsorted(seg, [k, k + 1])  # bins are in time order, so by segment
            if b <= a:
                continue
            away = np.flatnonzero(np.abs(bias[a:b] - bias[a]) > self.settings.start_window_v)
            stop = a + (int(away[0]) if away.size else b - a)
            n = photons[a:stop]
            tau = life[a:stop]
            ok = np.isfinite(tau)
            weight = n[ok].sum()
            rows.append(
                {
                    "segment": k,
                    "time_s": float(flid["time_s"][a]),
                    "bias_v": float(bias[a]),
                    "bins": int(stop - a),
                    "intensity_cps": float(n.sum() / ((stop - a) * bin_s)),
                    "lifetime_ns": float((n[ok] * tau[ok]).sum() / weight) if weight else math.nan,
                }
            )
        return rows

    def _bias_dependence(
        self, summaries: list[dict[str, float]], scaling: ScalingRow | None
    ) -> list[BiasDependenceRow]:
        """Lifetime and intensity per bias, and their ratios to the neutral exciton at 0 V.

        The reference is the paper's: the X0 state of the 0 V trace (its FLID cluster), so
        that the enhancement at -2 V reads tau(X0)/tau(-2 V) ~ 140 for qd1 and the intensity
        drop I(X0)/I(-2 V) ~ 25. Without an X0 cluster (too short a 0 V dwell) the whole 0 V
        segment is the reference, and ``reference_tau_ns`` says which was used.
        """
        k = self.segments.reference()
        ref = next((r for r in summaries if r["segment"] == k), None)
        nan = math.nan
        ref_tau = ref["tau_s"] * 1e9 if ref else nan
        ref_intensity = ref["intensity_cps"] if ref else nan
        if scaling is not None and math.isfinite(scaling["tau_x0_ns"]):
            ref_tau, ref_intensity = scaling["tau_x0_ns"], scaling["intensity_x0_cps"]
        rows = []
        for r in summaries:
            tau_ns = r["tau_s"] * 1e9
            rows.append(
                {
                    "segment": int(r["segment"]),
                    "bias_v": float(r["bias_v"]),
                    "lifetime_ns": tau_ns,
                    "intensity_cps": float(r["intensity_cps"]),
                    "enhancement": _ratio(ref_tau, tau_ns),
                    "intensity_drop": _ratio(ref_intensity, r["intensity_cps"]),
                    "reference_tau_ns": float(ref_tau),
                    "reference_intensity_cps": float(ref_intensity),
                    "g2_zero": float(r["g2_zero"]),
                }
            )
        return rows

    def _flid_map(self, flid: dict[str, NDArray]) -> FlidMapRow:
        n_i, n_t = self.settings.flid_map_bins
        ok = np.isfinite(flid["lifetime_ns"])
        inten, life = flid["intensity_cps"][ok], flid["lifetime_ns"][ok]
        i_max = float(inten.max()) if inten.size and inten.max() > 0 else 1.0
        t_max = float(life.max()) if life.size and life.max() > 0 else 1.0
        occ, ie, te = np.histogram2d(
            inten, life, bins=(n_i, n_t), range=((0.0, i_max), (0.0, t_max))
        )
        return {
            "occurrence": occ.astype(np.int64),
            "intensity_edges_cps": ie,
            "lifetime_edges_ns": te,
        }

    def _scaling(
        self, flid: dict[str, NDArray], near_zero: NDArray, ok: NDArray, reference: str
    ) -> tuple[ScalingRow, ScalingModel | None]:
        nan = math.nan
        row: ScalingRow = {
            "gamma_ratio": nan,
            "gamma_ratio_stderr": nan,
            "tau_x0_ns": nan,
            "intensity_x0_cps": nan,
            "tau_xm_ns": nan,
            "intensity_xm_cps": nan,
            "last_state_following_model": "",
        }
        try:
            est = gamma_ratio_from_flid(
                flid["intensity_cps"][near_zero], flid["lifetime_ns"][near_zero] * 1e-9
            )
            bg = self.calibration.background_cps if self.calibration else 0.0
            model = ScalingModel(est.r, est.x0[0], est.x0[1] - bg)
        except (AnalysisError, ValueError) as exc:
            self._note(f"no gammaA/gamma0 from the {reference}: {exc}")
            return row, None
        row.update(
            gamma_ratio=float(est.r),
            gamma_ratio_stderr=float(est.stderr),
            tau_x0_ns=est.x0[0] * 1e9,
            intensity_x0_cps=est.x0[1],
            tau_xm_ns=est.xm[0] * 1e9,
            intensity_xm_cps=est.xm[1],
        )
        last = model.last_state_following_model(
            flid["intensity_cps"][ok] - bg,
            flid["lifetime_ns"][ok] * 1e-9,
            self.settings.state_tolerance,
        )
        row["last_state_following_model"] = "" if last < 0 else model.labels[last]
        return row, model

    def _tomography(
        self, flid: dict[str, NDArray], ok: NDArray, model: ScalingModel | None
    ) -> ColumnRows:
        inten, life = flid["intensity_cps"][ok], flid["lifetime_ns"][ok]
        if model is None:
            states = np.full(inten.shape, -1, dtype=np.int64)
        else:
            bg = self.calibration.background_cps if self.calibration else 0.0
            states = model.assign(inten - bg, life * 1e-9, by="lifetime")
        return ColumnRows(
            {
                "time_s": flid["time_s"][ok],
                "bias_v": flid["bias_v"][ok],
                "intensity_cps": inten,
                "lifetime_ns": life,
                "charge_state": states.astype(np.int64),
            }
        )

    def memory(self) -> dict[str, int]:
        """What the analysis holds, for checks that it does not grow with the run's length.

        ``transient_bytes``: per-bin arrays of the trace and FLID windows not yet reported,
        the centre rows and bias markers still needed, the open segments' decay and g2
        histograms and the photons of the open levels; it stays bounded. ``results_bytes``:
        the compact per-bin FLID results kept for the at-stop streams (a few tens of bytes per
        20 ms bin). ``open_segments``: segment accumulators not yet reported.
        """
        windows = sum(b.nbytes for b in (self._trace, self._flid) if b is not None)
        logs = (self._bias_log, self._levels_bias_log)
        markers = sum(log.nbytes for log in logs if log is not None)
        open_segments = [*list(self._segment_acc.values()), self._calibrating]
        segments = sum(acc.nbytes for acc in open_segments if acc is not None)
        levels = 0 if self._levels is None else self._levels.nbytes
        return {
            "transient_bytes": windows + self._centre_rows.nbytes + markers + segments + levels,
            "results_bytes": self._flid_columns.nbytes,
            "open_segments": len(self._segment_acc),
        }

    def _note(self, text: str) -> None:
        logger.info("%s", text)
        self.notes.append(text)

    def close(self) -> None:
        """Stop the background and release the photon file."""
        if self._background is not None:
            self._background.close()
        handles = (
            self._reader,
            self._bias_log,
            self._levels_bias_log,
            self._background_reader,
            self._switching,
        )
        for handle in handles:
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - closing must not hide the real outcome
                    logger.debug("closing %s failed", self.path, exc_info=True)
        self._reader = self._bias_log = self._levels_bias_log = self._background_reader = None
        self._switching = None


def _columns(table: PhotonTable) -> tuple[NDArray, NDArray, NDArray]:
    return table.macrotime, table.microtime, table.channel


def _ratio(a: float, b: float) -> float:
    return a / b if (math.isfinite(a) and math.isfinite(b) and b != 0) else math.nan


class ColumnRows(Sequence):
    """Rows of equal-length columns, made into dicts only page by page.

    The at-stop ``tomography`` of a 3 h run has 540 000 rows; as a list of dicts it would
    cost half a gigabyte at the very end of the run.
    """

    def __init__(self, columns: dict[str, NDArray]) -> None:
        self._columns = columns
        self._n = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return _rows({k: v[i] for k, v in self._columns.items()})
        return _rows({k: v[i : i + 1] for k, v in self._columns.items()})[0]

    def pages(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """Consecutive lists of at most ``size`` row dicts."""
        for a in range(0, self._n, size):
            yield self[a : a + size]


def _rows(columns: dict[str, NDArray]) -> list[dict[str, Any]]:
    """Row dicts (Python scalars) from equal-length columns."""
    lists = {k: np.asarray(v).tolist() for k, v in columns.items()}
    n = len(next(iter(lists.values()))) if lists else 0
    return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def _decay_row(r: SegmentResult, units: StreamUnits) -> DecayRow:
    # Components as scalar fields: TiledWriter keeps arrays of <= 16 elements in the SQL
    # table as lists, which its SQLite storage refuses.
    nan = math.nan
    tau = [nan, nan]
    tau_err = [nan, nan]
    fraction = [nan, nan]
    model, background, start = "", nan, nan
    if r.fit is not None:
        f = r.fit
        for i in range(len(f.tau_s)):
            tau[i], tau_err[i], fraction[i] = (
                f.tau_s[i] * 1e9,
                f.tau_stderr_s[i] * 1e9,
                f.fraction[i],
            )
        model, background, start = f.model, f.background_fraction, f.shift_s * 1e9
    return {
        "segment": r.segment,
        "bias_v": r.bias_v,
        "photons": r.photons,
        "duration_s": r.duration_s,
        "intensity_cps": r.intensity_cps,
        "counts": np.asarray(r.decay, dtype=np.int64),
        "microtime_unit_ns": units.microtime_unit_s * 1e9,
        "model": model,
        "tau1_ns": tau[0],
        "tau2_ns": tau[1],
        "tau1_stderr_ns": tau_err[0],
        "tau2_stderr_ns": tau_err[1],
        "fraction1": fraction[0],
        "fraction2": fraction[1],
        "background_fraction": float(background),
        "decay_start_ns": float(start),
        "lifetime_ns": r.lifetime_s * 1e9,
        "lifetime_stderr_ns": r.lifetime_stderr_s * 1e9,
        "mean_lifetime_ns": r.mean_lifetime_s * 1e9,
        "mono_lifetime_ns": r.mono.tau_s[0] * 1e9 if r.mono is not None else nan,
        "mono_lifetime_stderr_ns": r.mono.tau_stderr_s[0] * 1e9 if r.mono is not None else nan,
    }


def _g2_row(r: SegmentResult) -> G2Row:
    g = r.g2
    row: dict[str, Any] = {
        "segment": r.segment,
        "bias_v": r.bias_v,
        "g2_zero": float(g.g2_zero),
        "g2_zero_stderr": float(g.g2_zero_stderr),
        "period_ns": float(g.period_s) * 1e9,
    }
    # Peak areas as scalar fields (see _decay_row).
    for k, area in zip(g.peak_index.tolist(), g.peak_areas.tolist(), strict=True):
        row[peak_field(k)] = int(area)
    row.update(
        tau_s=np.asarray(g.tau_s, dtype=np.float64),
        counts=np.asarray(g.counts, dtype=np.int64),
        g2=np.asarray(g.g2, dtype=np.float64),
    )
    return cast(G2Row, row)  # the peak fields are named at run time
