"""Segments of a run: photon rows between step markers, and what is accumulated per segment.

A marker (an event of the raw run's marker stream) says "segment k starts at photon row r":
segment k holds rows ``[r_k, r_{k+1})``, the last one runs to the end of the data, and rows
before the first marker belong to no segment (-1). Markers may arrive in any order relative to
each other; they are kept sorted by row (ties by their event's ``seq_num``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from qd_bluesky.analysis import (
    AnalysisError,
    DecayFit,
    G2Result,
    StreamUnits,
    StretchAccumulator,
)

#: A segment whose bias readback lies within this of 0 V is the 0 V reference (readback noise
#: of the potentiostat is a few mV).
ZERO_BIAS_TOLERANCE_V = 0.025


@dataclass(frozen=True, order=True)
class Marker:
    """Start of a segment: its first photon row and the settled bias readback."""

    row: int
    seq: int
    bias_v: float


class SegmentTable:
    """The segment starts known so far, sorted by photon row."""

    def __init__(self) -> None:
        self._markers: list[Marker] = []

    def add(self, row: int, bias_v: float, seq: int) -> int:
        """Record a marker; return the index of the segment it starts."""
        if row < 0:
            raise AnalysisError(f"a step marker names photon row {row}; rows count from 0")
        marker = Marker(int(row), int(seq), float(bias_v))
        bisect.insort(self._markers, marker)
        return self._markers.index(marker)

    def __len__(self) -> int:
        return len(self._markers)

    def copy(self) -> SegmentTable:
        """The markers known now (for work that runs behind while more come)."""
        table = SegmentTable()
        table._markers = list(self._markers)
        return table

    def __getitem__(self, k: int) -> Marker:
        return self._markers[k]

    @property
    def starts(self) -> list[int]:
        return [m.row for m in self._markers]

    def end(self, k: int) -> int | None:
        """First row after segment ``k``, or None while no later marker is known."""
        return self._markers[k + 1].row if k + 1 < len(self._markers) else None

    def segment_of(self, rows: np.ndarray) -> np.ndarray:
        """Segment index of each row (-1 before the first marker)."""
        starts = np.array(self.starts, dtype=np.int64)
        return np.searchsorted(starts, np.asarray(rows, dtype=np.int64), side="right") - 1

    def bias_of(self, segments: np.ndarray) -> np.ndarray:
        """Bias readback of each segment index (NaN for -1)."""
        bias = np.array([m.bias_v for m in self._markers] + [math.nan], dtype=np.float64)
        return bias[np.asarray(segments)]  # -1 picks the trailing NaN

    def pieces(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """Split rows ``[start, stop)`` at the known segment starts: ``(segment, a, b)``."""
        starts = self.starts
        k = bisect.bisect_right(starts, start) - 1
        a = start
        while a < stop:
            # the next start strictly after a (several markers may share a row)
            j = bisect.bisect_right(starts, a)
            b = min(stop, starts[j]) if j < len(starts) else stop
            k = j - 1
            yield k, a, b
            a = b

    def reference(self) -> int | None:
        """The 0 V segment (the first whose bias is within ``ZERO_BIAS_TOLERANCE_V``), or None."""
        for k, m in enumerate(self._markers):
            if abs(m.bias_v) <= ZERO_BIAS_TOLERANCE_V:
                return k
        return None


@dataclass(frozen=True)
class SegmentResult:
    """What the derived run reports for one segment at its end."""

    segment: int
    bias_v: float
    photons: int
    duration_s: float
    decay: np.ndarray
    #: The project's fit: bi-exponential where the data demand it, else mono-exponential.
    fit: DecayFit | None
    #: The mono-exponential fit (the calibration's tau(V) at a static bias).
    mono: DecayFit | None
    fit_problem: str | None
    g2: G2Result | None

    @property
    def intensity_cps(self) -> float:
        return self.photons / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def lifetime_s(self) -> float:
        return self.fit.dominant_tau_s if self.fit is not None else math.nan

    @property
    def lifetime_stderr_s(self) -> float:
        if self.fit is None:
            return math.nan
        return self.fit.tau_stderr_s[int(np.argmax(self.fit.fraction))]

    @property
    def mean_lifetime_s(self) -> float:
        """Intensity-weighted mean lifetime, sum of fraction x tau: the photon-weighted mean
        lifetime of the states the dot visited."""
        if self.fit is None:
            return math.nan
        return float(np.dot(self.fit.fraction, self.fit.tau_s))


class SegmentAccumulator(StretchAccumulator):
    """Decay histogram and g2 of the rows of one segment, with the analysis's fit step.

    The accumulators and the fit are the analysis package's (:class:`StretchAccumulator`);
    this adds the segment's index and bias.

    Parameters
    ----------
    index
        The segment (-1: the calibration rows).
    bias_v
        The segment's bias readback.
    units, channels, with_g2
        As for :class:`StretchAccumulator`.
    """

    def __init__(
        self,
        index: int,
        bias_v: float,
        units: StreamUnits,
        channels: tuple[int, ...],
        *,
        with_g2: bool = True,
    ) -> None:
        super().__init__(units, channels, with_g2=with_g2)
        self.index = index
        self.bias_v = bias_v

    def result(self, *, irf_fwhm_s: float) -> SegmentResult:
        """The segment's histograms, fits and g2 (a failed fit leaves ``fit_problem``)."""
        r = self.results(irf_fwhm_s=irf_fwhm_s)
        problem = None
        if r.problem is not None:
            what = f"segment {self.index}" if self.index >= 0 else "the calibration rows"
            problem = f"{what}: no decay fit ({r.problem})"
        return SegmentResult(
            segment=self.index,
            bias_v=self.bias_v,
            photons=self.photons,
            duration_s=self.duration_s,
            decay=r.decay,
            fit=r.fit,
            mono=r.mono,
            fit_problem=problem,
            g2=r.g2,
        )
