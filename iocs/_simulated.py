"""The simulated instrument: the four IOCs on one ``qd_bluesky.sim`` sample.

This module only composes: it builds a :class:`SimulatedSample`, one backend per instrument on
it (:mod:`._sim_backends`) and hands each to its PVGroup, which knows its backend's protocol
(:mod:`._backends`) and nothing of the simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from caproto.server import PVGroup

from ._laser import LaserIOC
from ._potentiostat import PotentiostatIOC
from ._server import ioc_parser, photon_dir_of, serve
from ._sim_backends import (
    DEFAULT_LASER,
    SimulatedLaser,
    SimulatedPotentiostat,
    SimulatedSample,
    SimulatedStage,
    SimulatedTcspc,
)
from ._stage import StageIOC
from ._tcspc import TcspcIOC

__all__ = ["DEFAULT_LASER", "SimulatedInstrument", "SimulatedSample", "main_instrument"]

#: The simulated backend of each instrument's PVGroup.
SIMULATED_BACKENDS: dict[type[PVGroup], Callable[[SimulatedSample], Any]] = {
    PotentiostatIOC: SimulatedPotentiostat,
    LaserIOC: SimulatedLaser,
    StageIOC: SimulatedStage,
    TcspcIOC: SimulatedTcspc,
}


class SimulatedInstrument:
    """The four simulated IOCs on one shared sample, ready to be served together.

    Parameters
    ----------
    prefix
        PV prefix of the instrument; the IOCs serve ``{prefix}pot:``, ``{prefix}tcspc:``,
        ``{prefix}laser:`` and ``{prefix}stage:``.
    preset, seed, field, area_um
        Passed to :class:`SimulatedSample`.
    data_dir
        Where the TCSPC IOC writes photon files (default: the current directory).
    sample_options
        Further keywords of :class:`SimulatedSample` (``rise_time_s``, ``trigger_channel``,
        ``card_sees_bias``).
    """

    def __init__(
        self,
        prefix: str = "qd:",
        *,
        preset: str = "qd1",
        seed: int = 0,
        data_dir: str | Path | None = None,
        field: int | None = None,
        area_um: float | None = None,
        **sample_options: Any,
    ) -> None:
        self.sample = sample = SimulatedSample(
            preset=preset, seed=seed, field=field, area_um=area_um, **sample_options
        )
        self.pot = PotentiostatIOC(prefix=f"{prefix}pot:", backend=SimulatedPotentiostat(sample))
        self.laser = LaserIOC(prefix=f"{prefix}laser:", backend=SimulatedLaser(sample))
        self.stage = StageIOC(prefix=f"{prefix}stage:", backend=SimulatedStage(sample))
        self.tcspc = TcspcIOC(
            prefix=f"{prefix}tcspc:", backend=SimulatedTcspc(sample), data_dir=data_dir
        )

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
    backend = SIMULATED_BACKENDS[group_cls](sample)
    group = group_cls(prefix=f"{ioc_options['prefix']}{suffix}", backend=backend, **extra)
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
