"""The simulated sample behind the four IOCs, and one backend per instrument on it.

:class:`SimulatedSample` keeps the one clock the sample needs (times never go backwards) and
the little cross-instrument state a real lab has in its wiring: the laser's interlock, whether
the TCSPC card is acquiring, the bias and current the potentiostat applies. Each
``Simulated<Instrument>`` class implements that instrument's protocol of :mod:`._backends` on
it, so an IOC sees its own instrument only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._backends import PhotonBlock

#: What the simulated potentiostat can apply at all; the safe window must lie inside it.
HARDWARE_RANGE_V = (-5.0, 5.0)
#: Laser state at start-up: on, so the count rates are those of the parked dot.
DEFAULT_LASER = {"emission": True, "power_w": 30e-9, "rep_rate_hz": 2.5e6}


class SimulatedSample:
    """One :class:`qd_bluesky.sim.Sample` on one monotonic clock, shared by the IOCs.

    Parameters
    ----------
    preset
        Dot preset of :data:`qd_bluesky.sim.PRESETS` (e.g. ``"qd1"``).
    seed
        Seed of the sample's random generator (dot field, photons, noise).
    clock
        Seconds, monotonic; the sample's time is ``clock() - clock()`` at construction.
    field, area_um
        The survey field of ``field`` sites in a square of side ``area_um`` instead of the
        preset's field (:class:`qd_bluesky.sim.Sample`).
    """

    def __init__(
        self,
        preset: str = "qd1",
        seed: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        field: int | None = None,
        area_um: float | None = None,
    ) -> None:
        from qd_bluesky.sim import Sample, warm_up  # the IOCs are the only place that knows it

        warm_up()  # compile the kernels now, not inside the IOC's event loop
        extra = {}
        if field is not None:
            from qd_bluesky.sim import default_area_um

            side = default_area_um(field) if area_um is None else area_um
            extra = {"field": field, "field_size_um": 0.5 * side}
        self.sample = Sample(preset=preset, seed=seed, **extra)
        self.preset = preset
        self.seed = seed
        self._clock = clock
        self._t0 = clock()
        self._t = 0.0
        self.bias_v = 0.0
        self.current_a = 0.0
        self.emission = DEFAULT_LASER["emission"]
        self.power_w = DEFAULT_LASER["power_w"]
        self.rep_rate_hz = DEFAULT_LASER["rep_rate_hz"]
        self.interlock_open = False
        #: Set by the TCSPC IOC while a photon file is open.
        self.acquiring = False
        #: (t_s, bias_v, current_a) of each bias change while acquiring, for photon markers.
        self.bias_log: list[tuple[float, float, float]] = []
        x_um, y_um, z_um = (float(v) for v in self.sample.home_um)
        self.position_um: tuple[float, float, float] = (x_um, y_um, z_um)
        t = self.now()
        self.sample.set_laser(
            emission=self.emission, power_w=self.power_w, rep_rate_hz=self.rep_rate_hz, t_s=t
        )
        self.sample.set_position(*self.position_um, t_s=t)
        self.sample.set_bias(self.bias_v, t)
        self.current_a = float(self.sample.cell.current_a(self.bias_v, 0.0, t))

    def now(self) -> float:
        """Seconds on the sample's clock; never smaller than a time already used."""
        self._t = max(self._t, self._clock() - self._t0)
        return self._t

    # -- controls ---------------------------------------------------------------------------

    def set_bias(self, bias_v: float, *, dbias_dt_v_per_s: float = 0.0) -> float:
        """Apply ``bias_v`` now; update :attr:`current_a`; return the sample time used."""
        t = self.now()
        self.sample.set_bias(float(bias_v), t)
        self.bias_v = float(bias_v)
        self.current_a = float(self.sample.cell.current_a(self.bias_v, dbias_dt_v_per_s, t))
        if self.acquiring:
            self.bias_log.append((t, self.bias_v, self.current_a))
        return t

    def read_current(self) -> float:
        """A fresh reading of the cell current at the present (static) bias."""
        self.current_a = float(self.sample.cell.current_a(self.bias_v, 0.0, self.now()))
        return self.current_a

    def drain_bias_log(self) -> list[tuple[float, float, float]]:
        """The (time, bias, current) of every bias change since the last call."""
        log, self.bias_log = self.bias_log, []
        return log

    def set_laser(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        """Change the excitation now (emission is forced off while the interlock is open)."""
        emission = bool(emission) and not self.interlock_open
        self.sample.set_laser(
            emission=emission,
            power_w=float(power_w),
            rep_rate_hz=float(rep_rate_hz),
            t_s=self.now(),
        )
        self.emission, self.power_w, self.rep_rate_hz = emission, float(power_w), float(rep_rate_hz)

    def set_position(self, x_um: float, y_um: float, z_um: float) -> None:
        """Move the focus to (x, y, z) now."""
        self.sample.set_position(float(x_um), float(y_um), float(z_um), t_s=self.now())
        self.position_um = (float(x_um), float(y_um), float(z_um))

    # -- photons ----------------------------------------------------------------------------

    def advance(self):
        """All photons detected since the previous call, up to now (a ``PhotonChunk``)."""
        return self.sample.advance(self.now())

    @property
    def microtime_unit_s(self) -> float:
        return float(self.sample.microtime_unit_s)

    @property
    def microtime_bins(self) -> int:
        return int(self.sample.microtime_bins)


class _OnSample:
    """A backend that acts on the shared :class:`SimulatedSample`."""

    def __init__(self, sample: SimulatedSample) -> None:
        self.sample = sample


class _CellReadings(_OnSample):
    """The cell's bias and current: the potentiostat's own, and the TCSPC card's markers."""

    @property
    def bias_v(self) -> float:
        return self.sample.bias_v

    @property
    def current_a(self) -> float:
        return self.sample.current_a

    def read_current(self) -> float:
        return self.sample.read_current()


class SimulatedPotentiostat(_CellReadings):
    """:class:`~._backends.PotentiostatBackend` on a :class:`SimulatedSample`."""

    hardware_range_v = HARDWARE_RANGE_V

    def apply_bias(self, bias_v: float, *, dbias_dt_v_per_s: float = 0.0) -> None:
        self.sample.set_bias(bias_v, dbias_dt_v_per_s=dbias_dt_v_per_s)


class SimulatedLaser(_OnSample):
    """:class:`~._backends.LaserBackend` on a :class:`SimulatedSample`."""

    @property
    def rep_rate_locked(self) -> bool:
        return self.sample.acquiring

    def set_output(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        self.sample.set_laser(emission=emission, power_w=power_w, rep_rate_hz=rep_rate_hz)

    def set_interlock(self, is_open: bool) -> None:
        self.sample.interlock_open = bool(is_open)


class SimulatedStage(_OnSample):
    """:class:`~._backends.StageBackend` on a :class:`SimulatedSample`."""

    @property
    def position_um(self) -> tuple[float, float, float]:
        return self.sample.position_um

    def move_to(self, x_um: float, y_um: float, z_um: float) -> None:
        self.sample.set_position(x_um, y_um, z_um)


class SimulatedTcspc(_CellReadings):
    """:class:`~._backends.TcspcBackend` on a :class:`SimulatedSample`.

    Of the card's settings (:meth:`configure`) it simulates the sync divider (in T3 the
    macrotime counts divided syncs and the microtime spans the divided period), the input
    enables and the mode; the others are kept and read back. Its warnings say a divider > 1
    in T3 and an enabled input that counts nothing.
    """

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__(sample)
        self.settings: dict[str, Any] = {"mode": "T3", "sync_divider": 1}
        self._last_counts = (1, 1)

    @property
    def rep_rate_hz(self) -> float:
        return self.sample.rep_rate_hz

    @property
    def microtime_unit_s(self) -> float:
        return self.sample.microtime_unit_s

    @property
    def microtime_bins(self) -> int:
        return self.sample.microtime_bins

    @property
    def interlock_open(self) -> bool:
        return self.sample.interlock_open

    def describe(self, mode: str) -> str:
        return (
            f"qd-bluesky simulated TCSPC card, {mode} mode, "
            f"sample preset {self.sample.preset!r}, seed {self.sample.seed}"
        )

    def now(self) -> float:
        return self.sample.now()

    def configure(self, name: str, value) -> None:
        self.settings[name] = value

    def status_bits(self) -> tuple[int, int]:
        from ._harp_codes import WARNING_DIVIDER_GREATER_ONE, WARNING_INPT_RATE_ZERO

        warnings = 0
        if self.settings["mode"] == "T3" and int(self.settings["sync_divider"]) > 1:
            warnings |= WARNING_DIVIDER_GREATER_ONE
        if not all(self._last_counts):
            warnings |= WARNING_INPT_RATE_ZERO
        return warnings, 0

    def read_photons(self) -> PhotonBlock:
        block = self.sample.advance()
        enabled = [int(self.settings.get(f"input_enable{ch}", 1)) for ch in (0, 1)]
        if not all(enabled):
            keep = np.asarray(enabled, dtype=bool)[np.minimum(block.channel, 1)]
            block = replace(
                block,
                macrotime=block.macrotime[keep],
                microtime=block.microtime[keep],
                channel=block.channel[keep],
                charge_state=block.charge_state[keep],
                source=block.source[keep],
            )
        counts = np.bincount(block.channel, minlength=2)[:2]
        if block.t_stop_s > block.t_start_s:
            pairs = zip(counts, enabled, strict=True)
            self._last_counts = tuple(int(c) if en else 1 for c, en in pairs)
        divider = int(self.settings["sync_divider"])
        if divider == 1 or self.settings["mode"] != "T3":
            return block
        # The card counts divided syncs; a photon's delay runs from the last divided sync.
        period_bins = round(1.0 / (block.rep_rate_hz * block.microtime_unit_s))
        micro = block.microtime.astype(np.int64) + (block.macrotime % divider) * period_bins
        keep = micro < (1 << 16)
        return replace(
            block,
            macrotime=block.macrotime[keep] // divider,
            microtime=micro[keep].astype(np.uint16),
            channel=block.channel[keep],
            charge_state=block.charge_state[keep],
            source=block.source[keep],
            sync_start=block.sync_start // divider,
            sync_stop=-(-block.sync_stop // divider),
            rep_rate_hz=block.rep_rate_hz / divider,
        )

    def start_acquisition(self) -> None:
        self.sample.acquiring = True
        self.sample.drain_bias_log()

    def stop_acquisition(self) -> None:
        self.sample.acquiring = False

    def drain_bias_log(self) -> list[tuple[float, float, float]]:
        return self.sample.drain_bias_log()
