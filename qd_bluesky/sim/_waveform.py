"""Bias waveforms: cyclic voltammetry as linear sweeps with polarity reversals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class CvWaveform:
    """``cycles`` x (``start`` -> ``vertex`` -> ``end``) at ``rate_v_per_s``.

    When ``end`` differs from ``start``, each further cycle first sweeps back to ``start``.
    The paper's scan is ``CvWaveform(0.0, -2.0, 0.0, 0.2, 1)``: 20 s, reversed at t = 10 s.
    """

    start_v: float
    vertex_v: float
    end_v: float
    rate_v_per_s: float
    cycles: int = 1

    def __post_init__(self) -> None:
        for name in ("start_v", "vertex_v", "end_v", "rate_v_per_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"CV {name} must be finite, got {getattr(self, name)}")
        if not self.rate_v_per_s > 0:
            raise ValueError(f"CV scan rate must be positive, got {self.rate_v_per_s} V/s")
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"CV cycles must be a positive integer, got {self.cycles}")
        if self.vertex_v == self.start_v:
            raise ValueError(f"CV vertex {self.vertex_v} V equals the start: nothing to sweep")

    @property
    def corners_v(self) -> NDArray[np.float64]:
        """Bias at each corner of the piecewise-linear waveform, in order."""
        corners = [self.start_v]
        for k in range(int(self.cycles)):
            if k > 0 and self.end_v != self.start_v:
                corners.append(self.start_v)
            corners += [self.vertex_v, self.end_v]
        return np.asarray(corners, dtype=float)

    @property
    def corner_times_s(self) -> NDArray[np.float64]:
        v = self.corners_v
        return np.concatenate(([0.0], np.cumsum(np.abs(np.diff(v)) / self.rate_v_per_s)))

    @property
    def duration_s(self) -> float:
        return float(self.corner_times_s[-1])

    @property
    def limits_v(self) -> tuple[float, float]:
        """Lowest and highest bias of the scan."""
        v = self.corners_v
        return float(v.min()), float(v.max())

    def bias_at(self, t_s: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Bias at time(s) ``t_s`` after the start (held at the ends outside the scan)."""
        return np.interp(t_s, self.corner_times_s, self.corners_v)

    def sweep_rate_at(self, t_s: float) -> float:
        """dV/dt at ``t_s`` (0 outside the scan)."""
        times = self.corner_times_s
        if t_s < 0 or t_s >= times[-1]:
            return 0.0
        k = int(np.searchsorted(times, t_s, side="right")) - 1
        v = self.corners_v
        return float(np.sign(v[k + 1] - v[k]) * self.rate_v_per_s)

    def staircase(self, step_v: float = 0.002) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The scan as bias steps of at most ``step_v``: (times_s, biases_v) of each step.

        A real potentiostat's digital CV is such a staircase; 2 mV steps at 0.2 V/s are 10 ms,
        far below the 20 ms FLID bins.
        """
        if not step_v > 0:
            raise ValueError(f"step_v must be positive, got {step_v}")
        dt = step_v / self.rate_v_per_s
        n = max(1, int(math.ceil(self.duration_s / dt)))
        t = np.arange(n + 1) * (self.duration_s / n)
        # Each step holds the bias of its midpoint: the staircase averages to the ramp.
        mid = np.minimum(t + 0.5 * self.duration_s / n, self.duration_s)
        v = self.bias_at(mid)
        v[-1] = self.bias_at(self.duration_s)
        return t, v
