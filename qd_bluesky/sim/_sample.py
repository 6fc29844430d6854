"""A sample: a field of dots spin-coated on ITO, seen through the confocal spot.

One dot is the preset (``qd1`` or ``qd2``); the stage starts parked on it. The others are drawn
around it: about 30 % charge (beyond X2-) like the preset, with some spread of their parameters;
the rest never reach the conduction band in the bias window (no lifetime-intensity dip), and some
dots brighten under negative bias (traps passivated). Background and dark counts come with the
detection chain.

``field=N`` makes instead the survey's field of :mod:`._field`: N sites drawn from a documented
population, each with its truth (:attr:`Sample.sites`), the stage parked at the centre.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ._dot import DotParameters
from ._field import FieldSite, draw_field
from ._presets import resolve_preset
from ._stream import BIAS_RISE_TIME_S, MAX_DOTS, Detection, LaserSettings, PhotonEngine

#: Fraction of the dots that charge beyond X2- (the paper: "about 30 % of cases").
CHARGING_FRACTION = 0.3
#: Fraction of the dots that brighten under negative bias.
BRIGHTENING_FRACTION = 0.2
#: Closest distance between two dots: single dots are resolved by the confocal spot.
MIN_SEPARATION_UM = 1.5


class Sample(PhotonEngine):
    """A field of dots on ITO under a confocal microscope, an electrochemical cell, two APDs.

    Parameters
    ----------
    preset
        The dot the stage is parked on at start: a preset name or :class:`DotParameters`.
    seed
        Seed of the field layout and of every random stream.
    n_dots
        Dots in the field (the preset dot included).
    field_size_um
        Half-width of the square field; dots lie within ``[-field_size_um, field_size_um]``.
    detection
        The detection chain; defaults as in :class:`Detection`.
    laser
        Initial laser settings (default: emission on, 30 nW, 2.5 MHz).
    field
        Make the survey field of N sites (:func:`~._field.draw_field`) instead: ``preset``
        and ``n_dots`` are then not used, the stage starts at the centre.
    rise_time_s
        10-90 % rise time of the bias at the dots after a step: the cell's RC-like response
        (the paper's electronics: 2 us).
    """

    def __init__(
        self,
        preset: str | DotParameters = "qd1",
        seed: int = 0,
        *,
        n_dots: int = 24,
        field_size_um: float = 10.0,
        detection: Detection | None = None,
        laser: LaserSettings | None = None,
        field: int | None = None,
        rise_time_s: float = BIAS_RISE_TIME_S,
    ) -> None:
        home = resolve_preset(preset)
        if not 1 <= int(n_dots) <= MAX_DOTS:
            raise ValueError(f"n_dots must be in [1, {MAX_DOTS}], got {n_dots}")
        if not (math.isfinite(field_size_um) and field_size_um > 0):
            raise ValueError(f"field_size_um must be positive, got {field_size_um}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._field_size_um = float(field_size_um)
        self._sites: list[FieldSite] = []
        if field is not None:
            if not 1 <= int(field) <= MAX_DOTS // 2:
                raise ValueError(f"field must be in [1, {MAX_DOTS // 2}] sites, got {field}")
            self._sites, dots = draw_field(int(field), int(seed), float(field_size_um))
            self._home = (0.0, 0.0, 0.0)
        else:
            rng = np.random.default_rng([int(seed), 0x5A3])
            xy = _place_dots(rng, int(n_dots), float(field_size_um))
            params = [home] + [_field_dot(rng, home, i) for i in range(1, int(n_dots))]
            dots = [(p, (float(x), float(y), 0.0)) for p, (x, y) in zip(params, xy, strict=True)]
            self._home = (float(xy[0, 0]), float(xy[0, 1]), 0.0)
        super().__init__(
            dots,
            seed=int(seed),
            detection=detection,
            laser=laser,
            focus_um=self._home,
            rise_time_s=rise_time_s,
        )

    @property
    def home_um(self) -> tuple[float, float, float]:
        """Stage position parked on the preset dot."""
        return self._home

    @property
    def sites(self) -> list[FieldSite]:
        """The survey field's sites and their truth (empty unless made with ``field``)."""
        return list(self._sites)

    @property
    def field_size_um(self) -> float:
        """Half-width of the scan area; all dots lie within it."""
        return self._field_size_um

    @property
    def dot_positions_um(self) -> NDArray[np.float64]:
        """``(n_dots, 3)`` positions; row 0 is the preset dot."""
        return np.array([d.xyz for d in self._dots])

    def set_position(self, x_um: float, y_um: float, z_um: float, t_s: float) -> None:
        """Move the stage (the focus) to ``(x, y, z)`` at ``t_s``."""
        self.set_focus(x_um, y_um, z_um, t_s)


def _place_dots(rng: np.random.Generator, n: int, half_width: float) -> NDArray[np.float64]:
    """Random positions at least :data:`MIN_SEPARATION_UM` apart; the first one near the centre."""
    xy = np.empty((n, 2))
    xy[0] = rng.uniform(-0.5 * half_width, 0.5 * half_width, 2)
    k = 1
    tries = 0
    while k < n:
        p = rng.uniform(-half_width, half_width, 2)
        tries += 1
        if np.all(np.hypot(*(xy[:k] - p).T) >= MIN_SEPARATION_UM) or tries > 100 * n:
            xy[k] = p
            k += 1
    return xy


def _field_dot(rng: np.random.Generator, home: DotParameters, index: int) -> DotParameters:
    """A dot of the batch of ``home``: spread parameters, charging or not, maybe brightening."""

    def spread(sigma: float) -> float:
        return float(np.exp(rng.normal(0.0, sigma)))

    charging = rng.random() < CHARGING_FRACTION
    brightening = rng.random() < BRIGHTENING_FRACTION
    changes: dict = {
        "name": f"{home.name}-field-{index}",
        "tau_x0_s": home.tau_x0_s * spread(0.15),
        "detection_efficiency": home.detection_efficiency * spread(0.3),
        "excitations_at_reference": home.excitations_at_reference * spread(0.2),
        "ionization_rate_hz": home.ionization_rate_hz * spread(0.4),
        "photocharging_rate_hz": home.photocharging_rate_hz * spread(0.4),
    }
    if charging:
        changes["cb_edge_bias_v"] = home.cb_edge_bias_v + rng.normal(0.0, 0.05)
    else:
        # Poor contact or a higher conduction band: the window never reaches it.
        changes["cb_edge_bias_v"] = -2.6 + rng.normal(0.0, 0.1)
    if brightening:
        changes["trap_brightness"] = float(rng.uniform(0.35, 0.65))
        changes["brightening_bias_v"] = float(rng.uniform(-1.0, -0.5))
    return home.with_(**changes)
