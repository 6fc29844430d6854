"""One charged quantum dot: its parameters, its charge states and what each state emits.

The charge states are X+ (a hole left behind), X0, X1-, ..., XL- (L = ``n_levels``). The exciton
of ``Xk-`` (``N = k + 1`` electrons, one hole) decays by the statistical scaling model of the
paper (Eq. 1-2): radiative rate ``N gamma0``, Auger rate ``N (N - 1) gammaA``.

Beyond the dot-specific state ``X{many_body_from}-`` (m electrons beyond it) the many-body
correction multiplies the radiative rate by ``mb_radiative ** m`` (the electron-hole overlap
shrinks) and the Auger rate by ``mb_auger_onset * mb_auger ** (m - 1)`` (a step where the
correction sets in, then a steady growth): the dot gets dimmer than Eq. 1-2 allow for its
lifetime, which bends the FLID below the scaling model as the paper observes.

X+ has its own radiative and Auger rates (dim, a few ns). The biexciton of every state decays at
``2 gamma_X + gammaH`` (two holes double each exciton channel, plus a hole Auger channel), so its
yield relative to the exciton's, ``2 gamma_X / (2 gamma_X + gammaH)``, sets g2(0) and rises once the
charged exciton decays about as fast as the hole Auger process. docs/physics.md derives the presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Ground-truth charge state of photons that no dot emitted (background, dark counts).
NO_DOT_STATE = 127
#: Laser settings the presets are calibrated at (the paper's Figs. 2-5).
REFERENCE_POWER_W = 30e-9
REFERENCE_REP_RATE_HZ = 2.5e6
#: Potential of the Pt quasi-reference electrode against Ag/AgCl (sat.), Methods of the paper.
PT_QRE_VS_AGAGCL_V = 0.057
#: Boltzmann constant in eV/K.
K_B_EV = 8.617333262e-5


@dataclass(frozen=True)
class DotParameters:
    """Everything that makes one dot: optics, charging ladder, charge dynamics.

    Biases are in volts against the Pt quasi-reference electrode; rates in 1/s; times in s.
    """

    name: str = "dot"

    # --- exciton decay (statistical scaling model + many-body correction) ---
    #: Lifetime of the neutral exciton X0, 1/gamma0.
    tau_x0_s: float = 125e-9
    #: gammaA/gamma0, the single-pathway electron Auger rate over the X0 radiative rate.
    gamma_ratio: float = 0.5
    #: Positive trion X+: radiative and Auger rates over gamma0 (dim, a few ns).
    trion_radiative_ratio: float = 2.0
    trion_auger_ratio: float = 12.4
    #: gammaH/gamma0, the hole Auger channel of the biexciton. The biexciton decays at
    #: ``2 * gamma_X + gammaH`` (two holes double every exciton channel), so its yield over the
    #: exciton's, ``2 gamma_X / (2 gamma_X + gammaH)``, and with it g2(0), rises once the charged
    #: exciton's decay rate gamma_X becomes comparable to the hole Auger rate.
    hole_auger_ratio: float = 60.0
    #: Last charge state Xk- that follows Eq. 1-2; the correction starts beyond it.
    many_body_from: int = 4
    #: Radiative-rate factor per electron beyond ``many_body_from`` (< 1: overlap shrinks).
    mb_radiative: float = 1.0
    #: Electron-Auger-rate factor of the first state beyond ``many_body_from`` (the step where
    #: the correction sets in), and the further factor per electron after it (> 1).
    mb_auger_onset: float = 1.0
    mb_auger: float = 1.0

    # --- excitation and collection ---
    #: Mean number of excitations per pulse at the reference pulse energy (30 nW at 2.5 MHz);
    #: it scales with the pulse energy (power / repetition rate).
    excitations_at_reference: float = 0.3
    #: Detected fraction of emitted photons with the dot in focus (both APDs together).
    detection_efficiency: float = 0.05

    # --- electron ladder and electrochemical exchange ---
    #: Number of electron levels the bias window can fill (the highest state is X{n_levels}-).
    n_levels: int = 11
    #: Energy of the highest level above the conduction-band edge (3-D density of states:
    #: level k sits at ``level_width_ev * ((k - 1) / (n_levels - 1)) ** (2/3)``).
    level_width_ev: float = 0.12
    #: Screened Coulomb cost of each added electron.
    charging_energy_ev: float = 0.0
    #: Fraction of the bias that moves the electrode Fermi level against the dot's levels.
    lever_arm: float = 0.3
    #: Bias at which the electrode Fermi level reaches the conduction-band edge.
    cb_edge_bias_v: float = -1.45
    #: Electron exchange rate with the electrode at ``cb_edge_bias_v``.
    exchange_rate_hz: float = 300.0
    #: The exchange rate grows e-fold for every ``exchange_slope_v`` more negative bias.
    exchange_slope_v: float = 0.13
    #: Bounds of the exchange rate. The floor is the slow leak of extra electrons back to the
    #: electrode at positive bias: a dot charged at -2 V and stepped to 0 V empties in seconds.
    exchange_rate_min_hz: float = 5.0
    exchange_rate_max_hz: float = 3.0e4
    temperature_k: float = 295.0

    # --- photo-induced charging at the reference laser settings (blinking and flickering) ---
    #: X0 -> X+ (Auger ionisation; scales with the biexciton probability per pulse).
    ionization_rate_hz: float = 2.0
    #: X+ -> X0 at 0 V.
    neutralization_rate_hz: float = 25.0
    #: X0 -> X- (photo-charging; scales like ionisation).
    photocharging_rate_hz: float = 2.5
    #: X- -> X0.
    discharging_rate_hz: float = 10.0
    #: Negative bias fills the hole of X+: ionisation is divided and neutralisation multiplied
    #: by ``1 + exp(-(V - xplus_bias_v) / xplus_width_v)``.
    xplus_bias_v: float = -1.0
    xplus_width_v: float = 0.08
    #: X0 <-> X+ blinking model: "markov" (the two rates above) or "power-law" (dwells from the
    #: truncated power laws below, ``t^-alpha exp(-t / cutoff)`` for ``t >= min``, at 0 V and
    #: the reference laser; bias and fluence stretch them like the Markov rates). See
    #: docs/physics.md ("Power-law blinking") for the literature values.
    blinking: str = "markov"
    on_alpha: float = 1.6
    on_min_s: float = 1e-3
    on_cutoff_s: float = 10.0
    off_alpha: float = 1.5
    off_min_s: float = 1e-3
    off_cutoff_s: float = 0.5

    # --- brightness versus bias (trap passivation, "some dots brighten") ---
    #: Brightness at 0 V relative to the passivated dot (1 = no brightening).
    trap_brightness: float = 1.0
    brightening_bias_v: float = -0.8
    brightening_width_v: float = 0.1

    # --- photobleaching ---
    #: Seconds in the focus centre with the laser on (PSF-weighted) after which the dot is
    #: dark for good; inf: it never bleaches.
    bleach_dose_s: float = math.inf

    #: Free-form notes (e.g. what the preset was calibrated to).
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        positive = (
            "tau_x0_s",
            "excitations_at_reference",
            "detection_efficiency",
            "lever_arm",
            "exchange_slope_v",
            "temperature_k",
            "xplus_width_v",
            "brightening_width_v",
            "mb_radiative",
            "mb_auger",
            "mb_auger_onset",
            "trion_radiative_ratio",
            "exchange_rate_min_hz",
            "on_min_s",
            "on_cutoff_s",
            "off_min_s",
            "off_cutoff_s",
            "bleach_dose_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"DotParameters.{name} must be positive, got {getattr(self, name)}"
                )
        nonneg = (
            "gamma_ratio",
            "hole_auger_ratio",
            "trion_auger_ratio",
            "level_width_ev",
            "charging_energy_ev",
            "exchange_rate_hz",
            "ionization_rate_hz",
            "neutralization_rate_hz",
            "photocharging_rate_hz",
            "discharging_rate_hz",
        )
        for name in nonneg:
            if not getattr(self, name) >= 0:
                raise ValueError(f"DotParameters.{name} must be >= 0, got {getattr(self, name)}")
        if self.blinking not in ("markov", "power-law"):
            raise ValueError(
                f"DotParameters.blinking must be 'markov' or 'power-law', got {self.blinking!r}"
            )
        for name in ("on_alpha", "off_alpha"):
            if not 1.0 < getattr(self, name) < 10.0:
                raise ValueError(
                    f"DotParameters.{name} must be in (1, 10), got {getattr(self, name)}"
                )
        if self.exchange_rate_max_hz < self.exchange_rate_min_hz:
            raise ValueError(
                f"DotParameters.exchange_rate_max_hz ({self.exchange_rate_max_hz}) must be >= "
                f"exchange_rate_min_hz ({self.exchange_rate_min_hz})"
            )
        if self.n_levels < 1:
            raise ValueError(f"DotParameters.n_levels must be >= 1, got {self.n_levels}")
        if self.many_body_from < 0:
            raise ValueError(
                f"DotParameters.many_body_from must be >= 0, got {self.many_body_from}"
            )
        if not 0 < self.trap_brightness <= 10:
            raise ValueError(
                f"DotParameters.trap_brightness must be in (0, 10], got {self.trap_brightness}"
            )

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_states(self) -> int:
        """X+, X0 and X1- ... X{n_levels}-."""
        return self.n_levels + 2

    @property
    def charges(self) -> NDArray[np.int8]:
        """Charge of each state in the paper's labels: +1 (X+), 0 (X0), -k (Xk-)."""
        return np.concatenate(([1, 0], -np.arange(1, self.n_levels + 1))).astype(np.int8)

    def states(self) -> StateTable:
        """Lifetimes, yields and biexciton properties of every charge state."""
        return StateTable.of(self)

    def level_energies_ev(self) -> NDArray[np.float64]:
        """Addition energy of the k-th electron above the conduction-band edge, k = 1..L."""
        k = np.arange(1, self.n_levels + 1, dtype=float)
        shape = ((k - 1) / max(self.n_levels - 1, 1)) ** (2.0 / 3.0)
        return self.level_width_ev * shape + self.charging_energy_ev * (k - 1)

    def fermi_level_ev(self, bias_v: float) -> float:
        """Electrode Fermi level above the conduction-band edge at ``bias_v``."""
        return self.lever_arm * (self.cb_edge_bias_v - bias_v)

    def exchange_rate(self, bias_v: float) -> float:
        """Electron exchange rate with the electrode (Butler-Volmer-like, bounded)."""
        x = min((self.cb_edge_bias_v - bias_v) / self.exchange_slope_v, 700.0)
        rate = self.exchange_rate_hz * np.exp(x)
        return float(min(max(rate, self.exchange_rate_min_hz), self.exchange_rate_max_hz))

    def brightness(self, bias_v: float) -> float:
        """Fraction of excitations that reach the band edge (hot-carrier trapping, B-type)."""
        passivated = 1.0 / (
            1.0 + np.exp((bias_v - self.brightening_bias_v) / self.brightening_width_v)
        )
        return float(self.trap_brightness + (1.0 - self.trap_brightness) * passivated)

    def excitations_per_pulse(self, power_w: float, rep_rate_hz: float) -> float:
        """Mean excitations per pulse: proportional to the pulse energy."""
        pulse_j = power_w / rep_rate_hz
        ref_j = REFERENCE_POWER_W / REFERENCE_REP_RATE_HZ
        return self.excitations_at_reference * pulse_j / ref_j

    def with_(self, **changes: Any) -> DotParameters:
        """A copy with some parameters changed."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def exciton_rates(p: DotParameters) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Radiative and non-radiative (Auger) rates (1/s) of the exciton in every charge state."""
    gamma0 = 1.0 / p.tau_x0_s
    extra = np.arange(0, p.n_levels + 1, dtype=float)  # extra electrons of X0, X1-, ...
    n_e = extra + 1.0
    beyond = np.maximum(0.0, extra - p.many_body_from)
    k_rad = n_e * gamma0 * p.mb_radiative**beyond
    auger_factor = np.where(
        beyond > 0, p.mb_auger_onset * p.mb_auger ** np.maximum(beyond - 1.0, 0.0), 1.0
    )
    k_aug = n_e * (n_e - 1.0) * p.gamma_ratio * gamma0 * auger_factor
    # X+: two holes, one electron (radiative 2 gamma0 in the simplest picture), and the
    # positive-trion (e-h-h) Auger rate.
    k_rad = np.concatenate(([p.trion_radiative_ratio * gamma0], k_rad))
    k_aug = np.concatenate(([p.trion_auger_ratio * gamma0], k_aug))
    return k_rad, k_aug


@dataclass(frozen=True)
class StateTable:
    """Per charge state (index 0 = X+, 1 = X0, 1 + k = Xk-): what an excitation gives."""

    charge: NDArray[np.int8]
    #: Exciton lifetime and quantum yield (X0 has yield 1: losses are in the detection).
    tau_s: NDArray[np.float64]
    qy: NDArray[np.float64]
    #: Biexciton (cascade) lifetime and yield of its first photon.
    tau_xx_s: NDArray[np.float64]
    qy_xx: NDArray[np.float64]

    @classmethod
    def of(cls, p: DotParameters) -> StateTable:
        k_rad, k_aug = exciton_rates(p)
        k_tot = k_rad + k_aug
        # Biexciton: two holes double every exciton channel; the hole Auger channel competes.
        k_xx = 2.0 * k_tot + p.hole_auger_ratio / p.tau_x0_s
        return cls(
            charge=p.charges,
            tau_s=1.0 / k_tot,
            qy=k_rad / k_tot,
            tau_xx_s=1.0 / k_xx,
            qy_xx=2.0 * k_rad / k_xx,
        )

    def __len__(self) -> int:
        return len(self.charge)

    def index_of(self, charge: int) -> int:
        """Row of the state with this charge label (+1, 0, -1, ...)."""
        rows = np.flatnonzero(self.charge == charge)
        if len(rows) == 0:
            raise ValueError(f"no charge state {charge}; states go from +1 to {self.charge[-1]}")
        return int(rows[0])


def emission_probabilities(
    table: StateTable, excitations: float, efficiency: float
) -> NDArray[np.float64]:
    """Per state and pulse, the probabilities of the four ways to detect something.

    Poisson excitation with mean ``excitations``: one exciton, or two and more (a biexciton
    that emits a cascade photon before the exciton). ``efficiency`` is the detected fraction of
    emitted photons (collection x detector x brightness). Columns:

    0. one exciton, its photon detected;
    1. biexciton, only the exciton photon detected;
    2. biexciton, only the cascade photon detected;
    3. biexciton, both detected.
    """
    x = float(excitations)
    p1 = -np.expm1(-x)  # at least one excitation
    p2 = p1 - x * np.exp(-x)  # at least two
    a = np.clip(table.qy * efficiency, 0.0, 1.0)
    b = np.clip(table.qy_xx * efficiency, 0.0, 1.0)
    out = np.empty((len(table), 4))
    out[:, 0] = (p1 - p2) * a
    out[:, 1] = p2 * a * (1.0 - b)
    out[:, 2] = p2 * (1.0 - a) * b
    out[:, 3] = p2 * a * b
    return out


def detected_photons_per_pulse(probs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean detected photons per pulse (before dead time) from :func:`emission_probabilities`."""
    return probs[:, 0] + probs[:, 1] + probs[:, 2] + 2.0 * probs[:, 3]
