"""Blinking photon streams with known change points and dwell-time laws, for tests.

Pure numpy, written independently of ``qd_bluesky.analysis``:

* :func:`piecewise_poisson`: macrotime ticks of a Poisson process whose rate is constant between
  known switch times (the change-point truth);
* :func:`power_law_sample`: draws of a continuous power law above ``xmin`` (inverse CDF);
* :func:`telegraph`: alternating on/off dwells drawn from two power laws, as switch times and
  states for ``synthetic.generate(..., switches=...)`` (microtimes, lifetimes, background).
"""

from __future__ import annotations

import numpy as np

TICK_S = 400e-9  # one laser period: the macrotime unit of the paper's T3 data


def piecewise_poisson(
    rates_cps, switch_s, duration_s: float, *, seed: int, tick_s: float = TICK_S
) -> np.ndarray:
    """Sorted int64 ticks of a Poisson process with ``rates_cps[i]`` between switches i-1 and i."""
    rng = np.random.default_rng(seed)
    edges = np.concatenate(([0.0], np.asarray(switch_s, float), [duration_s]))
    times = []
    for rate, a, b in zip(rates_cps, edges[:-1], edges[1:], strict=True):
        times.append(rng.uniform(a, b, rng.poisson(rate * (b - a))))
    return np.floor(np.sort(np.concatenate(times)) / tick_s).astype(np.int64)


def power_law_sample(alpha: float, xmin: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of p(x) ~ x**-alpha for x >= xmin."""
    return xmin * (1.0 - rng.uniform(size=n)) ** (-1.0 / (alpha - 1.0))


def telegraph(
    duration_s: float,
    *,
    alpha_on: float,
    alpha_off: float,
    xmin_s: float,
    seed: int,
    xmax_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Switch times and states (0 = on, 1 = off) of dwells drawn from two power laws.

    ``xmax_s`` caps each dwell (redrawing longer ones), so that a finite recording holds many.
    """
    rng = np.random.default_rng(seed)
    starts, states = [0.0], [0]
    t = 0.0
    while True:
        alpha = alpha_on if states[-1] == 0 else alpha_off
        dwell = power_law_sample(alpha, xmin_s, 1, rng)[0]
        while xmax_s is not None and dwell > xmax_s:
            dwell = power_law_sample(alpha, xmin_s, 1, rng)[0]
        t += dwell
        if t >= duration_s:
            break
        starts.append(t)
        states.append(1 - states[-1])
    return np.array(starts), np.array(states, dtype=np.int64)
