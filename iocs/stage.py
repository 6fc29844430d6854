"""Run the simulated stage IOC alone: ``python -m qd_bluesky.iocs.stage --prefix qd:``.

It serves ``{prefix}stage:*`` (see :class:`qd_bluesky.iocs.StageIOC` for the PVs) on its
own simulated sample; ``--list-pvs`` logs the PV names at start-up.
"""

from ._simulated import main_single
from ._stage import StageIOC


def main(argv: list[str] | None = None) -> None:
    main_single(StageIOC, "stage:", argv)


if __name__ == "__main__":
    main()
