"""Expected values without photons: steady state of a dot at a static bias (for planning)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from ._charging import rate_matrix, stationary_distribution
from ._dot import (
    REFERENCE_POWER_W,
    REFERENCE_REP_RATE_HZ,
    DotParameters,
    detected_photons_per_pulse,
    emission_probabilities,
)
from ._presets import resolve_preset
from ._stream import DAMAGE_BACKGROUND_GAIN, DAMAGE_QUENCH, Detection


@dataclass(frozen=True)
class SteadyState:
    """What a dot in focus gives at a static bias, from the model (no sampling noise)."""

    bias_v: float
    #: Charge labels (+1, 0, -1, ...) and their occupation probabilities.
    charges: NDArray[np.int8]
    occupation: NDArray[np.float64]
    #: Detected photons per second of each state (dot only, both APDs, before dead time).
    state_rate_cps: NDArray[np.float64]
    #: Mean detected rate, dot plus background plus dark counts (both APDs).
    rate_cps: float
    #: Background + dark counts in ``rate_cps``.
    background_cps: float
    #: Photon-weighted mean of the state lifetimes.
    mean_lifetime_s: float
    #: g2(0) by the paper's definition (zero peak / mean of the first 3 side peaks, windows of
    #: one period, no background subtraction), for states that switch slowly against the laser
    #: period; includes the overlap of neighbouring peaks for long decays.
    g2_zero: float

    @property
    def mean_charge(self) -> float:
        return float(self.occupation @ self.charges)


def steady_state(
    preset: str | DotParameters,
    bias_v: float,
    *,
    power_w: float = REFERENCE_POWER_W,
    rep_rate_hz: float = REFERENCE_REP_RATE_HZ,
    detection: Detection | None = None,
    damage: float = 0.0,
) -> SteadyState:
    """Expected occupation, rate, lifetime and g2(0) of a dot in focus at a static bias."""
    p = resolve_preset(preset)
    det = detection or Detection()
    table = p.states()
    x = p.excitations_per_pulse(power_w, rep_rate_hz)
    pi = stationary_distribution(rate_matrix(p, bias_v, x, damage=damage))
    eff = p.detection_efficiency * p.brightness(bias_v) * (1.0 - DAMAGE_QUENCH * damage)
    probs = emission_probabilities(table, x, eff)
    per_pulse = detected_photons_per_pulse(probs)
    bg_cps = (
        det.background_cps * power_w / REFERENCE_POWER_W * (1 + DAMAGE_BACKGROUND_GAIN * damage)
    )
    bg_cps += 2.0 * det.dark_cps
    b = bg_cps / rep_rate_hz
    w = pi * per_pulse
    # Cross-correlation of the two APDs per pulse pair (paper's definition: peak windows
    # [kT - T/2, kT + T/2), no background subtraction). Same pulse: both photons of a pulse split
    # with probability 2 s (1 - s). Pulses k apart: s (1 - s) d^2. A decay that is not short
    # against T moves pairs between windows: the delay difference of two photons is Laplace
    # distributed (scale tau), so window k collects a fraction P(k) of the pairs of lag 0 and
    # 1 - P(k) of the (equal) side-lag pairs. Background is flat and uncorrelated.
    s = det.splitter
    period = 1.0 / rep_rate_hz
    zero_pairs = 2 * s * (1 - s) * probs[:, 3]
    side_pairs = s * (1 - s) * per_pulse**2
    flat = s * (1 - s) * (2 * per_pulse * b + b * b)

    def shift(k: int) -> NDArray[np.float64]:
        a = np.exp(-(2 * abs(k) - 1) * period / (2 * table.tau_s)) if k else 0.0
        c = np.exp(-(2 * abs(k) + 1) * period / (2 * table.tau_s))
        return 0.5 * (a - c) if k else 1.0 - c

    def window(k: int) -> float:
        pk = shift(k)
        return float(pi @ (side_pairs * (1 - pk) + zero_pairs * pk + flat))

    g2_zero = window(0) / np.mean([window(k) for k in (-3, -2, -1, 1, 2, 3)])
    return SteadyState(
        bias_v=float(bias_v),
        charges=table.charge,
        occupation=pi,
        state_rate_cps=per_pulse * rep_rate_hz,
        rate_cps=float(pi @ per_pulse) * rep_rate_hz + bg_cps,
        background_cps=bg_cps,
        mean_lifetime_s=float(w @ table.tau_s / w.sum()),
        g2_zero=float(g2_zero),
    )


@numba.njit(cache=True)
def _emg_cdf(x: NDArray[np.float64], rate: float, sigma: float) -> NDArray[np.float64]:
    """CDF of an exponential (``rate``) delay convolved with a Gaussian (``sigma``).

    ``Phi(x/s) - exp(-r x + r^2 s^2 / 2) Phi((x - r s^2)/s)``; the second term is evaluated in
    logs (with the asymptotic log Phi far in the tail) so that it never overflows.
    """
    out = np.empty(len(x))
    for i in range(len(x)):
        if sigma <= 0.0:
            out[i] = -math.expm1(-rate * x[i]) if x[i] > 0.0 else 0.0
            continue
        z = (x[i] - rate * sigma * sigma) / sigma
        log_tail = -rate * x[i] + 0.5 * (rate * sigma) ** 2 + _log_ndtr(z)
        out[i] = 0.5 * math.erfc(-x[i] / (sigma * math.sqrt(2.0))) - math.exp(log_tail)
    return out


@numba.njit(cache=True)
def _log_ndtr(z: float) -> float:
    """log of the standard normal CDF, accurate far into the lower tail."""
    if z > -30.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    # Mills ratio: Phi(z) ~ phi(z) / |z| (1 - 1/z^2 + 3/z^4)
    z2 = z * z
    return -0.5 * z2 - math.log(-z * math.sqrt(2.0 * math.pi)) + math.log1p(-1 / z2 + 3 / z2**2)


def _periodic_bins(
    rate: float, n_bins: int, period_bins: float, offset_bins: float, sigma_bins: float
) -> NDArray[np.float64]:
    """Fraction of an exponential's photons per microtime bin, earlier pulses' tails included."""
    edges = np.arange(n_bins + 1, dtype=float) - offset_bins
    out = np.zeros(n_bins)
    # Pulse k periods earlier: its photons arrive k periods later in our frame.
    k_max = int(np.ceil(40.0 / (rate * period_bins))) + 1
    for k in range(k_max + 1):
        c = _emg_cdf(edges + k * period_bins, rate, sigma_bins)
        out += np.diff(c)
    return out


def expected_decay_histogram(
    preset: str | DotParameters,
    bias_v: float,
    *,
    duration_s: float = 1.0,
    power_w: float = REFERENCE_POWER_W,
    rep_rate_hz: float = REFERENCE_REP_RATE_HZ,
    detection: Detection | None = None,
    damage: float = 0.0,
) -> NDArray[np.float64]:
    """Expected photons per microtime bin of a static-bias measurement (dot in focus).

    Every photon path of the generator is included: exciton photons of each charge state,
    biexciton cascade photons and the exciton photons that follow them, the Gaussian IRF, the
    tails of earlier pulses, background and dark counts. Dead time is neglected (it loses
    fewer than ``rate * dead_time`` of the photons).
    """
    p = resolve_preset(preset)
    det = detection or Detection()
    ss = steady_state(
        p, bias_v, power_w=power_w, rep_rate_hz=rep_rate_hz, detection=det, damage=damage
    )
    table = p.states()
    unit = det.microtime_unit_s
    period_bins = 1.0 / (rep_rate_hz * unit)
    n_bins = min(int(round(period_bins)), det.max_microtime_bins)
    offset = det.irf_offset_s / unit
    sigma = det.irf_fwhm_s / (2.0 * np.sqrt(2.0 * np.log(2.0))) / unit
    x = p.excitations_per_pulse(power_w, rep_rate_hz)
    eff = p.detection_efficiency * p.brightness(bias_v) * (1.0 - DAMAGE_QUENCH * damage)
    probs = emission_probabilities(table, x, eff)
    pulses = duration_s * rep_rate_hz
    hist = np.zeros(n_bins)
    for s, occ in enumerate(ss.occupation):
        if occ < 1e-9:
            continue
        k_x = 1.0 / (table.tau_s[s] / unit)
        k_xx = 1.0 / (table.tau_xx_s[s] / unit)
        c0, c1, c2, c3 = probs[s] * occ * pulses
        shape_x = _periodic_bins(k_x, n_bins, period_bins, offset, sigma)
        shape_xx = _periodic_bins(k_xx, n_bins, period_bins, offset, sigma)
        # Exciton after a biexciton: the sum of two exponential delays (hypoexponential), a
        # difference of the two exponential densities.
        if abs(k_xx - k_x) > 1e-9 * k_xx:
            hypo = (k_xx * shape_x - k_x * shape_xx) / (k_xx - k_x)
        else:
            hypo = shape_x
        hist += c0 * shape_x + (c1 + c3) * hypo + (c2 + c3) * shape_xx
    bg = det.background_cps * power_w / REFERENCE_POWER_W * (1 + DAMAGE_BACKGROUND_GAIN * damage)
    k_bg = 1.0 / (det.background_lifetime_s / unit)
    hist += bg * duration_s * _periodic_bins(k_bg, n_bins, period_bins, offset, sigma)
    hist += 2.0 * det.dark_cps * duration_s / period_bins
    return hist
