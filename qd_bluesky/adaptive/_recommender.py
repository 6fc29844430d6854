"""The bias recommender: refine where the dot's lifetime and intensity change most."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Key of the suggested bias in suggestions and outcomes (bluesky-adaptive's parameter name:
#: the name of the actuator it moves).
BIAS_KEY = "bias"
ID_KEY = "_id"


@dataclass(frozen=True)
class BiasPoint:
    """One measured bias: what the dot did there, and how many photons say so."""

    bias_v: float
    intensity_cps: float
    #: NaN when no decay could be fitted (the point still counts by its intensity).
    lifetime_ns: float
    photons: float

    @property
    def log_values(self) -> tuple[float, float]:
        """(log lifetime, log intensity); NaN where not measured."""
        tau = math.log(self.lifetime_ns) if self.lifetime_ns > 0 else math.nan
        rate = math.log(self.intensity_cps) if self.intensity_cps > 0 else math.nan
        return tau, rate


@dataclass(frozen=True)
class Interval:
    """Two neighbouring measured biases and how much the dot changed between them."""

    low_v: float
    high_v: float
    #: Euclidean norm of the changes of log lifetime and log intensity.
    change: float
    #: ``change`` over its shot-noise standard deviation.
    significance: float
    #: 0..1: how much the slope differs from the neighbouring intervals'.
    bend: float = 1.0

    @property
    def uncertainty_v(self) -> float:
        """How far a transition read off this interval may be from the true one: half the
        width for a step (its midpoint), less where the curve runs straight."""
        return 0.5 * self.bend * self.width_v

    @property
    def width_v(self) -> float:
        return self.high_v - self.low_v

    @property
    def midpoint_v(self) -> float:
        return 0.5 * (self.low_v + self.high_v)


class BiasRecommender:
    """Propose biases where the dot changes fastest; stop once every change is located.

    First the ``initial_points`` biases of a uniform grid from ``start_v`` to ``stop_v`` (in
    that order), then, one at a time, the midpoint of the interval between measured
    neighbours whose change of (log lifetime, log intensity) is largest among those not yet
    located to ``tolerance_v``. An interval counts only if its change is both at least
    ``min_change`` and ``significance`` times its shot noise (each log quantity measured from
    N photons scatters by about 1/sqrt(N)).

    How well an interval places a transition depends on its neighbours. Where the slope
    (of both log quantities, as a vector) is the same on either side, the curve runs
    straight and a level read off the straight line between the points is where the curve
    has it. Where it bends, the interval's ``bend`` (|slope - neighbour's| over the steeper
    of the two, at most 1) times half its width bounds the error: a step between flat
    neighbours (bend 1) is placed at the midpoint to within half the width. The search stops
    when every change is placed to ``tolerance_v`` (or after ``max_points`` biases).

    The methods are bluesky-adaptive's ``Optimizer`` (``suggest``, ``ingest``,
    ``get_best_points``) and ``SupportsStoppingCriteria`` (``should_stop``). Suggestions
    are ``{"_id": n, "bias": V}``; outcomes carry ``intensity_cps``, ``lifetime_ns``,
    ``photons`` and optionally ``bias_v``, the bias actually reached (else the suggested one).

    Parameters
    ----------
    start_v, stop_v : float
        Ends of the bias range (V), both measured; either order.
    tolerance_v : float
        How closely (V) each change must be placed (default 50 mV): no interval wider than
        twice this is left with a step in it.
    initial_points : int
        Points of the first, uniform pass (>= 2).
    max_points : int
        Most biases measured in all.
    min_change : float
        Smallest change of (log lifetime, log intensity) worth locating (0.2: above what
        blinking does between two 1 s dwells of the simulated qd1 dot, whose X+ spells at
        0 V scatter intensity and lifetime by ~10 % each; shot noise alone is ~0.6 %).
    significance : float
        Smallest ratio of a change to its shot noise.

    Raises
    ------
    ValueError
        A bad argument (non-finite, equal ends, too few points, ...).
    """

    def __init__(
        self,
        start_v: float,
        stop_v: float,
        *,
        tolerance_v: float = 0.05,
        initial_points: int = 11,
        max_points: int = 60,
        min_change: float = 0.2,
        significance: float = 3.0,
    ) -> None:
        for name, value in (("start_v", start_v), ("stop_v", stop_v)):
            if not math.isfinite(value):
                raise ValueError(f"BiasRecommender: {name} must be finite, not {value}")
        if start_v == stop_v:
            raise ValueError(f"BiasRecommender: start_v and stop_v are both {start_v} V")
        for name, value in (
            ("tolerance_v", tolerance_v),
            ("min_change", min_change),
            ("significance", significance),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"BiasRecommender: {name} must be > 0, not {value}")
        if int(initial_points) != initial_points or initial_points < 2:
            raise ValueError(
                f"BiasRecommender: initial_points must be a whole number >= 2, not {initial_points}"
            )
        if int(max_points) != max_points or max_points < initial_points:
            raise ValueError(
                f"BiasRecommender: max_points must be a whole number >= initial_points "
                f"({initial_points}), not {max_points}"
            )
        self.start_v = float(start_v)
        self.stop_v = float(stop_v)
        self.tolerance_v = float(tolerance_v)
        self.max_points = int(max_points)
        self.min_change = float(min_change)
        self.significance = float(significance)
        self._grid = [float(v) for v in np.linspace(start_v, stop_v, int(initial_points))]
        self._next_id = 0
        self._pending: dict[int, float] = {}
        self._points: list[BiasPoint] = []
        self._ids: list[int] = []
        self._failed = 0

    # -- bluesky-adaptive's Optimizer ---------------------------------------------------------

    def suggest(self, num_points: int | None = None) -> list[dict[str, Any]]:
        """The next ``num_points`` (default 1) biases to measure; fewer (or none) when done.

        The uniform pass comes first; refinements are the midpoints of the intervals not yet
        placed to the tolerance, the largest change (times its bend) first, once every
        suggestion so far has been ingested.
        """
        n = 1 if num_points is None else int(num_points)
        if n < 1:
            raise ValueError(f"BiasRecommender.suggest: num_points must be >= 1, not {n}")
        room = self.max_points - len(self._points) - len(self._pending) - self._failed
        biases: list[float] = []
        while self._grid and len(biases) < min(n, room):
            biases.append(self._grid.pop(0))
        if not biases and not self._pending:  # refine only from what has been measured
            biases = [round(i.midpoint_v, 6) for i in self.open_intervals()[: min(n, room)]]
        out = []
        for v in biases:
            self._pending[self._next_id] = v
            out.append({ID_KEY: self._next_id, BIAS_KEY: v})
            self._next_id += 1
        return out

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Take measured outcomes (of suggestions, by ``_id``, or of any bias given as
        ``bias_v``/``bias``)."""
        for p in points:
            suggested = self._pending.pop(p.get(ID_KEY), None)  # type: ignore[arg-type]
            bias = p.get("bias_v", p.get(BIAS_KEY, suggested))
            if bias is None or not math.isfinite(float(bias)):
                raise ValueError(f"BiasRecommender.ingest: no bias for outcome {dict(p)!r}")
            point = BiasPoint(
                float(bias),
                float(p.get("intensity_cps", math.nan)),
                float(p.get("lifetime_ns", math.nan)),
                float(p.get("photons", math.nan)),
            )
            self._points.append(point)
            self._ids.append(p.get(ID_KEY, -1))  # type: ignore[arg-type]

    def register_failures(self, suggestions: Sequence[Mapping[str, Any]]) -> None:
        """Forget suggestions whose acquisition failed (bluesky-adaptive's TrialFaultAware)."""
        for s in suggestions:
            if self._pending.pop(s.get(ID_KEY), None) is not None:  # type: ignore[arg-type]
                self._failed += 1

    def get_best_points(self) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
        """The located changes: ``(_id of the lower-bias point, {"bias": midpoint}, {...})``."""
        ids = {p.bias_v: i for p, i in zip(self._points, self._ids, strict=True)}
        return [
            (
                ids.get(c.low_v),
                {BIAS_KEY: c.midpoint_v},
                {"change": c.change, "width_v": c.width_v, "significance": c.significance},
            )
            for c in self.changes()
        ]

    def should_stop(self) -> tuple[bool, str | None]:
        """(True, why) once every change is located or ``max_points`` biases are measured."""
        if self._grid or self._pending:
            return False, None
        if len(self._points) + self._failed >= self.max_points:
            return True, f"{self.max_points} biases measured (max_points)"
        if not self.open_intervals():
            return True, f"every change located within {self.tolerance_v * 1e3:g} mV"
        return False, None

    # -- what was found -----------------------------------------------------------------------

    @property
    def points(self) -> list[BiasPoint]:
        """The measured points, by increasing bias."""
        return sorted(self._points, key=lambda p: p.bias_v)

    def intervals(self) -> list[Interval]:
        """Every interval between neighbouring measured biases, by increasing bias."""
        by_bias = {p.bias_v: p for p in self._points}  # a bias measured again: the last one
        pts = [by_bias[v] for v in sorted(by_bias)]
        steps = [_step(a, b) for a, b in zip(pts, pts[1:], strict=False)]
        out = []
        for i, (a, b) in enumerate(zip(pts, pts[1:], strict=False)):
            delta, noise = steps[i]
            change = float(np.linalg.norm(delta))
            slope = delta / (b.bias_v - a.bias_v)
            # How far the curve bends against its neighbours: 0 on a straight stretch (where
            # straight lines between the points already place any level), 1 for a step
            # between flat neighbours (placed only by the interval's midpoint). A lone
            # interval has nothing to compare with: a step for all we know.
            bend = 0.0 if len(steps) > 1 else 1.0
            for j in (i - 1, i + 1):
                if 0 <= j < len(steps):
                    other = steps[j][0] / (pts[j + 1].bias_v - pts[j].bias_v)
                    larger = max(np.linalg.norm(slope), np.linalg.norm(other))
                    if larger > 0:
                        bend = max(bend, min(1.0, float(np.linalg.norm(slope - other) / larger)))
            out.append(Interval(a.bias_v, b.bias_v, change, change / noise if noise else 0.0, bend))
        return out

    def changes(self) -> list[Interval]:
        """Intervals across which the dot changed (by ``min_change`` and ``significance``)."""
        return [
            i
            for i in self.intervals()
            if i.change >= self.min_change and i.significance >= self.significance
        ]

    def open_intervals(self) -> list[Interval]:
        """Changes not yet placed to the tolerance, the largest (times its bend) first."""
        tol = self.tolerance_v * (1 + 1e-9)
        wide = [i for i in self.changes() if i.uncertainty_v > tol]
        return sorted(wide, key=lambda i: -i.change * i.bend)


def _step(a: BiasPoint, b: BiasPoint) -> tuple[NDArray[np.float64], float]:
    """Change of (log lifetime, log intensity) from ``a`` to ``b`` (0 where one is not
    measured) and the shot-noise std of its norm."""
    delta = np.subtract(b.log_values, a.log_values)
    ok = np.isfinite(delta)
    inv_n = _inverse(a.photons) + _inverse(b.photons)
    return np.where(ok, delta, 0.0), math.sqrt(inv_n * int(ok.sum()))


def _inverse(photons: float) -> float:
    return 1.0 / photons if photons > 0 else 0.0


def level_crossings(bias_v: ArrayLike, values: ArrayLike, level: float) -> NDArray[np.float64]:
    """Biases where the piecewise-linear curve through the points crosses ``level``.

    The points are sorted by bias first; a point exactly at the level counts once.
    """
    v = np.asarray(bias_v, dtype=float)
    y = np.asarray(values, dtype=float)
    order = np.argsort(v)
    v, y = v[order], y[order]
    ok = np.isfinite(y)
    v, y = v[ok], y[ok] - level
    out = []
    for i in range(len(v) - 1):
        if y[i] == 0.0:
            out.append(v[i])
        elif y[i] * y[i + 1] < 0:
            out.append(v[i] + (v[i + 1] - v[i]) * y[i] / (y[i] - y[i + 1]))
    if len(v) and y[-1] == 0.0:
        out.append(v[-1])
    return np.asarray(out, dtype=float)
