"""Intensity levels of a run while it is recorded: change points found window by window.

The photons (all detectors merged) are cut into windows of ``window_s`` on the absolute
macrotime clock from the run's first photon, and at every segment start (a step marker). The
change-point search (:func:`~qd_bluesky.analysis.find_change_points`) runs over the photons of
the levels still open plus the new windows; the levels closed by all but the last change point
it finds are final and reported, and the last level closed by a change point and the open one
after it are searched again with the next window (so a change point near a window's end is
placed with the photons after it). Every decision depends on the photons' times and row
numbers only, never on how the rows were split into reads, so the live run and its replay
report the same levels.

* A window is searched once a photon beyond it has been read, and only when its new photons
  are at least as many as those carried (so a long stable level costs O(N log N), not O(N**2));
* a segment start closes every level (levels never span two segments); the end of the data
  closes the last one;
* memory stays bounded: when more than ``max_open_photons`` photons are carried (a level
  stable for many seconds), the levels are closed at the window's end. Such a cut is not a
  change point: its two sides fall in one group, so the blinking statistics do not see it.

Per segment, once its last level is closed, the levels are grouped (agglomerative, BIC:
:func:`~qd_bluesky.analysis.group_levels`) and give one ``blinking`` row: group time fractions,
switching rate, on/off dwell power laws (:mod:`qd_bluesky.analysis._dwell`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from qd_bluesky.analysis import (
    dwell_times,
    find_change_points,
    fit_power_law,
    grouped_levels,
    power_law_summary,
    segment_blinking,
)

from ._segments import SegmentTable
from ._streams import BlinkingRow, LevelRow

#: Confidence of the change-point test.
CONFIDENCE = 0.95
#: Data time per window of the change-point search.
WINDOW_S = 1.0
#: Most photons carried into the next window before the open levels are cut (10 bytes each).
MAX_OPEN_PHOTONS = 1 << 19

#: (photons, durations_s, microtimes of those photons) -> lifetime and its stderr per level, s.
Lifetimes = Callable[[NDArray, NDArray, NDArray], tuple[NDArray, NDArray]]


class LevelTracker:
    """Levels and per-segment blinking of one run's photons, fed in read order.

    Parameters
    ----------
    t0_ticks
        Macrotime of the run's first photon (the windows' and the reported times' origin).
    macrotime_unit_s
        Duration of one tick.
    lifetimes
        Lifetime of each level from its microtimes; None: NaN (T2 data).
    confidence, window_s, max_open_photons
        See the module docstring; default :data:`CONFIDENCE`, :data:`WINDOW_S`,
        :data:`MAX_OPEN_PHOTONS`.
    """

    def __init__(
        self,
        t0_ticks: int,
        macrotime_unit_s: float,
        lifetimes: Lifetimes | None,
        *,
        confidence: float | None = None,
        window_s: float | None = None,
        max_open_photons: int | None = None,
    ) -> None:
        self.t0_ticks = int(t0_ticks)
        self.unit_s = float(macrotime_unit_s)
        self.lifetimes = lifetimes
        self.confidence = CONFIDENCE if confidence is None else confidence
        self.max_open_photons = int(
            MAX_OPEN_PHOTONS if max_open_photons is None else max_open_photons
        )
        self._window_ticks = (WINDOW_S if window_s is None else window_s) / macrotime_unit_s
        self._ticks = np.zeros(0, dtype=np.int64)
        self._micro = np.zeros(0, dtype=np.uint16)
        # Chunks added since the last report, joined to the buffer once per report (joining at
        # every add copied the whole buffer each time: quadratic in a window's photons).
        self._pending: list[tuple[NDArray, NDArray]] = []
        #: Row of the buffer's first photon; with ``_anchored`` that photon closed the last
        #: reported level (the open level's time starts there; its photons after it).
        self.row0 = 0
        self._anchored = False
        self._searched = 0  # buffer photons already searched by an earlier window
        self._window: int | None = None  # index of the next window to search
        # The current segment's reported levels (for its blinking row).
        self._segment: int | None = None
        self._bias_v = math.nan
        self._seg_start: list[float] = []
        self._seg_end: list[float] = []
        self._seg_photons: list[int] = []
        # What the current report() call works with.
        self._segments = SegmentTable()
        self._bias_at: Callable[[NDArray, NDArray], NDArray] = lambda rows, ticks: rows
        self._out: dict[str, list] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the photons held (bounded by ``max_open_photons`` plus a window)."""
        pending = sum(t.nbytes + u.nbytes for t, u in list(self._pending))
        return self._ticks.nbytes + self._micro.nbytes + pending

    def add(self, macrotime: NDArray, microtime: NDArray | None) -> None:
        """The next photons in row order."""
        if len(macrotime) == 0:
            return
        micro = (
            np.zeros(len(macrotime), dtype=np.uint16) if microtime is None else microtime
        ).astype(np.uint16, copy=False)
        self._pending.append((np.asarray(macrotime, dtype=np.int64), micro))

    def _join(self) -> None:
        if self._pending:
            chunks = [(self._ticks, self._micro), *self._pending]
            self._pending = []
            self._ticks = np.concatenate([t for t, _ in chunks])
            self._micro = np.concatenate([u for _, u in chunks])

    def report(
        self,
        segments: SegmentTable,
        bias_at: Callable[[NDArray, NDArray], NDArray],
        out: dict[str, list],
        *,
        final: bool,
    ) -> None:
        """Search every complete window and append the final levels and blinking rows.

        ``bias_at`` gives the bias of photon rows; all rows in the buffer have been read (and
        their markers are known). With ``final`` the data have ended: everything is closed.
        """
        if not final and self._nothing_to_report(segments):
            return
        self._segments, self._bias_at, self._out = segments, bias_at, out
        self._join()
        try:
            self._report_windows(final)
        finally:
            self._out = {}  # the caller's rows are not kept

    def _nothing_to_report(self, segments: SegmentTable) -> bool:
        """True when :meth:`_report_windows` would do nothing: no photon beyond the current
        window and no segment start among the photons held (checked without joining them)."""
        if not self._pending or self._window is None:
            return False
        n = len(self._ticks) + sum(len(t) for t, _ in self._pending)
        start = next((r for r in segments.starts if r > self.row0), None)
        if start is not None and start - self.row0 <= n:
            return False
        boundary = self.t0_ticks + math.ceil((self._window + 1) * self._window_ticks)
        return int(self._pending[-1][0][-1]) < boundary

    def _report_windows(self, final: bool) -> None:
        segments = self._segments
        while True:
            n = len(self._ticks)
            if n > self._searched:
                if self._window is None:
                    self._window = self._window_of(self._searched)
                boundary = self.t0_ticks + math.ceil((self._window + 1) * self._window_ticks)
                time_cut = int(np.searchsorted(self._ticks, boundary, side="left"))
            else:
                time_cut = n
            start = next((r for r in segments.starts if r > self.row0), None)
            seg_cut = n + 1 if start is None else start - self.row0
            if seg_cut <= n and seg_cut <= time_cut:
                self._close(seg_cut)
                self._close_segment()
                self._drop(seg_cut, anchored=False)
                continue
            if time_cut < n:  # a photon beyond the window has been read: the window is complete
                next_window = self._window_of(time_cut)  # empty windows in between: skipped
                fresh = time_cut - self._searched
                if self._searched > self.max_open_photons:
                    self._close(time_cut)
                    self._drop(time_cut - 1, anchored=True)
                elif fresh > 0 and fresh >= self._searched:
                    self._search(time_cut)
                self._window = next_window
                continue
            if final:
                self._close(n)
                self._close_segment()
                self._drop(n, anchored=False)
            return

    def _window_of(self, i: int) -> int:
        return math.floor((int(self._ticks[i]) - self.t0_ticks) / self._window_ticks)

    def _drop(self, i: int, *, anchored: bool) -> None:
        """Forget the buffer before photon ``i``, which becomes the first (an anchor or not)."""
        self._ticks = self._ticks[i:]
        self._micro = self._micro[i:]
        self.row0 += i
        self._anchored = anchored
        self._searched = max(self._searched - i, 0)
        if not anchored:
            self._window = None

    def _search(self, cut: int) -> None:
        """Search the buffer's first ``cut`` photons; report the levels of all but the last
        change point and carry the rest (from that change point's photon, the new anchor)."""
        found = find_change_points(self._ticks[:cut], self.confidence).index
        self._searched = cut
        self._report(found[:-1])
        if len(found) >= 2:
            self._drop(int(found[-2]), anchored=True)

    def _close(self, cut: int) -> None:
        """Report every level of the buffer's first ``cut`` photons (the last one ends there)."""
        if cut <= (1 if self._anchored else 0):
            return  # no photon after the anchor
        found = find_change_points(self._ticks[:cut], self.confidence).index
        self._searched = max(self._searched, cut)
        self._report(np.append(found, cut - 1))

    def _report(self, ends: NDArray) -> None:
        """Report the levels ending with the buffer's photons ``ends`` (from its start)."""
        first = 0 if self._anchored else -1  # the photon before the first level's photons
        ends = np.unique(ends[ends > first])
        if len(ends):
            self._levels(np.concatenate(([first], ends)))

    def _levels(self, bounds: NDArray) -> None:
        """Report the levels with photons ``bounds[i] + 1 .. bounds[i + 1]`` of the buffer."""
        ticks, unit = self._ticks, self.unit_s
        lo, hi = bounds[:-1], bounds[1:]
        photons = hi - lo
        start = (ticks[np.maximum(lo, 0)] - self.t0_ticks) * unit
        end = (ticks[hi] - self.t0_ticks) * unit
        duration = np.maximum(end - start, unit)  # photons sharing one tick
        if self.lifetimes is not None:
            micro = self._micro[lo[0] + 1 : hi[-1] + 1]
            tau, err = self.lifetimes(photons, duration, micro)
        else:
            tau = err = np.full(len(photons), np.nan)
        rows = self.row0 + (lo + 1 + hi) // 2  # each level's middle photon
        segments, out = self._segments, self._out
        segment = int(segments.segment_of(rows[:1])[0])
        if segment != self._segment:  # a new segment (or a late marker split the last one)
            self._close_segment()
            self._segment = segment
            self._bias_v = float(segments.bias_of(np.array([segment]))[0])
        bias = self._bias_at(rows, ticks[(lo + 1 + hi) // 2])
        for i in range(len(photons)):
            out["levels"].append(
                LevelRow(
                    start_s=float(start[i]),
                    end_s=float(end[i]),
                    photons=int(photons[i]),
                    intensity_cps=float(photons[i] / duration[i]),
                    lifetime_ns=float(tau[i] * 1e9),
                    lifetime_stderr_ns=float(err[i] * 1e9),
                    segment=segment,
                    bias_v=float(bias[i]),
                )
            )
        self._seg_start.extend(start.tolist())
        self._seg_end.extend(end.tolist())
        self._seg_photons.extend(photons.tolist())

    def _close_segment(self) -> None:
        if self._seg_photons:
            self._out["blinking"].append(
                blinking_row(
                    self._segment if self._segment is not None else -1,
                    self._bias_v,
                    np.array(self._seg_start),
                    np.array(self._seg_end),
                    np.array(self._seg_photons, dtype=np.int64),
                    self.unit_s,
                    self.confidence,
                )
            )
        self._segment = None
        self._bias_v = math.nan
        self._seg_start, self._seg_end, self._seg_photons = [], [], []


def blinking_row(
    segment: int,
    bias_v: float,
    start_s: NDArray,
    end_s: NDArray,
    photons: NDArray,
    unit_s: float,
    confidence: float = CONFIDENCE,
) -> BlinkingRow:
    """Group fractions, switching rate and dwell power laws of one segment's levels."""
    lv = grouped_levels(start_s, end_s, photons, min_duration_s=unit_s, confidence=confidence)
    duration = float(end_s[-1] - start_s[0])
    n_groups = len(lv.group_intensity_cps)
    nan = math.nan
    threshold, switching, off_fraction = nan, 0.0, 0.0
    on = off = power_law_summary(None, 0, math.nan)
    if n_groups >= 2 and duration > 0:
        threshold, on_s, off_s = dwell_times(lv)
        per = segment_blinking(lv, [start_s[0], end_s[-1]], threshold)
        switching = float(per.switching_rate_hz[0])
        below = lv.group_intensity_cps <= threshold
        off_fraction = float(per.time_fraction[0][below].sum())
        on = power_law_summary(fit_power_law(on_s, truncated=False), len(on_s), math.nan)
        off = power_law_summary(fit_power_law(off_s, truncated=False), len(off_s), math.nan)
    fraction = lv.group_time_fraction
    return BlinkingRow(
        segment=int(segment),
        bias_v=float(bias_v),
        duration_s=duration,
        levels=len(lv),
        groups=n_groups,
        threshold_cps=float(threshold),
        bright_intensity_cps=float(lv.group_intensity_cps[0]),
        dim_intensity_cps=float(lv.group_intensity_cps[-1]),
        bright_fraction=float(fraction[0]),
        dim_fraction=float(fraction[-1]) if n_groups >= 2 else 0.0,
        off_fraction=off_fraction,
        switching_rate_hz=switching,
        on_alpha=float(on["alpha"]),
        on_alpha_stderr=float(on["alpha_stderr"]),
        on_xmin_s=float(on["xmin_s"]),
        on_dwells=int(on["dwells"]),
        off_alpha=float(off["alpha"]),
        off_alpha_stderr=float(off["alpha_stderr"]),
        off_xmin_s=float(off["xmin_s"]),
        off_dwells=int(off["dwells"]),
    )
