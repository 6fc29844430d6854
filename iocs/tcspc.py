"""Run the simulated tcspc IOC alone: ``python -m qd_bluesky.iocs.tcspc --prefix qd:``.

It serves ``{prefix}tcspc:*`` (see :class:`qd_bluesky.iocs.TcspcIOC` for the PVs) on its
own simulated sample; ``--list-pvs`` logs the PV names at start-up.
"""

from ._simulated import main_single
from ._tcspc import TcspcIOC


def main(argv: list[str] | None = None) -> None:
    main_single(TcspcIOC, "tcspc:", argv)


if __name__ == "__main__":
    main()
