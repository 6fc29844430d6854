"""Run the simulated potentiostat IOC alone: ``python -m qd_bluesky.iocs.potentiostat``.

It serves ``{prefix}pot:*`` (see :class:`qd_bluesky.iocs.PotentiostatIOC` for the PVs) on its
own simulated sample; ``--list-pvs`` logs the PV names at start-up.
"""

from ._potentiostat import PotentiostatIOC
from ._simulated import main_single


def main(argv: list[str] | None = None) -> None:
    main_single(PotentiostatIOC, "pot:", argv)


if __name__ == "__main__":
    main()
