"""The simulated instrument: one ``qd_bluesky.sim`` sample shared by the four IOCs.

The instruments (PVGroups) touch the physics only through :class:`SimulatedSample`, which keeps
the one clock the sample needs (times never go backwards) and the little cross-instrument state
a real lab has in its wiring: the laser's interlock, whether the TCSPC card is acquiring, the
bias and current the potentiostat applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from caproto.server import PVGroup

from ._laser import LaserIOC
from ._potentiostat import PotentiostatIOC
from ._server import ioc_parser, photon_dir_of, serve
from ._stage import StageIOC
from ._tcspc import TcspcIOC

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
    """

    def __init__(
        self, preset: str = "qd1", seed: int = 0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from qd_bluesky.sim import Sample, warm_up  # the IOCs are the only place that knows it

        warm_up()  # compile the kernels now, not inside the IOC's event loop
        self.sample = Sample(preset=preset, seed=seed)
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
        self.position_um: tuple[float, float, float] = tuple(float(v) for v in self.sample.home_um)
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


class SimulatedInstrument:
    """The four simulated IOCs on one shared sample, ready to be served together.

    Parameters
    ----------
    prefix
        PV prefix of the instrument; the IOCs serve ``{prefix}pot:``, ``{prefix}tcspc:``,
        ``{prefix}laser:`` and ``{prefix}stage:``.
    preset, seed
        Passed to :class:`SimulatedSample`.
    data_dir
        Where the TCSPC IOC writes photon files (default: the current directory).
    """

    def __init__(
        self,
        prefix: str = "qd:",
        *,
        preset: str = "qd1",
        seed: int = 0,
        data_dir: str | Path | None = None,
    ) -> None:
        self.sample = SimulatedSample(preset=preset, seed=seed)
        self.pot = PotentiostatIOC(prefix=f"{prefix}pot:", sample=self.sample)
        self.laser = LaserIOC(prefix=f"{prefix}laser:", sample=self.sample)
        self.stage = StageIOC(prefix=f"{prefix}stage:", sample=self.sample)
        self.tcspc = TcspcIOC(prefix=f"{prefix}tcspc:", sample=self.sample, data_dir=data_dir)

    @property
    def groups(self) -> list[PVGroup]:
        return [self.pot, self.tcspc, self.laser, self.stage]


def main_single(group_cls: type[PVGroup], suffix: str, argv: Sequence[str] | None = None) -> None:
    """Serve one simulated instrument alone (``python -m qd_bluesky.iocs.<name>``)."""
    tcspc = group_cls is TcspcIOC
    doc = (group_cls.__doc__ or "").strip().splitlines()[0]
    parser, split_args = ioc_parser(
        desc=f"{doc} Simulated, PVs {{prefix}}{suffix}*.", data_dir=tcspc
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    sample = SimulatedSample(preset=args.preset, seed=args.seed)
    extra = {"data_dir": photon_dir_of(args.data_dir, args.photon_dir)} if tcspc else {}
    group = group_cls(prefix=f"{ioc_options['prefix']}{suffix}", sample=sample, **extra)
    serve([group], **run_options)


def main_instrument(argv: Sequence[str] | None = None) -> None:
    """Serve the four simulated IOCs on one sample (``python -m qd_bluesky.iocs``)."""
    parser, split_args = ioc_parser(
        desc="The simulated instrument: potentiostat, TCSPC card, laser and stage on one "
        "simulated sample.",
        data_dir=True,
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    instrument = SimulatedInstrument(
        ioc_options["prefix"],
        preset=args.preset,
        seed=args.seed,
        data_dir=photon_dir_of(args.data_dir, args.photon_dir),
    )
    serve(instrument.groups, **run_options)
