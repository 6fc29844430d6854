"""The streaming engine: controls on a simulation clock in, time-ordered T3 photons out.

One engine holds the dots it can see, the laser, the bias and the detectors. Controls (bias,
laser, focus position) are queued at their times; :meth:`PhotonEngine.advance` then plays the
time from the previous call to ``t_stop_s``: for every stretch of constant controls it runs each
dot's charge chain, turns the state segments into photons (dots, background, dark counts, each on
its own random stream), and finally sorts, applies the dead time and hands out the photons whose
macrotime lies before the sync of ``t_stop_s``. Later photons (long decays wrapping into the next
pulses) wait for the next call. Nothing depends on where the chunk boundaries fall, except the
ITO damage below -2 V, which is updated once per stretch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._blinking import (
    GATE_LEFT,
    GATE_ON,
    GATE_SCALE,
    GATE_T_REF,
    dwell_law,
    next_truncated_power_law,
)
from ._cell import ITO_DAMAGE_BIAS_V, ElectrochemicalCell, check_physical_bias
from ._charging import (
    dwell_scales,
    rate_matrix,
    run_chain,
    run_chain_schedule,
    run_gated_chain,
    stationary_distribution,
)
from ._dot import (
    NO_DOT_STATE,
    REFERENCE_POWER_W,
    REFERENCE_REP_RATE_HZ,
    DotParameters,
    StateTable,
    detected_photons_per_pulse,
    emission_probabilities,
)
from ._photons import (
    KIND_DARK,
    KIND_DOT,
    KIND_PULSED,
    NORMAL_TABLE,
    DetectionBins,
    PhotonColumns,
    StateTables,
    gather_with_dead_time,
    generate,
    skip_tables,
    sort_keys,
)
from ._rng import new_stream, next_double
from ._switching import SwitchingWaveform

#: 10-90 % rise time of a bias step (the paper's electronics), the default of the cell's
#: response (``rise_time_s``); the bias approaches its target with ``tau = rise / ln 9``.
BIAS_RISE_TIME_S = 2e-6
#: The rise of a switching edge is played as steps of ``tau / 4`` up to ``8 tau`` (then the
#: target): sub-pulse resolution at 2.5 MHz for the default 2 us.
_SWITCH_STEPS_PER_TAU = 4
_SWITCH_TAUS = 8
#: Bias steps smaller than this are applied at once (CV staircases); larger ones rise.
_RISE_MIN_STEP_V = 0.005
#: A dot is simulated while its PSF factor at the focus is at least this.
_ACTIVE_PSF = 1e-3
#: Source codes in the sort key (6 bits): dots use their index, then background and dark counts.
_SRC_BACKGROUND, _SRC_DARK = 62, 63
MAX_DOTS = 62
#: ``PhotonChunk.source`` of photons no dot emitted.
SOURCE_BACKGROUND, SOURCE_DARK = -1, -2
#: ITO damage quenches the dots near the reduced electrode and raises the background.
DAMAGE_QUENCH = 0.5
DAMAGE_BACKGROUND_GAIN = 2.0


@dataclass(frozen=True)
class Detection:
    """The optical and electronic detection chain (defaults: the paper's set-up)."""

    #: TCSPC bin (TimeHarp 260 PICO) and the most bins a period can hold (15-bit microtime).
    microtime_unit_s: float = 25e-12
    max_microtime_bins: int = 32768
    #: Overall time response (laser + APD + card) as a Gaussian, and where its centre sits after
    #: the sync.
    irf_fwhm_s: float = 400e-12
    irf_offset_s: float = 3e-9
    #: Dead time per channel, non-paralysable: the longer of the APD's (SPCM-AQRH: 22 ns) and the
    #: card's (TimeHarp 260 PICO: < 25 ns).
    dead_time_s: float = 22e-9
    #: Dark counts per APD.
    dark_cps: float = 50.0
    #: Fraction of the light sent to APD 0.
    splitter: float = 0.5
    #: ITO/solvent background, both APDs together, at the reference power (scales with power).
    background_cps: float = 150.0
    background_lifetime_s: float = 0.3e-9
    #: Confocal point-spread function (Gaussian), lateral and axial standard deviations.
    psf_sigma_xy_um: float = 0.11
    psf_sigma_z_um: float = 0.35

    def __post_init__(self) -> None:
        for name in ("microtime_unit_s", "irf_offset_s", "psf_sigma_xy_um", "psf_sigma_z_um"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Detection.{name} must be positive, got {getattr(self, name)}")
        for name in ("irf_fwhm_s", "dead_time_s", "dark_cps", "background_cps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Detection.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.splitter <= 1.0:
            raise ValueError(f"Detection.splitter must be in [0, 1], got {self.splitter}")
        if not 8 <= self.max_microtime_bins <= 65535:
            raise ValueError(
                f"Detection.max_microtime_bins must be in [8, 65535], got {self.max_microtime_bins}"
            )


@dataclass(frozen=True)
class LaserSettings:
    """Laser state: emission on/off, average power at the sample, repetition rate."""

    emission: bool = True
    power_w: float = REFERENCE_POWER_W
    rep_rate_hz: float = REFERENCE_REP_RATE_HZ

    def __post_init__(self) -> None:
        if not (math.isfinite(self.power_w) and 0.0 <= self.power_w <= 1e-3):
            raise ValueError(f"laser power must be in [0, 1 mW], got {self.power_w} W")
        if not (math.isfinite(self.rep_rate_hz) and 1e4 <= self.rep_rate_hz <= 1e8):
            raise ValueError(
                f"laser repetition rate must be in [10 kHz, 100 MHz], got {self.rep_rate_hz} Hz"
            )


@dataclass
class PhotonChunk:
    """Photons from one :meth:`PhotonEngine.advance` call, ordered by arrival time."""

    #: Laser sync count since the engine started (continues across repetition-rate changes).
    macrotime: NDArray[np.int64]
    #: Delay after the sync in bins of ``microtime_unit_s``.
    microtime: NDArray[np.uint16]
    #: APD 0 or 1.
    channel: NDArray[np.uint8]
    #: Ground truth: charge of the emitting dot (+1 X+, 0 X0, -k Xk-); 127 for background/dark.
    charge_state: NDArray[np.int8]
    #: Ground truth: index of the emitting dot, -1 background, -2 dark count.
    source: NDArray[np.int16]
    t_start_s: float
    t_stop_s: float
    #: Macrotimes of this chunk lie in ``[sync_start, sync_stop)``.
    sync_start: int
    sync_stop: int
    microtime_unit_s: float
    microtime_bins: int
    rep_rate_hz: float
    #: Per simulated dot: charge-state jumps inside the chunk, ``(times_s, charges)``.
    transitions: dict[int, tuple[NDArray[np.float64], NDArray[np.int8]]] = field(
        default_factory=dict
    )
    #: Per simulated dot: its charge at ``t_start_s`` (or when it came into focus).
    charge_at_start: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.macrotime)


def concatenate_chunks(chunks: list[PhotonChunk]) -> PhotonChunk:
    """One chunk holding consecutive chunks (units of the last one)."""
    if not chunks:
        raise ValueError("no chunks to concatenate")
    last = chunks[-1]
    transitions: dict[int, tuple[list, list]] = {}
    for c in chunks:
        for dot, (t, q) in c.transitions.items():
            ts, qs = transitions.setdefault(dot, ([], []))
            ts.append(t)
            qs.append(q)
    return PhotonChunk(
        macrotime=np.concatenate([c.macrotime for c in chunks]),
        microtime=np.concatenate([c.microtime for c in chunks]),
        channel=np.concatenate([c.channel for c in chunks]),
        charge_state=np.concatenate([c.charge_state for c in chunks]),
        source=np.concatenate([c.source for c in chunks]),
        t_start_s=chunks[0].t_start_s,
        t_stop_s=last.t_stop_s,
        sync_start=chunks[0].sync_start,
        sync_stop=last.sync_stop,
        microtime_unit_s=last.microtime_unit_s,
        microtime_bins=last.microtime_bins,
        rep_rate_hz=last.rep_rate_hz,
        transitions={
            d: (np.concatenate(t), np.concatenate(q)) for d, (t, q) in transitions.items()
        },
        charge_at_start={d: q for c in reversed(chunks) for d, q in c.charge_at_start.items()},
    )


class _Clock:
    """Laser sync count <-> simulation time, piecewise over repetition-rate epochs."""

    def __init__(self, rep_rate_hz: float) -> None:
        self.t0 = [0.0]
        self.sync0 = [0]
        self.rate = [float(rep_rate_hz)]

    def pulse_at_or_after(self, t_s: float) -> int:
        """Index of the first sync at or after ``t_s`` (within the current epoch)."""
        x = (t_s - self.t0[-1]) * self.rate[-1]
        # A hair of tolerance so that a time computed as k / f lands on pulse k.
        return self.sync0[-1] + max(0, math.ceil(x - 1e-6))

    def pulses_at_or_after(self, t_s: NDArray[np.float64]) -> NDArray[np.int64]:
        """:meth:`pulse_at_or_after` for an array of times (the same arithmetic)."""
        x = (np.asarray(t_s, dtype=float) - self.t0[-1]) * self.rate[-1]
        return self.sync0[-1] + np.maximum(0, np.ceil(x - 1e-6)).astype(np.int64)

    def pulses_before(self, t_s: NDArray[np.float64]) -> NDArray[np.int64]:
        """Index of the last sync at or before each time (within the current epoch)."""
        x = (np.asarray(t_s, dtype=float) - self.t0[-1]) * self.rate[-1]
        return self.sync0[-1] + np.maximum(0, np.floor(x + 1e-6)).astype(np.int64)

    def new_epoch(self, t_s: float, rep_rate_hz: float) -> None:
        sync = self.pulse_at_or_after(t_s)
        self.t0.append(t_s)
        self.sync0.append(sync)
        self.rate.append(float(rep_rate_hz))

    def time_of(self, sync: NDArray[np.int64]) -> NDArray[np.float64]:
        """Time of each sync index."""
        e = np.searchsorted(np.asarray(self.sync0), sync, side="right") - 1
        t0 = np.asarray(self.t0)[e]
        s0 = np.asarray(self.sync0)[e]
        f = np.asarray(self.rate)[e]
        return t0 + (sync - s0) / f


@dataclass
class _Event:
    t_s: float
    kind: str  # "bias", "laser", "position"
    value: Any


class _Dot:
    """A dot's runtime: parameters, place, random streams and the carried chain/photon state."""

    def __init__(
        self, index: int, params: DotParameters, xyz: tuple[float, float, float], seed: int
    ):
        self.index = index
        self.params = params
        self.table: StateTable = params.states()
        self.xyz = np.asarray(xyz, dtype=float)
        self.chain_rng = new_stream(seed, 1, index)
        self.photon_rng = new_stream(seed, 2, index)
        # Power-law blinking: its own dwell stream, the dwell law and the carried gate.
        self.power_law = params.blinking == "power-law"
        self.blink_rng = new_stream(seed, 5, index)
        self.law = dwell_law(params)
        self.gate = np.array([1.0, 0.0, 0.0, math.nan])
        self.active = False
        self.state = 1
        self.next_jump = math.nan
        self.pending = np.array([-1], dtype=np.int64)
        # Bias of the last switching step played (NaN: none): its draws carry into the next.
        self.level_v = math.nan
        self.psf = 0.0
        # PSF-weighted seconds of light so far, and whether that bleached the dot.
        self.dose = 0.0
        self.bleached = False
        self._cache: dict[tuple, Any] = {}

    def cached(self, key: tuple, make: Any, *args: Any) -> Any:
        """``make(*args)``, remembered under ``key`` (rate matrices, emission tables)."""
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            hit = self._cache[key] = make(*args)
        return hit


class PhotonEngine:
    """Dots under a confocal spot, a laser, an electrochemical cell and two APDs.

    Use :class:`SingleDot` or :class:`~qd_bluesky.sim.Sample`; this base class holds the clock,
    the control queue and the photon pipeline.
    """

    def __init__(
        self,
        dots: list[tuple[DotParameters, tuple[float, float, float]]],
        *,
        seed: int = 0,
        detection: Detection | None = None,
        laser: LaserSettings | None = None,
        bias_v: float = 0.0,
        focus_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
        rise_time_s: float = BIAS_RISE_TIME_S,
    ) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (math.isfinite(rise_time_s) and 1e-9 <= rise_time_s <= 1e-3):
            raise ValueError(f"rise_time_s must be in [1 ns, 1 ms], got {rise_time_s!r}")
        #: 10-90 % rise time of the bias at the dot after a step (the cell's RC response).
        self.rise_time_s = float(rise_time_s)
        self._rise_tau = self.rise_time_s / math.log(9.0)
        self._switching: SwitchingWaveform | None = None
        if len(dots) > MAX_DOTS:
            raise ValueError(f"at most {MAX_DOTS} dots, got {len(dots)}")
        self.seed = int(seed)
        self.detection = detection or Detection()
        self.cell = ElectrochemicalCell(self.seed)
        self._laser = laser or LaserSettings()
        self._laser_cmd = self._laser
        self._clock = _Clock(self._laser.rep_rate_hz)
        self._bias = check_physical_bias(bias_v)
        self._bias_target = self._bias
        self._focus = np.asarray(focus_um, dtype=float)
        self._dots = [_Dot(i, p, xyz, self.seed) for i, (p, xyz) in enumerate(dots)]
        self._bg_rng = new_stream(self.seed, 3)
        self._dark_rng = new_stream(self.seed, 4)
        self._bg_pending = np.array([-1], dtype=np.int64)
        self._dark_pending = np.array([-1], dtype=np.int64)
        self._dead_last = np.full(2, -np.inf)
        self._events: list[_Event] = []
        self._t = 0.0
        self._sync = 0
        # (time, bias the cell had then, commanded bias) of each set_bias: the exact rise.
        self._rises: list[tuple[float, float, float]] = [(0.0, self._bias, self._bias)]
        self._buf = _Buffer()
        self._entered: dict[int, int] = {}
        self._jumps: dict[int, tuple[list, list]] = {}
        self._update_focus(0.0)

    # ------------------------------------------------------------------ properties
    @property
    def time_s(self) -> float:
        """Simulation time reached by the last :meth:`advance`."""
        return self._t

    @property
    def rep_rate_hz(self) -> float:
        """Laser repetition rate last commanded (each chunk carries the one its photons used)."""
        return self._laser_cmd.rep_rate_hz

    @property
    def laser(self) -> LaserSettings:
        """The laser settings last commanded."""
        return self._laser_cmd

    @property
    def bias_v(self) -> float:
        """The commanded bias (the cell reaches it within ~2 us)."""
        return self._bias_target

    def effective_bias_v(self, t_s: float) -> float:
        """Bias the cell has at ``t_s``: each step approaches its target exponentially
        (10-90 % in :attr:`rise_time_s`). Known for times up to the latest command."""
        sw = self._switching_at(t_s)
        if sw is not None:
            return sw.bias_at(t_s)
        t_c, v_from, v_to = self._rises[0]
        for rise in self._rises:
            if rise[0] <= t_s:
                t_c, v_from, v_to = rise
        if t_s <= t_c:
            return v_from
        return v_to + (v_from - v_to) * math.exp(-(t_s - t_c) / self._rise_tau)

    def sync_before(self, t_s: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray]:
        """The laser pulse at or before each time and the time since it (s): where a TCSPC
        card files an edge on its marker input (times up to the latest :meth:`advance`)."""
        t = np.asarray(t_s, dtype=np.float64)
        sync = self._clock.pulses_before(t)
        return sync, np.maximum(t - self._clock.time_of(sync), 0.0)

    @property
    def microtime_unit_s(self) -> float:
        return self.detection.microtime_unit_s

    @property
    def microtime_bins(self) -> int:
        """Microtime bins per laser period at :attr:`rep_rate_hz` (capped by the card's range)."""
        return self._micro_range(self._laser_cmd.rep_rate_hz)

    @property
    def dots(self) -> list[DotParameters]:
        return [d.params for d in self._dots]

    def _micro_range(self, rep_rate_hz: float) -> int:
        bins = int(round(1.0 / (rep_rate_hz * self.detection.microtime_unit_s)))
        return min(bins, self.detection.max_microtime_bins)

    # ------------------------------------------------------------------ controls
    def _when(self, t_s: float) -> float:
        t = float(t_s)
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t_s!r}")
        # A control stamped slightly before the last advance (clock jitter) applies now.
        return max(t, self._t)

    def set_bias(self, bias_v: float, t_s: float) -> None:
        """Command ``bias_v`` (V vs Pt quasi-reference) at ``t_s``; it rises in ~2 us.

        Raises ValueError beyond the cell's physical range; below -2 V the ITO is damaged.
        """
        v = check_physical_bias(bias_v)
        t = self._when(t_s)
        v_from = self.effective_bias_v(t)
        self._cancel_switching(t)
        self._rises = [r for r in self._rises if r[0] < t][-1:] + [(t, v_from, v)]
        self._events = [e for e in self._events if not (e.kind == "bias" and e.t_s >= t)]
        if abs(v - v_from) > _RISE_MIN_STEP_V:
            # Piecewise-constant exponential approach: the value at the middle of each step.
            edges = (0.0, 1.0, 2.0, 3.0, 5.0)
            mids = (0.5, 1.5, 2.5, 4.0)
            for a, m in zip(edges[:-1], mids, strict=True):
                self._queue(_Event(t + a * self._rise_tau, "bias", v + (v_from - v) * math.exp(-m)))
            self._queue(_Event(t + edges[-1] * self._rise_tau, "bias", v))
        else:
            self._queue(_Event(t, "bias", v))
        self._bias_target = v
        if v < ITO_DAMAGE_BIAS_V:
            self.cell.expose(v, t)

    def set_switching(
        self, low_v: float, high_v: float, period_s: float, cycles: int, t_s: float
    ) -> SwitchingWaveform:
        """Switch the bias between ``low_v`` and ``high_v`` from ``t_s``: a step to ``high_v``
        every ``period_s``, back to ``low_v`` half a period later, ``cycles`` times; then it
        stays at ``low_v``. Each edge rises with the cell's :attr:`rise_time_s`. A later
        :meth:`set_bias` ends the waveform. Returns the waveform (its edges are the trigger
        times of the potentiostat).
        """
        low, high = check_physical_bias(low_v), check_physical_bias(high_v)
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"switching period must be positive, got {period_s!r}")
        t = self._when(t_s)
        wave = SwitchingWaveform(
            low,
            high,
            float(period_s),
            int(cycles),
            t,
            self.effective_bias_v(t),
            self._rise_tau,
            _SWITCH_STEPS_PER_TAU,
            _SWITCH_TAUS,
        )
        self._cancel_switching(t)
        self._events = [e for e in self._events if not (e.kind == "bias" and e.t_s >= t)]
        self._queue(_Event(t, "switching", wave))
        # The end: the last edge (to low_v) rose half a period ago, the bias holds low_v.
        end = wave.end_s
        self._queue(_Event(end, "switching", None))
        self._queue(_Event(end, "bias", low))
        self._rises = [r for r in self._rises if r[0] < t][-1:] + [(end, low, low)]
        self._bias_target = low
        if min(low, high) < ITO_DAMAGE_BIAS_V:
            self.cell.expose(min(low, high), t)
        return wave

    def _switching_at(self, t_s: float) -> SwitchingWaveform | None:
        """The switching waveform that sets the bias at ``t_s``, if any (played or queued)."""
        waves = [e.value for e in self._events if e.kind == "switching" and e.value is not None]
        if self._switching is not None:
            waves.insert(0, self._switching)
        for wave in reversed(waves):
            if wave.t0_s <= t_s < wave.end_s:
                return wave
        return None

    def _cancel_switching(self, t_s: float) -> None:
        """End a switching waveform (played or queued) at ``t_s``."""
        queued = [e for e in self._events if e.kind == "switching" and e.t_s >= t_s]
        if not queued and self._switching is None:
            return
        wave = self._switching_at(t_s)
        self._events = [
            e
            for e in self._events
            if not (e.kind == "switching" and e.t_s >= t_s)
            and not (e.kind == "bias" and e.t_s >= t_s)
        ]
        if wave is not None:
            # The bias keeps the value the waveform gave it (a rise in progress is cut).
            v = wave.bias_at(t_s)
            self._rises = [r for r in self._rises if r[0] < t_s][-1:] + [(t_s, v, v)]
        if self._switching is not None or wave is not None:
            self._queue(_Event(t_s, "switching", None))

    def set_laser(
        self,
        *,
        emission: bool | None = None,
        power_w: float | None = None,
        rep_rate_hz: float | None = None,
        t_s: float,
    ) -> None:
        """Change emission, power (W at the sample) and/or repetition rate at ``t_s``."""
        cmd = self._laser_cmd
        new = LaserSettings(
            emission=cmd.emission if emission is None else bool(emission),
            power_w=cmd.power_w if power_w is None else float(power_w),
            rep_rate_hz=cmd.rep_rate_hz if rep_rate_hz is None else float(rep_rate_hz),
        )
        self._queue(_Event(self._when(t_s), "laser", new))
        self._laser_cmd = new

    def set_focus(self, x_um: float, y_um: float, z_um: float, t_s: float) -> None:
        """Move the confocal spot (stage position) at ``t_s``."""
        xyz = np.array([x_um, y_um, z_um], dtype=float)
        if not np.all(np.isfinite(xyz)):
            raise ValueError(f"position must be finite, got {(x_um, y_um, z_um)}")
        self._queue(_Event(self._when(t_s), "position", xyz))

    def _queue(self, event: _Event) -> None:
        # Events come in time order except rise steps, which may precede a later control.
        i = len(self._events)
        while i > 0 and self._events[i - 1].t_s > event.t_s:
            i -= 1
        self._events.insert(i, event)

    # ------------------------------------------------------------------ physics helpers
    def _psf(self, xyz: NDArray[np.float64], focus: NDArray[np.float64]) -> float:
        d = xyz - focus
        det = self.detection
        r2 = (d[0] ** 2 + d[1] ** 2) / det.psf_sigma_xy_um**2 + d[2] ** 2 / det.psf_sigma_z_um**2
        return math.exp(-0.5 * r2)

    def _excitations(self, dot: _Dot, laser: LaserSettings, psf: float) -> float:
        if not laser.emission:
            return 0.0
        return dot.params.excitations_per_pulse(laser.power_w, laser.rep_rate_hz) * psf

    def _efficiency(self, dot: _Dot, bias_v: float, psf: float) -> float:
        quench = 1.0 - DAMAGE_QUENCH * self.cell.damage
        return dot.params.detection_efficiency * psf * dot.params.brightness(bias_v) * quench

    def _rates(self, dot: _Dot, bias_v: float, x: float) -> NDArray[np.float64]:
        d = self.cell.damage
        return dot.cached(("q", bias_v, x, d), _rate_matrix, dot.params, bias_v, x, d)

    def _background_cps(self, laser: LaserSettings) -> float:
        if not laser.emission:
            return 0.0
        gain = 1.0 + DAMAGE_BACKGROUND_GAIN * self.cell.damage
        return self.detection.background_cps * laser.power_w / REFERENCE_POWER_W * gain

    def _update_focus(self, t_s: float) -> None:
        """(De)activate dots after a focus change; a dot coming into view starts in steady state."""
        for dot in self._dots:
            dot.psf = self._psf(dot.xyz, self._focus)
            active = dot.psf >= _ACTIVE_PSF
            if active and not dot.active:
                x = self._excitations(dot, self._laser, dot.psf)
                pi = stationary_distribution(self._rates(dot, self._bias, x))
                u = next_double(dot.chain_rng)
                dot.state = int(min(np.searchsorted(np.cumsum(pi), u, side="right"), len(pi) - 1))
                self._entered[dot.index] = int(dot.table.charge[dot.state])
                if dot.power_law:
                    self._start_gate(dot, t_s)
            dot.active = active
            dot.next_jump = math.nan
            dot.pending[0] = -1

    @staticmethod
    def _start_gate(dot: _Dot, t_s: float) -> None:
        """A fresh blinking dwell for a dot coming into view (off when it starts in X+)."""
        on = dot.state != 0
        o = 0 if on else 3
        dot.gate[GATE_ON] = 1.0 if on else 0.0
        dot.gate[GATE_T_REF] = t_s
        dot.gate[GATE_LEFT] = next_truncated_power_law(
            dot.blink_rng, dot.law[o], dot.law[o + 1], dot.law[o + 2]
        )
        dot.gate[GATE_SCALE] = math.nan

    def _invalidate(self, *, dark: bool = False) -> None:
        for dot in self._dots:
            dot.next_jump = math.nan
            dot.pending[0] = -1
            dot.level_v = math.nan
        self._bg_pending[0] = -1
        if dark:
            self._dark_pending[0] = -1

    # ------------------------------------------------------------------ expected rates
    def expected_rate_cps(self, x_um: float, y_um: float, z_um: float) -> float:
        """Mean count rate (both APDs, before dead time) with the focus at ``(x, y, z)``.

        Uses the commanded bias and the current laser settings and each dot's steady state:
        no photons are generated, so raster scans are cheap.
        """
        focus = np.array([x_um, y_um, z_um], dtype=float)
        laser = self._laser_cmd
        bias = self._bias_target
        total = self._background_cps(laser) + 2.0 * self.detection.dark_cps
        if not laser.emission:
            return total
        for dot in self._dots:
            psf = self._psf(dot.xyz, focus)
            if psf < _ACTIVE_PSF or dot.bleached:
                continue
            total += self._dot_rate(dot, bias, laser, psf)
        return float(total)

    def _dot_rate(self, dot: _Dot, bias: float, laser: LaserSettings, psf: float) -> float:
        x = self._excitations(dot, laser, psf)
        eff = self._efficiency(dot, bias, psf)

        def make() -> float:
            pi = stationary_distribution(self._rates(dot, bias, x))
            per_pulse = detected_photons_per_pulse(emission_probabilities(dot.table, x, eff))
            return float(pi @ per_pulse) * laser.rep_rate_hz

        return dot.cached(("rate", bias, x, eff, laser.rep_rate_hz), make)

    # ------------------------------------------------------------------ the pipeline
    def advance(self, t_stop_s: float) -> PhotonChunk:
        """Play the time up to ``t_stop_s`` and return the photons recorded in it."""
        t_stop = float(t_stop_s)
        if not math.isfinite(t_stop) or t_stop < self._t:
            raise ValueError(
                f"advance() needs a time >= the last one ({self._t} s), got {t_stop_s!r}"
            )
        t_start, sync_start = self._t, self._sync
        self._entered = {d.index: int(d.table.charge[d.state]) for d in self._dots if d.active}
        self._jumps: dict[int, tuple[list, list]] = {}
        t = self._t
        while True:
            if self._events and self._events[0].t_s < t_stop:
                t_next = max(self._events[0].t_s, t)
            else:
                t_next = t_stop
            if t_next > t:
                self._play(t, t_next)
                t = t_next
            if t_next >= t_stop and not (self._events and self._events[0].t_s < t_stop):
                break
            self._apply(self._events.pop(0))
        self._t = t_stop
        sync_stop = self._clock.pulse_at_or_after(t_stop)
        self._sync = sync_stop
        photons = self._emit(sync_stop)
        transitions = {
            i: (np.concatenate(ts), np.concatenate(qs).astype(np.int8))
            for i, (ts, qs) in self._jumps.items()
        }
        return PhotonChunk(
            *photons,
            t_start_s=t_start,
            t_stop_s=t_stop,
            sync_start=sync_start,
            sync_stop=sync_stop,
            microtime_unit_s=self.detection.microtime_unit_s,
            microtime_bins=self._micro_range(self._laser.rep_rate_hz),
            rep_rate_hz=self._laser.rep_rate_hz,
            transitions=transitions,
            charge_at_start=dict(self._entered),
        )

    def _apply(self, event: _Event) -> None:
        if event.kind == "bias":
            self._bias = event.value
            self._invalidate()
        elif event.kind == "switching":
            wave = event.value
            if wave is None and self._switching is not None:
                self._bias = self._switching.bias_at(event.t_s)
            self._switching = wave
            self._invalidate()
        elif event.kind == "laser":
            new: LaserSettings = event.value
            rep_changed = new.rep_rate_hz != self._laser.rep_rate_hz
            if rep_changed:
                self._clock.new_epoch(event.t_s, new.rep_rate_hz)
            self._laser = new
            self._invalidate(dark=rep_changed)
        elif event.kind == "position":
            self._focus = event.value
            self._update_focus(event.t_s)
            self._invalidate()

    def _play(self, t_a: float, t_b: float) -> None:
        """Photons of all sources for the stretch ``[t_a, t_b)`` of constant controls."""
        clock = self._clock
        j_a, j_b = clock.pulse_at_or_after(t_a), clock.pulse_at_or_after(t_b)
        laser, bias, det = self._laser, self._bias, self.detection
        f = laser.rep_rate_hz
        unit = det.microtime_unit_s
        period_bins = 1.0 / (f * unit)
        micro_range = self._micro_range(f)
        bins = DetectionBins(
            split=float(det.splitter),
            irf_sigma_bins=det.irf_fwhm_s / (2.0 * math.sqrt(2.0 * math.log(2.0))) / unit,
            offset_bins=det.irf_offset_s / unit,
            period_bins=period_bins,
            micro_range=micro_range,
            normal_table=NORMAL_TABLE,
        )
        damage_before = self.cell.damage
        for dot in self._dots:
            if not dot.active or dot.bleached:
                continue
            t_end, j_end = self._bleach(dot, laser, t_a, t_b, j_b)
            x = self._excitations(dot, laser, dot.psf)
            if self._switching is not None:
                self._play_switching(dot, x, f, t_a, t_end, j_a, j_end, bins)
                continue
            eff = self._efficiency(dot, bias, dot.psf)
            q = self._rates(dot, bias, x)
            state_before = dot.state
            times, states = self._run_chain(dot, q, x, bias, t_a, t_end)
            if len(times):
                ts, qs = self._jumps.setdefault(dot.index, ([], []))
                ts.append(times)
                qs.append(dot.table.charge[states])
            bounds = np.empty(len(times) + 2, dtype=np.int64)
            bounds[0], bounds[-1] = j_a, j_end
            bounds[1:-1] = clock.pulses_at_or_after(times)
            seg_state = np.empty(len(times) + 1, dtype=np.int64)
            seg_state[0] = state_before
            seg_state[1:] = states
            tables = dot.cached(("t", x, eff, f), self._dot_tables, dot, x, eff, f)
            self._generate(
                dot.photon_rng,
                dot.pending,
                KIND_DOT,
                bounds[:-1],
                bounds[1:],
                seg_state,
                tables,
                bins,
                dot.index,
            )
        # Background (laser-excited ITO/solvent) and dark counts: one-state sources.
        bg_p = self._background_cps(laser) / f
        bg_tables = _one_state_tables(bg_p, det.background_lifetime_s / unit)
        seg = (np.array([j_a]), np.array([j_b]), np.zeros(1, dtype=np.int64))
        self._generate(
            self._bg_rng,
            self._bg_pending,
            KIND_PULSED,
            *seg,
            bg_tables,
            bins,
            _SRC_BACKGROUND,
        )
        dark_tables = _one_state_tables(2.0 * det.dark_cps / f, 0.0)
        self._generate(
            self._dark_rng,
            self._dark_pending,
            KIND_DARK,
            *seg,
            dark_tables,
            bins._replace(split=0.5),  # dark counts ignore the splitter
            _SRC_DARK,
        )
        if bias < ITO_DAMAGE_BIAS_V and self._switching is None:
            self.cell.expose(bias, t_a, t_b - t_a)
            if self.cell.damage != damage_before:
                self._invalidate()

    def _play_switching(
        self,
        dot: _Dot,
        x: float,
        f: float,
        t_a: float,
        t_b: float,
        j_a: int,
        j_b: int,
        bins: DetectionBins,
    ) -> None:
        """One dot's photons for ``[t_a, t_b)`` under the switching waveform: the charge chain
        and the emission follow the bias step by step (:meth:`SwitchingWaveform.schedule`)."""
        seg_t, seg_v = self._switching.schedule(t_a, t_b)
        levels, seg_level = np.unique(seg_v, return_inverse=True)
        seg_level = seg_level.astype(np.int64)
        n_states = len(dot.table.charge)
        q_levels = np.stack([self._rates(dot, float(v), x) for v in levels])
        scales = np.array(
            [dwell_scales(dot.params, float(v), x) if dot.power_law else (1.0, 1.0) for v in levels]
        )
        if dot.power_law:  # X0 <-> X+ goes by the power-law gate (as in _run_chain)
            q_levels[:, 0, :] = 0.0
            q_levels[:, :, 0] = 0.0
        if seg_v[0] != dot.level_v:  # new rates at t_a: the carried draws do not hold
            dot.next_jump = math.nan
            dot.pending[0] = -1
        state_before = dot.state
        exit_max = float(q_levels.sum(axis=2).max())
        span = t_b - t_a
        cap = int(span * exit_max * 1.3 + 10.0 * math.sqrt(span * exit_max) + 16)
        while True:
            saved = dot.chain_rng.copy(), dot.blink_rng.copy(), dot.gate.copy()
            out_t = np.empty(cap)
            out_s = np.empty(cap, dtype=np.int64)
            n, state, nxt = run_chain_schedule(
                dot.chain_rng,
                dot.blink_rng,
                q_levels,
                dot.power_law,
                dot.law,
                dot.gate,
                np.ascontiguousarray(scales[:, 0]),
                np.ascontiguousarray(scales[:, 1]),
                seg_t,
                seg_level,
                t_b,
                dot.state,
                dot.next_jump,
                out_t,
                out_s,
            )
            if n >= 0:
                break
            dot.chain_rng[:], dot.blink_rng[:], dot.gate[:] = saved
            cap *= 2
        dot.state, dot.next_jump = int(state), float(nxt)
        dot.level_v = float(seg_v[-1])
        times, states = out_t[:n], out_s[:n]
        if n:
            ts, qs = self._jumps.setdefault(dot.index, ([], []))
            ts.append(times)
            qs.append(dot.table.charge[states])
        # Steps of constant (level, state): the level's tables, stacked level by level.
        t_all = np.sort(np.concatenate((seg_t, times)))
        level = seg_level[np.searchsorted(seg_t, t_all, side="right") - 1]
        jump = np.searchsorted(times, t_all, side="right") - 1
        with_before = np.concatenate(([state_before], states))
        state_at = with_before[jump + 1]
        bounds = self._clock.pulses_at_or_after(t_all)
        bounds[0] = j_a
        stops = np.append(bounds[1:], j_b)
        per_level = [
            dot.cached(("t", x, eff, f), self._dot_tables, dot, x, eff, f)
            for eff in (self._efficiency(dot, float(v), dot.psf) for v in levels)
        ]
        stacked = StateTables(*(np.concatenate([t[0][i] for t in per_level]) for i in range(5)))
        self._generate(
            dot.photon_rng,
            dot.pending,
            KIND_DOT,
            bounds,
            stops,
            level * n_states + state_at,
            (stacked, max(t[1] for t in per_level)),
            bins,
            dot.index,
        )

    def _bleach(
        self, dot: _Dot, laser: LaserSettings, t_a: float, t_b: float, j_b: int
    ) -> tuple[float, int]:
        """Add the stretch's light to the dot's dose; where it goes dark (``t_b``, ``j_b``: not).

        The crossing time is exact, so the bleaching does not depend on the chunking.
        """
        limit = dot.params.bleach_dose_s
        if not laser.emission or limit == math.inf:
            return t_b, j_b
        left = (limit - dot.dose) / dot.psf
        if left >= t_b - t_a:
            dot.dose += dot.psf * (t_b - t_a)
            return t_b, j_b
        dot.dose = limit
        dot.bleached = True
        t_end = t_a + max(left, 0.0)
        return t_end, self._clock.pulse_at_or_after(t_end)

    def _run_chain(
        self, dot: _Dot, q: NDArray[np.float64], x: float, bias: float, t_a: float, t_b: float
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        exit_max = float(q.sum(axis=1).max())
        cap = int((t_b - t_a) * exit_max * 1.3 + 10.0 * math.sqrt((t_b - t_a) * exit_max) + 16)
        if dot.power_law:
            # Markov moves among X0, X1-, ...; X0 <-> X+ goes by the power-law gate.
            q_on = q.copy()
            q_on[0, :] = 0.0
            q_on[:, 0] = 0.0
            scale_on, scale_off = dwell_scales(dot.params, bias, x)
        while True:
            saved = dot.chain_rng.copy(), dot.blink_rng.copy(), dot.gate.copy()
            out_t = np.empty(cap)
            out_s = np.empty(cap, dtype=np.int64)
            if dot.power_law:
                n, state, nxt = run_gated_chain(
                    dot.chain_rng,
                    dot.blink_rng,
                    q_on,
                    dot.law,
                    dot.gate,
                    scale_on,
                    scale_off,
                    dot.state,
                    dot.next_jump,
                    t_a,
                    t_b,
                    out_t,
                    out_s,
                )
            else:
                n, state, nxt = run_chain(
                    dot.chain_rng, q, dot.state, dot.next_jump, t_a, t_b, out_t, out_s
                )
            if n >= 0:
                break
            dot.chain_rng[:], dot.blink_rng[:], dot.gate[:] = saved
            cap *= 2
        dot.state, dot.next_jump = int(state), float(nxt)
        return out_t[:n], out_s[:n]

    def _dot_tables(self, dot: _Dot, x: float, eff: float, f: float) -> tuple:
        unit = self.detection.microtime_unit_s
        probs = emission_probabilities(dot.table, x, eff)
        log1m_q, cum = skip_tables(probs)
        return (
            StateTables(
                log1m_q, cum, dot.table.tau_s / unit, dot.table.tau_xx_s / unit, dot.table.charge
            ),
            float(detected_photons_per_pulse(probs).max()),
        )

    def _generate(
        self,
        rng: NDArray[np.uint64],
        pending: NDArray[np.int64],
        kind: int,
        seg_start: NDArray[np.int64],
        seg_stop: NDArray[np.int64],
        seg_state: NDArray[np.int64],
        tables: tuple[StateTables, float],
        bins: DetectionBins,
        src: int,
    ) -> None:
        """Append one source's photons to the chunk buffer (growing it when needed).

        ``tables`` is the source's :class:`StateTables` and its most photons per pulse.
        """
        state_tables, per_pulse = tables
        n_pulses = int(seg_stop[-1] - seg_start[0]) if len(seg_start) else 0
        mean = n_pulses * per_pulse
        extra = int(mean * 1.02 + 8.0 * math.sqrt(mean) + 64)
        buf = self._buf
        while True:
            buf.reserve(extra)
            saved_rng, saved_pending = rng.copy(), pending.copy()
            out = PhotonColumns(buf.macro, buf.micro, buf.chan, buf.charge)
            n = generate(
                rng, pending, kind, seg_start, seg_stop, seg_state, state_tables, bins, out, buf.n
            )
            if n >= 0:
                break
            rng[:] = saved_rng
            pending[:] = saved_pending
            extra *= 2
        buf.src[buf.n : n] = src
        buf.n = n

    def _emit(self, sync_stop: int) -> tuple:
        """Sort, hand out the photons before ``sync_stop`` (after dead time), carry the rest."""
        buf = self._buf
        macro, micro, chan, charge, src = buf.columns()
        order = np.argsort(sort_keys(macro, micro, chan, src), kind="stable")
        n_out = int(np.count_nonzero(macro < sync_stop))
        clock = self._clock
        out, carry = gather_with_dead_time(
            order,
            n_out,
            macro,
            micro,
            chan,
            charge,
            src,
            np.asarray(clock.sync0, dtype=np.int64),
            np.asarray(clock.t0),
            np.asarray(clock.rate),
            self.detection.microtime_unit_s,
            self.detection.dead_time_s,
            self._dead_last,
        )
        buf.reset(carry)
        macro, micro, chan, charge, src = out
        source = src.astype(np.int16)
        source[src == _SRC_BACKGROUND] = SOURCE_BACKGROUND
        source[src == _SRC_DARK] = SOURCE_DARK
        return macro, micro, chan, charge, source


class _Buffer:
    """Photon columns of the chunk being built; kept between chunks to avoid reallocation."""

    _DTYPES = (np.int64, np.int64, np.uint8, np.int8, np.int64)

    def __init__(self) -> None:
        self.n = 0
        self.macro, self.micro, self.chan, self.charge, self.src = (
            np.empty(0, dtype=d) for d in self._DTYPES
        )

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.macro):
            return
        cap = max(need, int(len(self.macro) * 1.5))
        cols = []
        for old, d in zip(self.columns(), self._DTYPES, strict=True):
            new = np.empty(cap, dtype=d)
            new[: self.n] = old
            cols.append(new)
        self.macro, self.micro, self.chan, self.charge, self.src = cols

    def columns(self) -> tuple:
        n = self.n
        return self.macro[:n], self.micro[:n], self.chan[:n], self.charge[:n], self.src[:n]

    def reset(self, carry: tuple) -> None:
        """Start the next chunk with the carried photons."""
        self.n = 0
        self.reserve(len(carry[0]))
        for dst, col in zip(
            (self.macro, self.micro, self.chan, self.charge, self.src), carry, strict=True
        ):
            dst[: len(col)] = col
        self.n = len(carry[0])


def _rate_matrix(p: DotParameters, bias_v: float, x: float, damage: float) -> NDArray:
    return rate_matrix(p, bias_v, x, damage=damage)


def _one_state_tables(p: float, tau_bins: float) -> tuple[StateTables, float]:
    p = min(max(p, 0.0), 1.0 - 1e-12)
    tables = StateTables(
        np.array([math.log1p(-p)]),
        np.ones((1, 3)),
        np.array([tau_bins]),
        np.zeros(1),
        np.array([NO_DOT_STATE], dtype=np.int8),
    )
    return tables, p


class SingleDot(PhotonEngine):
    """One dot in the focus, with background and dark counts: the lower-level generator.

    Parameters
    ----------
    preset
        A preset name (``"qd1"``, ``"qd2"``) or :class:`DotParameters`.
    seed
        Seed of every random stream (same seed + same calls = same photons).
    bias_v
        Initial bias vs the Pt quasi-reference.
    power_w, rep_rate_hz, emission
        Initial laser settings.
    detection
        The detection chain; defaults as in :class:`Detection`.
    rise_time_s
        10-90 % rise time of the bias at the dot after a step (the cell's response).
    """

    def __init__(
        self,
        preset: str | DotParameters = "qd1",
        *,
        seed: int = 0,
        bias_v: float = 0.0,
        power_w: float = REFERENCE_POWER_W,
        rep_rate_hz: float = REFERENCE_REP_RATE_HZ,
        emission: bool = True,
        detection: Detection | None = None,
        rise_time_s: float = BIAS_RISE_TIME_S,
    ) -> None:
        from ._presets import resolve_preset

        params = resolve_preset(preset)
        super().__init__(
            [(params, (0.0, 0.0, 0.0))],
            seed=seed,
            detection=detection,
            laser=LaserSettings(emission, power_w, rep_rate_hz),
            bias_v=bias_v,
            rise_time_s=rise_time_s,
        )

    @property
    def params(self) -> DotParameters:
        return self._dots[0].params

    def stationary(self, bias_v: float | None = None) -> NDArray[np.float64]:
        """Steady-state occupation of each charge state at ``bias_v`` (default: commanded)."""
        dot = self._dots[0]
        bias = self._bias_target if bias_v is None else check_physical_bias(bias_v)
        x = self._excitations(dot, self._laser, 1.0)
        return stationary_distribution(rate_matrix(dot.params, bias, x, damage=self.cell.damage))
