"""Run the tcspc IOC alone: ``python -m qd_bluesky.iocs.tcspc --prefix qd:``.

It serves ``{prefix}tcspc:*`` (see :class:`qd_bluesky.iocs.TcspcIOC` for the PVs) on its
own simulated sample; ``--list-pvs`` logs the PV names at start-up.

``--backend th260`` drives a PicoQuant TimeHarp 260 through TH260Lib instead (``--library
PATH``, default the system's ``libth260.so``); ``--emulate PTU`` puts the library's emulator
(:mod:`._harp_emulator`) in its place, replaying that T3 recording (``--emulate-t2 PTU`` for
T2, ``--fifo-full-after N`` to fill the FIFO after N records).
"""

import argparse

from ._simulated import main_single
from ._tcspc import TcspcIOC


def main(argv: list[str] | None = None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend", choices=("sim", "th260"), default="sim")
    known, rest = pre.parse_known_args(argv)
    if known.backend == "sim":
        main_single(TcspcIOC, "tcspc:", rest)
        return
    from ._harp import main_harp

    main_harp(argv)


if __name__ == "__main__":
    main()
