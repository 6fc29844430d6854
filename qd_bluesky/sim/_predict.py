"""Expected values without photons: steady state of a dot at a static bias (for planning)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._charging import rate_matrix, stationary_distribution
from ._dot import REFERENCE_POWER_W, REFERENCE_REP_RATE_HZ, DotParameters, emission_probabilities
from ._dot import detected_photons_per_pulse
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
    #: g2(0) by the paper's definition (zero peak / side peaks, no background subtraction),
    #: for states that switch slowly against the laser period.
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
    bg_cps = det.background_cps * power_w / REFERENCE_POWER_W * (1 + DAMAGE_BACKGROUND_GAIN * damage)
    bg_cps += 2.0 * det.dark_cps
    b = bg_cps / rep_rate_hz
    w = pi * per_pulse
    # Cross-correlation of the two APDs per pulse pair: both photons of a pulse split with
    # probability 2 s (1 - s); background is Poisson and uncorrelated with the dot.
    s = det.splitter
    zero = pi @ (2 * s * (1 - s) * probs[:, 3] + (s * (1 - s)) * (2 * per_pulse * b + b * b))
    side = pi @ (s * (1 - s) * (per_pulse + b) ** 2)
    return SteadyState(
        bias_v=float(bias_v),
        charges=table.charge,
        occupation=pi,
        state_rate_cps=per_pulse * rep_rate_hz,
        rate_cps=float(pi @ per_pulse) * rep_rate_hz + bg_cps,
        background_cps=bg_cps,
        mean_lifetime_s=float(w @ table.tau_s / w.sum()),
        g2_zero=float(zero / side),
    )


def _emg_cdf(x: NDArray[np.float64], rate: float, sigma: float) -> NDArray[np.float64]:
    """CDF of an exponential (``rate``) delay convolved with a Gaussian (``sigma``)."""
    from scipy.special import log_ndtr, ndtr

    if sigma <= 0:
        return np.where(x > 0, -np.expm1(-rate * np.maximum(x, 0.0)), 0.0)
    # exp(-r x + r^2 s^2 / 2) * Phi((x - r s^2) / s), in logs to stay finite for any x.
    tail = np.exp(-rate * x + 0.5 * (rate * sigma) ** 2 + log_ndtr((x - rate * sigma**2) / sigma))
    return ndtr(x / sigma) - tail


def _periodic_bins(
    rate: float, n_bins: int, period_bins: float, offset_bins: float, sigma_bins: float
) -> NDArray[np.float64]:
    """Fraction of an exponential's photons in each microtime bin, earlier pulses' tails included."""
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
