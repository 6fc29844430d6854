"""What each IOC needs from its instrument: one small backend protocol per instrument.

A PVGroup holds a backend and talks to the hardware only through it. The simulated sample
implements these protocols (:mod:`._sim_backends`), :class:`~._faults.FaultInjectingBackend`
wraps any of them to make an operation fail, and a real driver (a potentiostat over a serial
line, a PicoQuant card) implements them the same way. Nothing here knows caproto: values are
plain floats, tuples and numpy arrays, and the methods are synchronous (each returns quickly;
a driver that must wait does so with a timeout and raises :class:`BackendFault`).

A backend reports a failed operation by raising :class:`BackendFault` (or ``OSError``, e.g. a
closed serial port or a timeout); the IOC turns it into a failed put, an alarm on its status PV
and one log line, and keeps serving.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray


class BackendFault(RuntimeError):
    """The instrument failed an operation (e.g. a compliance trip); the message is one line."""


class PotentiostatBackend(Protocol):
    """A potentiostat: it applies a bias to the cell and measures the cell current.

    The safe window is the IOC's policy (its ``bias_*_limit`` PVs); the backend only states the
    range it can apply at all.
    """

    @property
    def hardware_range_v(self) -> tuple[float, float]:
        """Lowest and highest bias (V) the instrument can apply."""
        ...

    @property
    def bias_v(self) -> float:
        """Bias (V) applied now."""
        ...

    @property
    def current_a(self) -> float:
        """Cell current (A) measured by the last :meth:`apply_bias` or :meth:`read_current`."""
        ...

    def apply_bias(self, bias_v: float, *, dbias_dt_v_per_s: float = 0.0) -> None:
        """Apply ``bias_v`` now and measure the current (one step of a ramp, or a static bias).

        Parameters
        ----------
        bias_v
            Bias (V) against the reference electrode.
        dbias_dt_v_per_s
            Sweep rate at this step (V/s), 0 for a static bias: the charging current of the
            double layer follows it.

        Raises
        ------
        BackendFault
            The instrument refused or failed (e.g. it tripped on its current compliance).
        """
        ...

    def read_current(self) -> float:
        """A fresh reading of the cell current (A) at the applied bias.

        Raises
        ------
        BackendFault
            The instrument failed to measure.
        """
        ...


class LaserLocks(NamedTuple):
    """What stops a laser emitting, each cause on its own (a Sepia II's "locked" mixes them)."""

    interlock_open: bool
    """The hardware interlock (key switch or power line) stops emission."""
    cause: str
    """``"none"``, ``"key"`` or ``"power failure"``."""
    soft_lock: bool
    """The software lock (emission switched off by a client) is set."""


class NotSupportedError(BackendFault):
    """The instrument lacks a feature (e.g. iR compensation); the message names it."""


class PotentiostatSettings(Protocol):
    """Optional settings of a potentiostat backend; the IOC serves each as a PV.

    A backend without an attribute (or whose setter raises :class:`NotSupportedError`) lacks
    that feature: the PV reads its default and a put to it fails with a one-line status.
    """

    #: Full scales (A) of the current ranges, smallest first (the ``current_range`` ENUM).
    current_ranges_a: tuple[float, ...]
    #: Full scale (A) of the range in use (with autorange on: the range the instrument chose).
    current_range_a: float
    #: True while the instrument picks its current range itself.
    autorange: bool
    #: Largest |bias| (V) the instrument applies; the safe window must lie inside it.
    compliance_v: float
    #: iR compensation: the compensated resistance (ohm) and whether it is applied.
    ir_compensation_ohm: float
    ir_compensation_on: bool
    #: True while the trigger output pulses at every bias step and CV vertex.
    trigger_output_enabled: bool

    def emit_trigger(self) -> None:
        """Pulse the trigger output now (if enabled): the IOC calls it at every bias step."""
        ...

    def drain_trigger_times(self) -> list[float]:
        """Times (s, the backend's clock) of the trigger pulses since the last call."""
        ...


class StreamingCv(Protocol):
    """Optional: the instrument runs the CV waveform itself and streams (E, I) points.

    Without it the IOC sweeps the bias itself with :meth:`PotentiostatBackend.apply_bias`.
    """

    def start_cv(
        self, start_v: float, vertex_v: float, end_v: float, rate_v_per_s: float, cycles: int
    ) -> None:
        """Start the waveform start -> vertex -> end (``cycles`` times) and return at once.

        Raises
        ------
        BackendFault
            The instrument refused the waveform.
        """
        ...

    def read_cv(self) -> tuple[list[tuple[float, float]], bool]:
        """The (bias V, current A) points streamed since the last call, and whether the
        waveform is over; returns at once."""
        ...

    def abort(self) -> None:
        """Stop the running waveform where it is (the bias stays applied)."""
        ...


class LaserBackend(Protocol):
    """A pulsed laser behind a safety interlock."""

    @property
    def rep_rates_hz(self) -> tuple[float, ...]:
        """The repetition rates (Hz) the laser offers, the choices of the ``frequency`` PV."""
        ...

    @property
    def intensity_permille(self) -> int:
        """The driver's intensity (per mille) the last :meth:`set_output` set."""
        ...

    @property
    def emission_at_start(self) -> bool:
        """Whether the IOC switches emission on at start (a simulation; never a real laser)."""
        ...

    def read_locks(self) -> LaserLocks:
        """The interlock and the soft lock now (the IOC polls it).

        Raises
        ------
        BackendFault
            The laser driver failed.
        """
        ...

    @property
    def rep_rate_locked(self) -> bool:
        """True while a change of repetition rate would spoil a measurement (the TCSPC card
        acquires with the present rate as its sync)."""
        ...

    def set_output(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        """Set emission, average power at the sample (W) and repetition rate (Hz) now.

        Emission stays off while the interlock is open, whatever is asked.

        Raises
        ------
        ValueError
            The laser cannot do what is asked (a power outside its calibration, a rate not in
            :attr:`rep_rates_hz`, emission while locked); one line, the put is refused.
        BackendFault
            The laser driver failed.
        """
        ...

    def set_interlock(self, is_open: bool) -> None:
        """Open (emission forced off) or close the interlock (an input on a real laser).

        Raises
        ------
        ValueError
            The interlock is an input of this laser: it cannot be set.
        BackendFault
            The laser driver failed.
        """
        ...


class StageBackend(Protocol):
    """A closed-loop three-axis stage (positions in um, in the sample's frame)."""

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Where the stage is: (x, y, z) in um."""
        ...

    def move_to(self, x_um: float, y_um: float, z_um: float) -> None:
        """Put the stage at (x, y, z) now (the IOC calls it along its trajectory).

        Raises
        ------
        BackendFault
            The controller refused or failed (e.g. a following error).
        """
        ...


class PhotonBlock(Protocol):
    """Photons detected in ``[t_start_s, t_stop_s)``: T3 records of one read-out."""

    macrotime: NDArray[np.int64]
    """Laser sync count of each photon, sorted."""
    microtime: NDArray[np.uint16]
    """Delay after the sync, in bins of :attr:`microtime_unit_s`."""
    channel: NDArray[np.uint8]
    """Detector channel of each photon."""
    t_start_s: float
    """Start of the block on the backend's clock (:meth:`TcspcBackend.now`)."""
    t_stop_s: float
    """End of the block on the same clock."""
    sync_start: int
    """First laser pulse of the block."""
    sync_stop: int
    """First laser pulse after the block."""
    rep_rate_hz: float
    """Laser repetition rate during the block."""
    microtime_unit_s: float
    """Width of a microtime bin (s)."""


class TcspcBackend(Protocol):
    """A TCSPC card that time-tags photons, and the bias markers it records beside them.

    The photons flow all the time (the rate meters count them); the IOC writes those of an
    acquisition to its file. The bias markers come from the potentiostat the card is wired to.

    Optional members a real card adds (the IOC looks for each; the TimeHarp 260 backend
    :class:`~._harp.HarpTcspc` has them all): ``configure(name, value)`` (the settings PVs,
    ``mode`` and ``binning``), ``count_rates()`` (its own rate meters), ``status_bits()``
    (warnings, flags), ``t2_tick_s``, ``measurement_start_s``, ``sees_bias = False`` (no
    ``/user/bias``), ``reports_overruns = True``. Its blocks may carry ``sync_divider``,
    ``t2_ticks``, ``marker_timestamp``/``marker_channel`` (to ``/user/markers``) and
    ``fifo_full`` (:class:`~._harp.HarpBlock`).
    """

    @property
    def rep_rate_hz(self) -> float:
        """Laser sync rate (Hz) the card sees."""
        ...

    @property
    def microtime_unit_s(self) -> float:
        """The card's finest microtime bin (s)."""
        ...

    @property
    def microtime_bins(self) -> int:
        """Number of finest microtime bins per laser period the card records."""
        ...

    @property
    def interlock_open(self) -> bool:
        """True while the laser interlock is open (acquisitions are refused)."""
        ...

    @property
    def bias_v(self) -> float:
        """Bias (V) the potentiostat applies now."""
        ...

    @property
    def current_a(self) -> float:
        """Cell current (A) of the potentiostat's last reading."""
        ...

    def describe(self, mode: str) -> str:
        """The photon file's description: the card in ``mode`` (T2/T3) and what it looks at."""
        ...

    def now(self) -> float:
        """Seconds on the card's clock (that of :attr:`PhotonBlock.t_start_s`), monotonic."""
        ...

    def read_photons(self) -> PhotonBlock:
        """The photons detected since the previous call, up to now.

        Raises
        ------
        BackendFault
            The card stopped delivering photons (FIFO read failed, card lost).
        """
        ...

    def start_acquisition(self) -> None:
        """Mark the start of an acquisition: bias changes are logged from now on."""
        ...

    def stop_acquisition(self) -> None:
        """Mark its end: bias changes are no longer logged."""
        ...

    def drain_bias_log(self) -> list[tuple[float, float, float]]:
        """(time, bias V, current A) of every bias change since the last call."""
        ...

    def read_current(self) -> float:
        """A fresh reading of the cell current (A), for a marker."""
        ...
