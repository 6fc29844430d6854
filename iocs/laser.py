"""Run the simulated laser IOC alone: ``python -m qd_bluesky.iocs.laser --prefix qd:``.

It serves ``{prefix}laser:*`` (see :class:`qd_bluesky.iocs.LaserIOC` for the PVs) on its
own simulated sample; ``--list-pvs`` logs the PV names at start-up.
"""

from ._laser import LaserIOC
from ._simulated import main_single


def main(argv: list[str] | None = None) -> None:
    main_single(LaserIOC, "laser:", argv)


if __name__ == "__main__":
    main()
