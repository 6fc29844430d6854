"""Run the laser IOC alone: ``python -m qd_bluesky.iocs.laser --prefix qd:``.

It serves ``{prefix}laser:*`` (see :class:`qd_bluesky.iocs.LaserIOC` for the PVs), by default
on its own simulated sample. ``--backend sepia2 --calibration FILE`` drives a PicoQuant
Sepia II through its library instead (``--library PATH``, default ``libsepia2.so`` /
``Sepia2_Lib.dll``; ``--library fake`` is the library's emulator); FILE is the lab's power
calibration (:mod:`qd_bluesky.iocs._power_calibration`). ``--list-pvs`` logs the PV names.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._backends import BackendFault
from ._laser import LaserIOC
from ._simulated import main_single

BACKENDS = ("simulated", "sepia2")


def main(argv: Sequence[str] | None = None) -> None:
    choose = argparse.ArgumentParser(add_help=False)
    choose.add_argument("--backend", choices=BACKENDS, default="simulated")
    known, rest = choose.parse_known_args(argv)
    if known.backend == "simulated":
        if {"-h", "--help"} & set(rest):
            print("--backend sepia2 serves a PicoQuant Sepia II (--backend sepia2 --help)\n")
        main_single(LaserIOC, "laser:", rest)
    else:
        main_sepia2(rest)


def main_sepia2(argv: Sequence[str]) -> None:
    """Serve the laser IOC on a Sepia II (``--backend sepia2``)."""
    from ._power_calibration import load_power_calibration
    from ._sepia2 import Sepia2Laser, load_sepia2_library
    from ._server import ioc_parser, serve

    parser, split_args = ioc_parser(desc="The laser IOC on a PicoQuant Sepia II.")
    parser.add_argument("--calibration", help="power calibration file (CSV or JSON)")
    parser.add_argument("--library", default=None, help="Sepia II library path, or 'fake'")
    parser.add_argument("--device-index", type=int, default=0, help="USB device index (0)")
    args = parser.parse_args(argv)
    if not args.calibration:
        parser.exit(2, "laser: error: --backend sepia2 needs --calibration FILE\n")
    try:
        calibration = load_power_calibration(args.calibration)
        backend = Sepia2Laser(
            load_sepia2_library(args.library), calibration, device_index=args.device_index
        )
    except (ValueError, OSError, BackendFault) as exc:
        parser.exit(1, f"laser: error: {exc}\n")
    ioc_options, run_options = split_args(args)
    group = LaserIOC(prefix=f"{ioc_options['prefix']}laser:", backend=backend)
    try:
        serve([group], **run_options)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
