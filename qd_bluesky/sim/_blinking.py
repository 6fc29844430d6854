"""Power-law blinking X0 <-> X+: on/off dwell times from exponentially truncated power laws.

Single CdSe-based dots blink with on and off times distributed as ``t^-alpha`` over many decades
(Kuno et al., J. Chem. Phys. 115, 1028 (2001); review: Frantsuzov, Kuno, Janko & Marcus, Nat.
Phys. 4, 519 (2008)), the "on" law bending down exponentially at long times; in CdSe/CdS the dim
state is the positive trion X+ (Galland et al., Nature 479, 203 (2011)). A Markov chain gives
exponential dwells instead; ``DotParameters.blinking = "power-law"`` selects this model.

This module holds the dwell laws (density, mean, sampler); :func:`._charging.run_gated_chain`
plays them against the charge chain.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numpy.typing import NDArray

from ._dot import DotParameters
from ._rng import next_double

#: Models of the X0 <-> X+ blinking (``DotParameters.blinking``).
BLINKING_MODELS = ("markov", "power-law")

#: Layout of the gate array the kernel carries between calls: on (1) or off (0), the time the
#: reference dwell left was last taken, that reference time left, and the stretch factor in use.
GATE_ON, GATE_T_REF, GATE_LEFT, GATE_SCALE = 0, 1, 2, 3


def dwell_law(p: DotParameters) -> NDArray[np.float64]:
    """``[alpha_on, min_on_s, cutoff_on_s, alpha_off, min_off_s, cutoff_off_s]`` for the kernel."""
    return np.array(
        [
            p.on_alpha,
            p.on_min_s,
            p.on_cutoff_s,
            p.off_alpha,
            p.off_min_s,
            p.off_cutoff_s,
        ]
    )


def truncated_power_law_pdf(
    t_s: NDArray[np.float64], alpha: float, t_min_s: float, cutoff_s: float
) -> NDArray[np.float64]:
    """Normalised density ``t^-alpha exp(-t / cutoff)`` for ``t >= t_min`` (0 below).

    Raises
    ------
    ValueError
        For ``alpha <= 1`` with no cutoff (not normalisable).
    """
    t = np.asarray(t_s, dtype=float)
    norm = _moment(0, alpha, t_min_s, cutoff_s)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = t ** (-alpha) * np.exp(-(t - t_min_s) / cutoff_s) / norm
    return np.where(t >= t_min_s, f, 0.0)


@functools.lru_cache(maxsize=64)
def mean_dwell_s(alpha: float, t_min_s: float, cutoff_s: float) -> float:
    """Mean of the truncated power law (what the effective Markov rates use)."""
    return _moment(1, alpha, t_min_s, cutoff_s) / _moment(0, alpha, t_min_s, cutoff_s)


def _moment(k: int, alpha: float, t_min_s: float, cutoff_s: float) -> float:
    """``int_tmin^inf t^(k - alpha) exp(-(t - tmin) / cutoff) dt`` on a log grid (rel. ~1e-6)."""
    if alpha - k <= 1.0 and not math.isfinite(cutoff_s):
        raise ValueError(f"a power law with alpha {alpha} needs a finite cutoff")
    t_max = t_min_s + 60.0 * cutoff_s if math.isfinite(cutoff_s) else t_min_s * 1e12
    s = np.linspace(0.0, math.log(t_max / t_min_s), 20001)
    t = t_min_s * np.exp(s)
    f = t ** (k - alpha + 1.0) * np.exp(-(t - t_min_s) / cutoff_s)  # dt = t ds
    return float(np.sum((f[1:] + f[:-1]) * np.diff(s)) / 2.0)


@numba.njit(cache=True)
def next_truncated_power_law(
    rng: NDArray[np.uint64], alpha: float, t_min: float, cutoff: float
) -> float:
    """A draw of ``t^-alpha exp(-t / cutoff)``, ``t >= t_min`` (alpha > 1): a Pareto draw kept
    with probability ``exp(-(t - t_min) / cutoff)`` (exact rejection; cheap for cutoff >> t_min)."""
    while True:
        t = t_min * (1.0 - next_double(rng)) ** (-1.0 / (alpha - 1.0))
        if next_double(rng) < np.exp(-(t - t_min) / cutoff):
            return t
