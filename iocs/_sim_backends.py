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

from ._backends import BackendFault, LaserLocks
from ._power_calibration import SIMULATED_CALIBRATION, SLM_828_RATES_HZ

if TYPE_CHECKING:
    from ._backends import PhotonBlock

#: What the simulated potentiostat can apply at all; the safe window must lie inside it.
HARDWARE_RANGE_V = (-5.0, 5.0)
#: Full scales of the simulated potentiostat's current ranges (A): decades, 1 nA .. 1 mA.
CURRENT_RANGES_A = tuple(10.0**k for k in range(-9, -2))
#: Trigger edges closer than this to the previous one are one edge (a CV vertex is the end
#: of one ramp and the start of the next, a few microseconds apart on the IOC's clock).
TRIGGER_HOLDOFF_S = 1e-3
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
    rise_time_s
        The cell's 10-90 % response to a bias step (default 2 us, the paper's).
    trigger_channel
        The TCSPC marker input (1-4) the potentiostat's trigger output is wired to.
    card_sees_bias
        False: the TCSPC card is not told the bias (a real card): its file has no
        ``/user/bias``, only the trigger's marker records in ``/user/markers``.
    """

    def __init__(
        self,
        preset: str = "qd1",
        seed: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        field: int | None = None,
        area_um: float | None = None,
        rise_time_s: float = 2e-6,
        trigger_channel: int = 1,
        card_sees_bias: bool = True,
    ) -> None:
        from qd_bluesky.sim import Sample, warm_up  # the IOCs are the only place that knows it

        if int(trigger_channel) not in (1, 2, 3, 4):
            raise ValueError(f"trigger_channel must be a marker input 1-4, got {trigger_channel}")

        warm_up()  # compile the kernels now, not inside the IOC's event loop
        extra = {}
        if field is not None:
            from qd_bluesky.sim import default_area_um

            side = default_area_um(field) if area_um is None else area_um
            extra = {"field": field, "field_size_um": 0.5 * side}
        self.sample = Sample(preset=preset, seed=seed, rise_time_s=rise_time_s, **extra)
        self.trigger_channel = int(trigger_channel)
        self.card_sees_bias = bool(card_sees_bias)
        #: Times of the potentiostat's trigger edges while acquiring (steps, CV corners).
        self.triggers: list[float] = []
        self._slope = 0.0  # of the last applied bias, for the trigger at each corner
        self._last_trigger = -1.0
        self._switching = None  # the SwitchingWaveform being played, for its edges
        self._edges_from = 0.0  # switching edges before this time were handed out
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
        #: Whether the potentiostat's trigger output pulses (wired to the card's marker input).
        self.trigger_enabled = True
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
        self._end_switching(t)
        self.sample.set_bias(float(bias_v), t)
        slope = float(dbias_dt_v_per_s)
        if slope != self._slope and t - self._last_trigger >= TRIGGER_HOLDOFF_S:
            # The trigger output fires at every corner of the waveform: a step, the start
            # and end of a ramp, a CV vertex (one edge per corner: the hold-off).
            self._last_trigger = t
            if self.acquiring and self.trigger_enabled:
                self.triggers.append(t)
        self._slope = slope
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
        self._collect_edges(self.sample.time_s)
        log, self.bias_log = self.bias_log, []
        log.sort(key=lambda e: e[0])
        return log

    def drain_triggers(self) -> list[float]:
        """Times of the trigger edges (corners, switching edges) up to the photons handed out."""
        t_stop = self.sample.time_s
        self._collect_edges(t_stop)
        edges = sorted(self.triggers)
        self.triggers = [t for t in edges if t >= t_stop]
        return [t for t in edges if t < t_stop]

    # -- switching (the potentiostat's square wave) ------------------------------------------

    def start_switching(self, low_v: float, high_v: float, period_s: float, cycles: int) -> float:
        """Switch between ``low_v`` and ``high_v`` from now; return the waveform's duration."""
        t = self.now()
        self._end_switching(t)
        self._switching = self.sample.set_switching(low_v, high_v, period_s, cycles, t)
        self._edges_from = t
        self.bias_v = float(low_v)
        self._slope = 0.0
        return float(self._switching.end_s - t)

    def stop_switching(self) -> None:
        """End the square wave now; the bias stays where it is (then the next set_bias)."""
        t = self.now()
        wave = self._switching
        self._end_switching(t)  # its edges up to now are triggers still to hand out
        if wave is not None and t < wave.end_s:
            self.bias_v = wave.bias_at(t)
            self.sample.set_bias(self.bias_v, t)

    def switching_bias(self) -> float | None:
        """The bias the square wave commands now (None: no square wave)."""
        wave = self._switching
        t = self.now()
        if wave is None or t >= wave.end_s:
            return None
        n = wave.last_edge_before(t)
        return float(wave.target(n)) if n >= 0 else float(wave.from_v)

    def _end_switching(self, t: float) -> None:
        """Hand out the square wave's edges before ``t`` and forget the wave."""
        if self._switching is not None:
            self._collect_edges(t)
            self._switching = None

    def _collect_edges(self, t_stop: float | None = None) -> None:
        """Log the square wave's edges up to ``t_stop`` (now) as triggers and bias changes."""
        wave = self._switching
        if wave is None:
            return
        t = self.now() if t_stop is None else t_stop
        n = wave.edges_in(self._edges_from, t)
        self._edges_from = max(self._edges_from, t)
        if not self.acquiring or len(n) == 0:
            return
        times = wave.edge_time(n)
        if self.trigger_enabled:
            self.triggers.extend(float(x) for x in times)
        bias = wave.target(n)
        self.bias_log.extend(
            (float(x), float(v), self.current_a) for x, v in zip(times, bias, strict=True)
        )

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
        commanded = self.sample.switching_bias()  # the square wave's, while it runs
        return self.sample.bias_v if commanded is None else commanded

    @property
    def current_a(self) -> float:
        return self.sample.current_a

    def read_current(self) -> float:
        return self.sample.read_current()


class SimulatedPotentiostat(_CellReadings):
    """:class:`~._backends.PotentiostatBackend` on a :class:`SimulatedSample`, with all the
    optional settings of :class:`~._backends.PotentiostatSettings`.

    - current ranges: decades from 1 nA to 1 mA; with autorange off a current beyond the
      range reads as the full scale (the overload of a real instrument), with autorange on the
      range follows the current;
    - compliance: the largest |bias| applied (the hardware range), at most the cell's
      physical limit of 5 V;
    - iR compensation: kept (the simulated cell has no uncompensated resistance, so it changes
      nothing);
    - trigger output: on at start (the simulated one is wired to the card's marker input);
      the sample itself places a pulse at every corner of the waveform (a step, a ramp's start
      and end, a CV vertex, a switching edge), which the card records as a marker while it
      acquires; :meth:`emit_trigger` only counts the IOC's requests for
      :meth:`drain_trigger_times`.
    """

    current_ranges_a = CURRENT_RANGES_A

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__(sample)
        self.current_range_a = 1e-6
        self.autorange = True
        self.ir_compensation_ohm = 0.0
        self.ir_compensation_on = False
        self._compliance_v = HARDWARE_RANGE_V[1]
        self._pulses: list[float] = []

    @property
    def compliance_v(self) -> float:
        return self._compliance_v

    @compliance_v.setter
    def compliance_v(self, value: float) -> None:
        if not 0 < float(value) <= HARDWARE_RANGE_V[1]:
            raise ValueError(f"the compliance must be in (0, {HARDWARE_RANGE_V[1]:g}] V")
        self._compliance_v = float(value)

    @property
    def hardware_range_v(self) -> tuple[float, float]:
        return (-self._compliance_v, self._compliance_v)

    @property
    def current_a(self) -> float:
        return self._in_range(self.sample.current_a)

    def read_current(self) -> float:
        return self._in_range(self.sample.read_current())

    def _in_range(self, current_a: float) -> float:
        if self.autorange:
            fits = [r for r in self.current_ranges_a if r >= abs(current_a)]
            self.current_range_a = fits[0] if fits else self.current_ranges_a[-1]
        full_scale = self.current_range_a
        return max(-full_scale, min(full_scale, current_a))

    def apply_bias(self, bias_v: float, *, dbias_dt_v_per_s: float = 0.0) -> None:
        if abs(bias_v) > self._compliance_v:
            raise BackendFault(f"{bias_v:+.3f} V is beyond the compliance +-{self._compliance_v} V")
        self.sample.set_bias(bias_v, dbias_dt_v_per_s=dbias_dt_v_per_s)

    @property
    def trigger_output_enabled(self) -> bool:
        return self.sample.trigger_enabled

    @trigger_output_enabled.setter
    def trigger_output_enabled(self, value: bool) -> None:
        self.sample.trigger_enabled = bool(value)

    def emit_trigger(self) -> None:
        if self.trigger_output_enabled:
            self._pulses.append(self.sample.now())

    def drain_trigger_times(self) -> list[float]:
        pulses, self._pulses = self._pulses, []
        return pulses

    # The switching mode (a square wave played by the instrument itself, with a trigger edge
    # at every step): optional for a backend, the IOC refuses it without these methods.

    def start_switching(self, low_v: float, high_v: float, period_s: float, cycles: int) -> float:
        """Start the square wave now; return its duration (s)."""
        return self.sample.start_switching(low_v, high_v, period_s, cycles)

    def stop_switching(self) -> None:
        """End the square wave now."""
        self.sample.stop_switching()


class SimulatedLaser(_OnSample):
    """:class:`~._backends.LaserBackend` on a :class:`SimulatedSample`.

    It offers the SLM 828's internal frequencies and reports the intensity of a simulated
    calibration; the sample gets the power asked for, unrounded. Opening its interlock is
    turning the key.
    """

    rep_rates_hz = SLM_828_RATES_HZ
    emission_at_start = True

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__(sample)
        self.intensity_permille = SIMULATED_CALIBRATION.permille_for(sample.power_w)
        self._soft_lock = not sample.emission

    @property
    def rep_rate_locked(self) -> bool:
        return self.sample.acquiring

    def set_output(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        if rep_rate_hz not in self.rep_rates_hz:
            raise ValueError(f"{rep_rate_hz:g} Hz is not one of the laser's repetition rates")
        if emission and self.sample.interlock_open:
            raise ValueError("the interlock is open: close it before switching emission on")
        permille = SIMULATED_CALIBRATION.permille_for(power_w)
        self.sample.set_laser(emission=emission, power_w=power_w, rep_rate_hz=rep_rate_hz)
        self.intensity_permille, self._soft_lock = permille, not emission

    def set_interlock(self, is_open: bool) -> None:
        self.sample.interlock_open = bool(is_open)

    def read_locks(self) -> LaserLocks:
        is_open = self.sample.interlock_open
        return LaserLocks(is_open, "key" if is_open else "none", self._soft_lock)


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
        self.sample.triggers.clear()  # edges of an earlier acquisition not handed out

    def stop_acquisition(self) -> None:
        self.sample.acquiring = False

    def drain_bias_log(self) -> list[tuple[float, float, float]]:
        log = self.sample.drain_bias_log()
        return log if self.sample.card_sees_bias else []

    @property
    def sees_bias(self) -> bool:
        """False: the card is not told the bias (no ``/user/bias``), as a real card."""
        return self.sample.card_sees_bias

    def read_markers(self, block: PhotonBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The marker records of ``block`` (the potentiostat's trigger on its input).

        Returns the sync count of the period each edge falls in, the edge's delay after that
        sync in microtime bins (photons of the period arriving earlier come before it), and
        the marker input.
        """
        times = np.asarray(self.sample.drain_triggers(), dtype=np.float64)
        sync, offset_s = self.sample.sample.sync_before(times)
        offset = offset_s / block.microtime_unit_s
        channel = np.full(len(times), self.sample.trigger_channel, dtype=np.uint8)
        return sync, offset, channel
