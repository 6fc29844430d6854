"""Charge dynamics versus bias: a continuous-time Markov chain over X+, X0, X1- ... XL-.

Two kinds of transition:

* **electrochemical exchange** with the ITO electrode among X0, X1-, ... (a birth-death chain):
  the k-th electron enters at rate ``k_ex * f(E_k - mu)`` and leaves at ``k_ex * f(mu - E_k)``
  with ``f(y) = 1 / (1 + exp(y / kT))``; detailed balance gives the thermal (grand-canonical)
  occupancy of the level ladder at room temperature, so any bias history is reversible;
* **photo-induced** blinking X0 <-> X+ (Auger ionisation) and flickering X0 <-> X- at 0 V; the
  forward rates scale with the probability of a multi-exciton per pulse (no blinking at low
  fluence), and negative bias fills the hole of X+ (X+ suppressed at -1.4 V). With
  ``blinking="power-law"`` the X0 <-> X+ dwells follow truncated power laws instead
  (:mod:`._blinking`, :func:`run_gated_chain`), stretched by the same factors.

The chain is simulated exactly (Gillespie) by the numba kernel :func:`run_chain` on its own random
stream (:mod:`._rng`); the pending jump is carried between calls, so a trajectory does not depend
on how time is cut into chunks.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from ._blinking import (
    GATE_LEFT,
    GATE_ON,
    GATE_SCALE,
    GATE_T_REF,
    mean_dwell_s,
    next_truncated_power_law,
)
from ._dot import K_B_EV, REFERENCE_POWER_W, REFERENCE_REP_RATE_HZ, DotParameters
from ._rng import next_double

#: ITO damage (0..1) weakens the electrode: slower exchange and a smaller lever arm.
DAMAGE_EXCHANGE_LOSS = 0.9
DAMAGE_LEVER_LOSS = 0.5


def _multiexciton_probability(x: float) -> float:
    """P(two or more excitations) for a Poisson mean ``x``."""
    return float(-np.expm1(-x) - x * np.exp(-x))


def _fermi(y_ev: NDArray[np.float64] | float, kt_ev: float) -> NDArray[np.float64]:
    """1 / (1 + exp(y / kT)), without overflow and with full relative precision in its tail."""
    x = np.asarray(y_ev, dtype=float) / kt_ev
    e = np.exp(-np.abs(x))
    return np.where(x > 0, e / (1.0 + e), 1.0 / (1.0 + e))


def rate_matrix(
    p: DotParameters, bias_v: float, excitations: float, *, damage: float = 0.0
) -> NDArray[np.float64]:
    """Transition rates (1/s) between charge states; ``Q[i, j]`` is i -> j, diagonal zero.

    Parameters
    ----------
    p
        The dot.
    bias_v
        Bias against the Pt quasi-reference electrode (what reaches the dot).
    excitations
        Mean excitations per pulse (0 with the laser off).
    damage
        ITO damage, 0 (pristine) to 1.
    """
    n = p.n_states
    q = np.zeros((n, n))
    kt = K_B_EV * p.temperature_k
    lever = p.lever_arm * (1.0 - DAMAGE_LEVER_LOSS * damage)
    mu = lever * (p.cb_edge_bias_v - bias_v)
    k_ex = p.exchange_rate(bias_v) * (1.0 - DAMAGE_EXCHANGE_LOSS * damage)
    energies = p.level_energies_ev()
    up = k_ex * _fermi(energies - mu, kt)
    down = k_ex * _fermi(mu - energies, kt)
    for k in range(p.n_levels):  # state 1 + k holds k extra electrons
        q[1 + k, 2 + k] += up[k]
        q[2 + k, 1 + k] += down[k]

    photo = photo_factor(p, excitations)
    hole_fill = hole_fill_factor(p, bias_v)
    if p.blinking == "power-law":
        # Effective rates with the mean dwells: exact occupation of X+; the engine draws the
        # power-law dwells themselves (run_gated_chain), where any "on" state can go to X+.
        scale_on, scale_off = dwell_scales(p, bias_v, excitations)
        on_s = mean_dwell_s(p.on_alpha, p.on_min_s, p.on_cutoff_s) * scale_on
        q[1:, 0] += 0.0 if on_s == np.inf else 1.0 / on_s
        q[0, 1] += 1.0 / (mean_dwell_s(p.off_alpha, p.off_min_s, p.off_cutoff_s) * scale_off)
    else:
        q[1, 0] += p.ionization_rate_hz * photo / hole_fill
        q[0, 1] += p.neutralization_rate_hz * hole_fill
    q[1, 2] += p.photocharging_rate_hz * photo
    q[2, 1] += p.discharging_rate_hz
    return q


def photo_factor(p: DotParameters, excitations: float) -> float:
    """Photo-induced rates relative to the reference laser: the multi-exciton probability ratio."""
    ref_x = p.excitations_per_pulse(REFERENCE_POWER_W, REFERENCE_REP_RATE_HZ)
    return _multiexciton_probability(excitations) / _multiexciton_probability(ref_x)


def hole_fill_factor(p: DotParameters, bias_v: float) -> float:
    """How much negative bias speeds up filling the hole of X+ (1 at positive bias)."""
    return float(1.0 + np.exp(-(bias_v - p.xplus_bias_v) / p.xplus_width_v))


def dwell_scales(p: DotParameters, bias_v: float, excitations: float) -> tuple[float, float]:
    """Stretch of the reference on and off dwells (power-law blinking) under these controls.

    On dwells stretch by ``hole_fill / photo`` (inf with the laser off: no blinking), off
    dwells shrink by ``1 / hole_fill``: the factors that divide and multiply the Markov rates.
    """
    photo = photo_factor(p, excitations)
    hole_fill = hole_fill_factor(p, bias_v)
    return (hole_fill / photo if photo > 0.0 else math.inf), 1.0 / hole_fill


def stationary_distribution(q: NDArray[np.float64]) -> NDArray[np.float64]:
    """Occupation probabilities pi with pi Q = 0 for the rate matrix of :func:`rate_matrix`.

    Grassmann-Taksar-Heyman state reduction: no subtractions, so probabilities of 1e-15 come
    out with full relative precision (a linear solve loses them in round-off). The states are
    reduced from X+ (which always returns to X0) down the ladder to X0; a chain that cannot be
    reduced that way (a state that never moves down) falls back to least squares.
    """
    order = np.roll(np.arange(len(q)), -1)  # X0, X1-, ..., XL-, X+
    pi = _gth(np.asarray(q, dtype=np.float64)[np.ix_(order, order)])
    if pi is None:
        return _stationary_lstsq(q)
    out = np.empty_like(pi)
    out[order] = pi
    return out


def _gth(q: NDArray[np.float64]) -> NDArray[np.float64] | None:
    a = q.copy()
    np.fill_diagonal(a, 0.0)
    n = len(a)
    for k in range(n - 1, 0, -1):
        out = a[k, :k].sum()
        if not out > 0:
            return None
        a[:k, k] /= out
        a[:k, :k] += np.outer(a[:k, k], a[k, :k])
    pi = np.zeros(n)
    pi[0] = 1.0
    for k in range(1, n):
        pi[k] = pi[:k] @ a[:k, k]
    return pi / pi.sum()


def _stationary_lstsq(q: NDArray[np.float64]) -> NDArray[np.float64]:
    n = len(q)
    gen = q - np.diag(q.sum(axis=1))
    # Replace one balance equation by the normalisation.
    a = np.vstack([gen.T, np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi, *_ = np.linalg.lstsq(a, b, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


@numba.njit(cache=True)
def exit_rates(q: NDArray[np.float64]) -> NDArray[np.float64]:
    """Total rate out of each state (row sums of ``q`` without the diagonal)."""
    n = q.shape[0]
    out = np.zeros(n)
    for i in range(n):
        s = 0.0
        for j in range(n):
            if j != i:
                s += q[i, j]
        out[i] = s
    return out


@numba.njit(cache=True)
def next_jump_time(rng: NDArray[np.uint64], exit_rate: float, t_s: float) -> float:
    """Time of the next jump out of a state left at ``exit_rate`` (inf when it is 0)."""
    if exit_rate <= 0.0:
        return np.inf
    return t_s - np.log(1.0 - next_double(rng)) / exit_rate


@numba.njit(cache=True)
def jump_target(
    rng: NDArray[np.uint64], q: NDArray[np.float64], exit_rate: NDArray[np.float64], state: int
) -> int:
    """The state a jump from ``state`` goes to, drawn from its row of ``q``."""
    u = next_double(rng) * exit_rate[state]
    target = state
    acc = 0.0
    for j in range(q.shape[0]):
        if j == state:
            continue
        acc += q[state, j]
        target = j
        if u < acc:
            break
    return target


@numba.njit(cache=True)
def run_chain(
    rng: NDArray[np.uint64],
    q: NDArray[np.float64],
    state: int,
    next_jump_s: float,
    t_start_s: float,
    t_stop_s: float,
    out_t: NDArray[np.float64],
    out_state: NDArray[np.int64],
) -> tuple[int, int, float]:
    """Advance the chain from ``t_start_s`` to ``t_stop_s`` under the constant rates ``q``.

    ``next_jump_s`` is the pending jump time drawn earlier (NaN: draw one now, as after a change
    of rates; memorylessness makes that exact). Jumps are written to ``out_t``/``out_state``.

    Returns
    -------
    (n_jumps, state, next_jump_s)
        ``n_jumps == -1`` when the output arrays are too small: the caller restores ``rng``
        from a copy and calls again with larger arrays.
    """
    exit_rate = exit_rates(q)
    t_jump = next_jump_s
    if np.isnan(t_jump):
        t_jump = next_jump_time(rng, exit_rate[state], t_start_s)
    k = 0
    while t_jump < t_stop_s:
        if k >= len(out_t):
            return -1, state, t_jump
        state = jump_target(rng, q, exit_rate, state)
        out_t[k] = t_jump
        out_state[k] = state
        k += 1
        t_jump = next_jump_time(rng, exit_rate[state], t_jump)
    return k, state, t_jump


@numba.njit(cache=True)
def run_gated_chain(
    rng: NDArray[np.uint64],
    blink_rng: NDArray[np.uint64],
    q: NDArray[np.float64],
    law: NDArray[np.float64],
    gate: NDArray[np.float64],
    scale_on: float,
    scale_off: float,
    state: int,
    next_jump_s: float,
    t_start_s: float,
    t_stop_s: float,
    out_t: NDArray[np.float64],
    out_state: NDArray[np.int64],
) -> tuple[int, int, float]:
    """:func:`run_chain` with X0 <-> X+ gated by power-law dwells (``blinking="power-law"``).

    The blinking is an alternating renewal process: while "on" the dot moves among X0, X1-, ...
    by the Markov chain ``q`` (no X+ row or column); an on dwell ends in X+ whatever the state,
    an off dwell (X+) ends in X0. Dwells are drawn from :func:`~._blinking.dwell_law` ``law``
    in reference units (0 V, reference laser) on ``blink_rng`` and stretched by ``scale_on`` /
    ``scale_off`` (inf: the dwell never ends). A dwell in progress keeps its reference time left
    when the controls change (a time-rescaled process), so chunking changes nothing. ``gate``
    (see ``GATE_*``) is carried between calls and updated in place. Returns as :func:`run_chain`.
    """
    exit_rate = exit_rates(q)
    on = gate[GATE_ON] > 0.5
    scale = scale_on if on else scale_off
    if scale != gate[GATE_SCALE]:
        if gate[GATE_SCALE] < np.inf:  # NaN (a fresh gate) and inf have no elapsed fraction
            left = gate[GATE_LEFT] - (t_start_s - gate[GATE_T_REF]) / gate[GATE_SCALE]
            gate[GATE_LEFT] = max(left, 0.0)
        gate[GATE_T_REF] = t_start_s
        gate[GATE_SCALE] = scale
    t_switch = np.inf if scale == np.inf else gate[GATE_T_REF] + gate[GATE_LEFT] * scale
    t_jump = next_jump_s
    if np.isnan(t_jump):
        t_jump = next_jump_time(rng, exit_rate[state], t_start_s)
    k = 0
    while min(t_switch, t_jump) < t_stop_s:
        if k >= len(out_t):
            return -1, state, t_jump
        if t_switch <= t_jump:
            t_now = t_switch
            on = not on
            state = 1 if on else 0
            o = 0 if on else 3
            left = next_truncated_power_law(blink_rng, law[o], law[o + 1], law[o + 2])
            scale = scale_on if on else scale_off
            gate[GATE_ON] = 1.0 if on else 0.0
            gate[GATE_T_REF] = t_now
            gate[GATE_LEFT] = left
            gate[GATE_SCALE] = scale
            t_switch = np.inf if scale == np.inf else t_now + left * scale
        else:
            t_now = t_jump
            state = jump_target(rng, q, exit_rate, state)
        out_t[k] = t_now
        out_state[k] = state
        k += 1
        t_jump = next_jump_time(rng, exit_rate[state], t_now)
    return k, state, t_jump


@numba.njit(cache=True)
def run_chain_schedule(
    rng: NDArray[np.uint64],
    blink_rng: NDArray[np.uint64],
    q_levels: NDArray[np.float64],
    gated: bool,
    law: NDArray[np.float64],
    gate: NDArray[np.float64],
    scale_on: NDArray[np.float64],
    scale_off: NDArray[np.float64],
    seg_t: NDArray[np.float64],
    seg_level: NDArray[np.int64],
    t_stop_s: float,
    state: int,
    next_jump_s: float,
    out_t: NDArray[np.float64],
    out_state: NDArray[np.int64],
) -> tuple[int, int, float]:
    """:func:`run_chain` (or :func:`run_gated_chain`) through steps of different rates.

    Step ``i`` runs from ``seg_t[i]`` to ``seg_t[i + 1]`` (the last to ``t_stop_s``) under
    ``q_levels[seg_level[i]]`` (and the dwell scales of that level). A pending jump survives
    a step only when its level is that of the step before (memorylessness: a new rate means a
    fresh draw), so the trajectory does not depend on where the calls cut the steps.
    Returns as :func:`run_chain`.
    """
    k = 0
    nxt = next_jump_s
    n = len(seg_t)
    for i in range(n):
        a = seg_t[i]
        b = seg_t[i + 1] if i + 1 < n else t_stop_s
        level = seg_level[i]
        if i > 0 and level != seg_level[i - 1]:
            nxt = np.nan
        if b <= a:
            continue
        if gated:
            m, state, nxt = run_gated_chain(
                rng,
                blink_rng,
                q_levels[level],
                law,
                gate,
                scale_on[level],
                scale_off[level],
                state,
                nxt,
                a,
                b,
                out_t[k:],
                out_state[k:],
            )
        else:
            m, state, nxt = run_chain(
                rng, q_levels[level], state, nxt, a, b, out_t[k:], out_state[k:]
            )
        if m < 0:
            return -1, state, nxt
        k += m
    return k, state, nxt
