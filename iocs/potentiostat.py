"""Run the potentiostat IOC alone: ``python -m qd_bluesky.iocs.potentiostat``.

It serves ``{prefix}pot:*`` (see :class:`qd_bluesky.iocs.PotentiostatIOC` for the PVs) on its
own simulated sample (``--backend sim``, the default), or on a PalmSens EmStat over
MethodSCRIPT: ``--backend emstat --serial /dev/ttyACM0``. ``--list-pvs`` logs the PV names at
start-up.
"""

from __future__ import annotations

import sys

from ._potentiostat import PotentiostatIOC
from ._server import ioc_parser, serve

#: Backends of ``--backend``.
BACKENDS = ("sim", "emstat")


def main(argv: list[str] | None = None) -> None:
    parser, split_args = ioc_parser(
        desc="The potentiostat IOC, PVs {prefix}pot:* (simulated, or a PalmSens EmStat)."
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="sim", help="the instrument (default: sim)"
    )
    parser.add_argument(
        "--serial", default=None, help="serial port of the EmStat (e.g. /dev/ttyACM0)"
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    if args.backend == "emstat":
        if not args.serial:
            parser.error("--backend emstat needs --serial PORT")
        from ._emstat import open_emstat

        try:
            backend = open_emstat(args.serial)
        except ValueError as exc:
            sys.exit(f"qd-bluesky potentiostat: {exc}")
    else:
        from ._sim_backends import SimulatedPotentiostat, SimulatedSample

        backend = SimulatedPotentiostat(SimulatedSample(preset=args.preset, seed=args.seed))
    group = PotentiostatIOC(prefix=f"{ioc_options['prefix']}pot:", backend=backend)
    serve([group], **run_options)


if __name__ == "__main__":
    main()
