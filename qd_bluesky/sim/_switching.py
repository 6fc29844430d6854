"""A square-wave bias (the potentiostat's switching mode) as the cell delivers it to the dot.

The potentiostat steps between ``low_v`` and ``high_v`` every half ``period_s``; the cell's
response (an RC-like rise, 10-90 % in ``rise_time_s``) makes the bias at the dot approach each
new target exponentially. :meth:`SwitchingWaveform.schedule` cuts a stretch of time into steps
of constant bias (``tau / 4`` long while a rise is under way, then the plateau), which the
engine plays with one numba call per stretch (:func:`~._charging.run_chain_schedule`): the dot's
charge and emission follow the bias within a fraction of a microsecond, whatever the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

#: Biases are rounded to this (V) to name a level: the rate tables are cached per level.
LEVEL_QUANTUM_V = 1e-6


@dataclass(frozen=True)
class SwitchingWaveform:
    """``cycles`` x (step to ``high_v`` at ``t0_s + k period``, to ``low_v`` half a period later).

    ``from_v`` is the bias the dot had at ``t0_s``; ``tau_s`` the cell's exponential time
    constant; a rise is played as ``steps_per_tau`` steps per ``tau_s`` for ``taus`` time
    constants, then the target. After the last cycle the bias stays at ``low_v``.
    """

    low_v: float
    high_v: float
    period_s: float
    cycles: int
    t0_s: float
    from_v: float
    tau_s: float
    steps_per_tau: int = 4
    taus: int = 8
    _from: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("low_v", "high_v", "period_s", "t0_s", "from_v", "tau_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"switching {name} must be finite, got {getattr(self, name)}")
        if not self.period_s > 0 or not self.tau_s > 0:
            raise ValueError("switching period and the cell's rise time must be positive")
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"switching cycles must be a positive integer, got {self.cycles}")
        # The bias at each edge: each rise starts where the previous one had got to. The
        # transient dies out geometrically, so only the first edges differ from the periodic
        # pair; beyond `n_exact` edges even and odd ones repeat the last computed values.
        r = math.exp(-0.5 * self.period_s / self.tau_s)
        n_edges = 2 * int(self.cycles)
        n_exact = min(n_edges, 2 + 2 * int(math.ceil(40.0 / max(-math.log(max(r, 1e-300)), 1e-3))))
        v = np.empty(n_exact)
        v[0] = self.from_v
        for n in range(1, n_exact):
            to = self.target(n - 1)
            v[n] = to + (v[n - 1] - to) * r
        object.__setattr__(self, "_from", v)

    @property
    def half_s(self) -> float:
        return 0.5 * self.period_s

    @property
    def n_edges(self) -> int:
        return 2 * int(self.cycles)

    @property
    def end_s(self) -> float:
        """When the waveform is over (the bias then stays at ``low_v``)."""
        return self.t0_s + self.cycles * self.period_s

    def target(self, n: int | NDArray[np.int64]) -> NDArray[np.float64]:
        """Bias edge ``n`` steps to: ``high_v`` for even ``n``, ``low_v`` for odd."""
        return np.where(np.asarray(n) % 2 == 0, self.high_v, self.low_v)

    def edge_time(self, n: NDArray[np.int64] | int) -> NDArray[np.float64]:
        """Time of edge ``n``."""
        return np.asarray(self.t0_s + np.asarray(n) * self.half_s, dtype=np.float64)

    def start_of(self, n: NDArray[np.int64]) -> NDArray[np.float64]:
        """The bias at edge ``n`` (where its rise starts)."""
        n = np.asarray(n, dtype=np.int64)
        k = len(self._from)
        last = np.where(n % 2 == (k - 1) % 2, k - 1, k - 2)
        return self._from[np.where(n < k, n, np.maximum(last, 0))]

    def edges_in(self, t_a: float, t_b: float) -> NDArray[np.int64]:
        """Indices of the edges with times in ``[t_a, t_b)``."""
        first = max(0, math.ceil((t_a - self.t0_s) / self.half_s - 1e-9))
        last = min(self.n_edges, math.ceil((t_b - self.t0_s) / self.half_s - 1e-9))
        return np.arange(first, max(first, last), dtype=np.int64)

    def last_edge_before(self, t_s: float) -> int:
        """Index of the last edge at or before ``t_s`` (-1 before the first)."""
        if t_s < self.t0_s:
            return -1
        return min(self.n_edges - 1, int(math.floor((t_s - self.t0_s) / self.half_s + 1e-9)))

    def bias_at(self, t_s: float) -> float:
        """Bias at the dot at ``t_s`` (the exact exponential, not the steps)."""
        n = self.last_edge_before(t_s)
        if n < 0:
            return self.from_v
        to = float(self.target(n))
        v0 = float(self.start_of(np.array([n]))[0])
        return to + (v0 - to) * math.exp(-(t_s - float(self.edge_time(n))) / self.tau_s)

    def schedule(self, t_a: float, t_b: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Steps of constant bias covering ``[t_a, t_b)``: their start times (the first is
        ``t_a``) and biases (rounded to :data:`LEVEL_QUANTUM_V`)."""
        dt = self.tau_s / self.steps_per_tau
        n_steps = self.steps_per_tau * self.taus
        j = np.arange(n_steps + 1)
        # Mean of the exponential over each step, then the target itself.
        frac = np.exp(-j * dt / self.tau_s) * (1.0 - math.exp(-dt / self.tau_s)) * (self.tau_s / dt)
        frac[-1] = 0.0
        n0 = self.last_edge_before(t_a)
        edges = self.edges_in(t_a, t_b)
        if n0 >= 0 and (len(edges) == 0 or edges[0] != n0):
            edges = np.concatenate(([n0], edges))
        if len(edges) == 0:
            return np.array([t_a]), _quantize(np.array([self.from_v]))
        t_edge = self.edge_time(edges)
        to = self.target(edges)
        v0 = self.start_of(edges)
        times = t_edge[:, None] + j[None, :] * dt
        bias = to[:, None] + (v0 - to)[:, None] * frac[None, :]
        # A step reaches no further than the next edge.
        t_next = self.edge_time(edges + 1)
        keep = times < t_next[:, None]
        times, bias = times[keep], bias[keep]
        first = max(int(np.searchsorted(times, t_a, side="right")) - 1, 0)
        times, bias = times[first:], bias[first:]
        inside = times < t_b
        times, bias = times[inside], bias[inside]
        if n0 < 0:  # the stretch starts before the first edge, at the bias from before
            times = np.concatenate(([t_a], times))
            bias = np.concatenate(([self.from_v], bias))
        times[0] = max(times[0], t_a)
        return times, _quantize(bias)


def _quantize(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.round(v / LEVEL_QUANTUM_V) * LEVEL_QUANTUM_V
