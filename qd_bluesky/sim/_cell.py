"""The electrochemical cell: ITO working electrode, Pt quasi-reference, Pt coil counter electrode.

Biases are against the Pt quasi-reference electrode (+57 mV vs Ag/AgCl), as the paper reports them.
Currents follow the IUPAC sign convention: cathodic (reduction, negative bias) currents are
negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The cell's safe window, as the potentiostat IOC and device enforce it by default.
SAFE_BIAS_LOW_V = -2.0
SAFE_BIAS_HIGH_V = 1.0
#: What the cell physically tolerates at all (the potentiostat's compliance); beyond it: error.
PHYSICAL_BIAS_LIMIT_V = 5.0
#: Below this bias the ITO is reduced: irreversible damage.
ITO_DAMAGE_BIAS_V = -2.0


def check_physical_bias(bias_v: float) -> float:
    """The bias as a float, or ValueError when it is not a number or beyond the compliance."""
    try:
        v = float(bias_v)
    except (TypeError, ValueError):
        raise ValueError(f"bias must be a number of volts, got {bias_v!r}") from None
    if not math.isfinite(v) or abs(v) > PHYSICAL_BIAS_LIMIT_V:
        raise ValueError(
            f"bias {bias_v} V is outside the cell's physical range "
            f"+-{PHYSICAL_BIAS_LIMIT_V} V (vs Pt quasi-reference)"
        )
    return v


@dataclass
class CellParameters:
    """Double layer, faradaic onsets and noise of the cell (defaults: ~0.5 cm2 of ITO)."""

    #: Double-layer capacitance of the ITO electrode.
    capacitance_f: float = 4e-6
    #: Cathodic (electrolyte/solvent reduction) current at its onset bias, and the onset.
    cathodic_onset_v: float = -1.9
    cathodic_onset_current_a: float = 0.5e-6
    #: Anodic onset near the positive limit.
    anodic_onset_v: float = 1.0
    anodic_onset_current_a: float = 0.5e-6
    #: Tafel-like slope of both onsets (e-fold per this many volts).
    onset_slope_v: float = 0.1
    #: ITO reduction below -2 V: scale and e-fold slope of the extra cathodic current.
    ito_reduction_current_a: float = 2e-6
    ito_reduction_slope_v: float = 0.05
    #: RMS current noise of the potentiostat.
    noise_a: float = 2e-9
    #: Damage grows as ``1 - exp(-integral of (-2 V - bias) dt / damage_dose_vs)``.
    damage_dose_vs: float = 0.1


class ElectrochemicalCell:
    """Current of the cell for any bias waveform, and the irreversible ITO damage below -2 V.

    Parameters
    ----------
    seed
        Seed of the current noise (same seed and same calls: same currents).
    params
        Cell constants; defaults as in :class:`CellParameters`.
    """

    def __init__(self, seed: int = 0, params: CellParameters | None = None) -> None:
        self.params = params or CellParameters()
        self._rng = np.random.default_rng([int(seed), 0xCE11])
        self._damage = 0.0
        self._damaged = False
        #: (time_s, bias_v) of every exposure below -2 V, in order.
        self.damage_log: list[tuple[float, float]] = []

    @property
    def damaged(self) -> bool:
        """True once the bias went below -2 V (the ITO was reduced): it stays True."""
        return self._damaged

    @property
    def damage(self) -> float:
        """Extent of the damage, 0 (pristine) .. 1 (fully degraded ITO)."""
        return self._damage

    def expose(self, bias_v: float, t_s: float, duration_s: float = 0.0) -> None:
        """Record that the electrode sat at ``bias_v`` from ``t_s`` for ``duration_s``."""
        if bias_v >= ITO_DAMAGE_BIAS_V:
            return
        if not self._damaged or not self.damage_log or self.damage_log[-1][1] != bias_v:
            self.damage_log.append((float(t_s), float(bias_v)))
        self._damaged = True
        dose = (ITO_DAMAGE_BIAS_V - bias_v) * max(duration_s, 0.0) / self.params.damage_dose_vs
        self._damage = 1.0 - (1.0 - self._damage) * math.exp(-dose)

    def faradaic_current_a(self, bias_v: float) -> float:
        """Noise-free faradaic current at ``bias_v`` (IUPAC: cathodic negative)."""
        p = self.params
        i = -p.cathodic_onset_current_a * math.exp(
            min((p.cathodic_onset_v - bias_v) / p.onset_slope_v, 50.0)
        )
        i += p.anodic_onset_current_a * math.exp(
            min((bias_v - p.anodic_onset_v) / p.onset_slope_v, 50.0)
        )
        if bias_v < ITO_DAMAGE_BIAS_V:
            x = min((ITO_DAMAGE_BIAS_V - bias_v) / p.ito_reduction_slope_v, 50.0)
            i -= p.ito_reduction_current_a * math.expm1(x)
        # A reduced (damaged) electrode has more area and more defect sites.
        return i * (1.0 + self._damage)

    def capacitance_f(self) -> float:
        """Double-layer capacitance, larger once the ITO is roughened by reduction."""
        return self.params.capacitance_f * (1.0 + 0.5 * self._damage)

    def current_a(self, bias_v: float, dbias_dt_v_per_s: float, t_s: float) -> float:
        """Current through the working electrode: ``C dV/dt`` + faradaic onsets + noise.

        Parameters
        ----------
        bias_v
            Bias vs the Pt quasi-reference.
        dbias_dt_v_per_s
            Sweep rate (0 at static bias).
        t_s
            Time of the reading (kept for the record; the noise is drawn in call order).
        """
        del t_s  # the noise is white: it depends on the call order only
        i = self.capacitance_f() * float(dbias_dt_v_per_s) + self.faradaic_current_a(float(bias_v))
        return float(i + self.params.noise_a * self._rng.standard_normal())
