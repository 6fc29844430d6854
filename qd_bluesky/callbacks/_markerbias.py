"""The card's marker records (``/user/markers``): the bias of each photon and the switching edges.

A real TCSPC card does not see the bias; the potentiostat's trigger output, wired to one of its
marker inputs, puts a marker record into the photon file at every corner of the bias waveform
(a step, a CV's sweep start, vertex and end) and at every edge of a switching square wave.
Together with what the plan told the potentiostat (its log: the run's start document), the
markers give

* :class:`MarkerBias`: the bias of every photon of a CV (or ``bias_cycling``) run whose file has
  no ``/user/bias``. In each segment the markers from the segment's first photon on are the
  waveform's corners in order (start, vertex, end, vertex, end, ...); a photon after corner
  ``j`` sits on leg ``j`` at ``corner_j + slope_j (t - t_j)`` (clipped to the leg), so each
  corner marker pins the triangle wave again and only markers before the photon are used: the
  live analysis and the replay give the same bias;
* :class:`SwitchingAnalysis`: the ``switching`` streams of a ``bias_switching`` run.

Document-free (the ``engine`` import contract): plain arrays and the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from qd_bluesky.analysis._photon_hdf5 import (
    CARD_MARKER_COLUMNS,
    CARD_MARKER_PATH,
    SharedPhotonFile,
)
from qd_bluesky.analysis._switching import (
    EDGE_NAMES,
    SwitchingAccumulator,
    fit_step_response,
    step_exposure,
)

from ._biaslog import open_user_group, read_appended


class CardMarkers:
    """Incremental reader of the marker records of one input in ``/user/markers``.

    Use :meth:`open`, which returns None for a file without them.
    """

    def __init__(
        self, shared: SharedPhotonFile, datasets: dict[str, h5py.Dataset], channel: int
    ) -> None:
        self._shared: SharedPhotonFile | None = shared
        self._swmr = shared.swmr
        self._ds = datasets
        self.channel = int(channel)
        self.timestamp = np.zeros(0, dtype=np.int64)
        self.photon_index = np.zeros(0, dtype=np.int64)
        self._read = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], channel: int = 1) -> CardMarkers | None:
        """The markers of input ``channel`` in ``path``, or None without ``/user/markers``.

        Raises
        ------
        PhotonFileError
            The file cannot be opened as HDF5.
        """
        opened = open_user_group(
            path, CARD_MARKER_PATH, tuple(CARD_MARKER_COLUMNS), "cannot open the marker records"
        )
        return None if opened is None else cls(*opened, channel)

    def refresh(self) -> None:
        """Read the records appended since the last call (those of our input)."""
        self._read, new = read_appended(self._ds, self._swmr, self._read)
        if new:
            mine = new["channel"] == self.channel
            ts = new["timestamp"][mine].astype(np.int64)
            rows = new["photon_index"][mine].astype(np.int64)
            self.timestamp = np.concatenate((self.timestamp, ts))
            self.photon_index = np.concatenate((self.photon_index, rows))

    def timestamps_of(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The photon timestamps of ``rows``, through the process's one handle of the column
        (a second handle of a growing dataset can read stale chunks)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._shared is None:
            raise ValueError("the marker records are closed")
        ds = self._shared.dataset("photon_data/timestamps")
        if ds is None:
            raise ValueError("the photon file has no timestamps")
        if self._swmr:
            ds.refresh()
        uniq, inverse = np.unique(rows, return_inverse=True)
        return np.asarray(ds[uniq], dtype=np.int64)[inverse] if len(uniq) else uniq

    @property
    def nbytes(self) -> int:
        return self.timestamp.nbytes + self.photon_index.nbytes

    def close(self) -> None:
        if self._shared is not None:
            self._shared.release()
            self._shared = None


def cv_corners(start: float, vertex: float, end: float, cycles: int) -> NDArray[np.float64]:
    """The corners of the potentiostat's CV (start, then vertex and end per cycle)."""
    return np.array([start] + [vertex, end] * int(cycles), dtype=np.float64)


class MarkerBias:
    """The bias of photon rows from the corner markers and the CV program (see module doc).

    The same interface as :class:`~._biaslog.BiasLog` (``refresh``, ``bias_at``,
    ``forget_before``, ``nbytes``, ``close``), so the engine uses either.

    Parameters
    ----------
    markers
        The trigger input's records.
    segment_rows
        A callable giving the first photon row of every segment so far (the plan's markers).
    corners
        The corner biases of one segment's waveform (:func:`cv_corners`).
    rate_v_per_s
        The sweep rate.
    timestamp_unit_s
        Seconds per timestamp unit.
    """

    def __init__(
        self,
        markers: CardMarkers,
        segment_rows: Any,
        corners: Sequence[float],
        rate_v_per_s: float,
        timestamp_unit_s: float,
    ) -> None:
        self.markers = markers
        self._segment_rows = segment_rows
        self.corners = np.asarray(corners, dtype=np.float64)
        self.slope_per_unit = float(rate_v_per_s) * float(timestamp_unit_s)

    def refresh(self) -> None:
        self.markers.refresh()

    def bias_at(self, rows: NDArray, timestamps: NDArray | None = None) -> NDArray[np.float64]:
        """Bias seen by each photon row (NaN before the first segment); ``timestamps``: the
        rows' photon timestamps when the caller has them (else read from the file)."""
        rows = np.asarray(rows, dtype=np.int64)
        seg_rows = np.asarray(self._segment_rows(), dtype=np.int64)
        ts = self.markers.timestamps_of(rows) if timestamps is None else np.asarray(timestamps)
        return marker_bias(
            rows,
            ts,
            seg_rows,
            self.markers.photon_index,
            self.markers.timestamp,
            self.corners,
            self.slope_per_unit,
        )

    def forget_before(self, row: int) -> None:
        """Nothing to forget: the corner markers are few (two per CV leg)."""

    @property
    def nbytes(self) -> int:
        return self.markers.nbytes

    def close(self) -> None:
        self.markers.close()


def marker_bias(
    rows: NDArray[np.int64],
    timestamps: NDArray[np.int64],
    segment_rows: NDArray[np.int64],
    marker_row: NDArray[np.int64],
    marker_ts: NDArray[np.int64],
    corners: NDArray[np.float64],
    slope_per_unit: float,
) -> NDArray[np.float64]:
    """The bias of photons ``rows`` (timestamps ``timestamps``) from the corner markers.

    In segment ``k`` (rows from ``segment_rows[k]``) the markers with ``marker_row >=
    segment_rows[k]`` are the corners in order; before the first of them the bias is the
    start, after corner ``j`` it moves towards corner ``j + 1`` at the sweep rate.
    """
    out = np.full(len(rows), np.nan)
    if len(segment_rows) == 0 or len(rows) == 0:
        return out
    seg = np.searchsorted(segment_rows, rows, side="right") - 1
    # Index of the first marker of each photon's segment, and of its last marker so far.
    first = np.searchsorted(marker_row, segment_rows[np.maximum(seg, 0)], side="left")
    last = np.searchsorted(marker_row, rows, side="right") - 1
    j = last - first  # the corner the photon is past (-1: the sweep has not started)
    n = len(corners)
    ok = seg >= 0
    before = ok & (j < 0)
    out[before] = corners[0]
    after = ok & (j >= n - 1)
    out[after] = corners[-1]
    on = ok & (j >= 0) & (j < n - 1)
    jj = j[on]
    a, b = corners[jj], corners[jj + 1]
    dt = (timestamps[on] - marker_ts[last[on]]).astype(np.float64)
    v = a + np.sign(b - a) * slope_per_unit * dt
    out[on] = np.clip(v, np.minimum(a, b), np.maximum(a, b))
    return out


def edge_polarity(marker_ts: NDArray[np.int64], half_units: float) -> NDArray[np.int64]:
    """Which markers are steps of the square wave, and which way (0 to high, 1 to low).

    A marker half a period after the previous one continues the wave; the wave's first edge
    (to the high bias) is the marker before the first such pair. Only earlier markers decide,
    so markers read later never change the polarity of earlier ones; the first edge itself is
    known only at the second, and its photons are left out (-1, like markers of no wave).
    """
    n = len(marker_ts)
    pol = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return pol
    tol = max(2.0, 1e-3 * half_units)
    on_wave = np.abs(np.diff(marker_ts).astype(np.float64) - half_units) <= tol
    r = 0
    for k in range(1, n):
        r = r + 1 if on_wave[k - 1] else 0
        if r > 0:
            pol[k] = r % 2  # edge r of the wave: odd to low, even to high
    return pol


class SwitchingAnalysis:
    """The ``switching`` and ``switching_response`` rows of a ``bias_switching`` run.

    Parameters
    ----------
    markers
        The trigger input's records.
    period_s
        The square wave's period.
    bin_s
        Width of a time bin (rounded to whole timestamp units, at least one).
    timestamp_unit_s
        Seconds per timestamp unit (the laser period in T3).
    """

    def __init__(
        self, markers: CardMarkers, period_s: float, bin_s: float, timestamp_unit_s: float
    ) -> None:
        self.markers = markers
        self.unit_s = float(timestamp_unit_s)
        self.half_units = 0.5 * float(period_s) / self.unit_s
        bin_units = max(1, round(float(bin_s) / self.unit_s))
        n_bins = max(2, int(self.half_units // bin_units))
        self.acc = SwitchingAccumulator(bin_units, n_bins)

    def add(self, row0: int, timestamps: NDArray[np.int64], nanotimes: NDArray | None) -> None:
        """Photon rows ``row0 ...`` (their markers are in the file before they are announced)."""
        self.markers.refresh()
        m = self.markers
        self.acc.add(
            row0,
            timestamps,
            nanotimes,
            m.photon_index,
            m.timestamp,
            edge_polarity(m.timestamp, self.half_units),
        )

    def rows(
        self, microtime_unit_s: float | None, decay_start_s: float
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The ``switching`` rows (per edge and bin) and ``switching_response`` (per edge)."""
        m, acc = self.markers, self.acc
        end = acc.last_ts if acc.last_ts is not None else 0
        pol = edge_polarity(m.timestamp, self.half_units)
        steps = step_exposure(m.timestamp, pol, end, acc.bin_units, acc.n_bins)
        bin_s = acc.bin_units * self.unit_s
        t = np.arange(acc.n_bins) * bin_s
        unit = microtime_unit_s if microtime_unit_s else math.nan
        table, response = [], []
        for p, edge in enumerate(EDGE_NAMES):
            c = acc.counts[p]
            exposure = steps[p] * bin_s
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = acc.micro_sum[p] / c * unit
                var = (acc.micro_sq[p] / c - (acc.micro_sum[p] / c) ** 2) * unit**2
                sem = np.sqrt(np.maximum(var, 0.0) / c)
                lifetime = mean - decay_start_s
                intensity = c / exposure
            for b in range(acc.n_bins):
                table.append(
                    {
                        "edge": edge,
                        "time_us": float(t[b] * 1e6),
                        "steps": int(steps[p, b]),
                        "photons": int(c[b]),
                        "intensity_cps": float(intensity[b]),
                        "lifetime_ns": float(lifetime[b] * 1e9),
                        "lifetime_stderr_ns": float(sem[b] * 1e9),
                        "decay_rate_per_ns": float(1e-9 / lifetime[b])
                        if lifetime[b] > 0
                        else math.nan,
                    }
                )
            fit = fit_step_response(t, c, exposure)
            response.append(
                {
                    "edge": edge,
                    "steps": int(steps[p, 0]),
                    "rise_time_us": fit.rise_time_s * 1e6,
                    "rise_time_stderr_us": fit.rise_time_stderr_s * 1e6,
                    "tau_us": fit.tau_s * 1e6,
                    "delay_us": fit.delay_s * 1e6,
                    "intensity_before_cps": fit.start_cps,
                    "intensity_after_cps": fit.end_cps,
                    "problem": fit.problem or "",
                }
            )
        return table, response

    @property
    def nbytes(self) -> int:
        return self.markers.nbytes + 3 * self.acc.counts.nbytes

    def close(self) -> None:
        self.markers.close()
