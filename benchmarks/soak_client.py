"""The client of ``qd-bluesky run bias-cycling`` with parts switched off, to see what grows.

    python benchmarks/soak_client.py --prefix P --data-dir D --cycles N [--rate 2.0]
                                     [--no-analyzer] [--no-catalog]

What ``qd-bluesky run`` does (connect, open the catalog, RunEngine, writer and live analyzer,
the plan), with the live analyzer or the catalog writer left out. Used by ``soak_real.py
--client-variant``; the instrument's port comes from the environment (EPICS_CA_*).
"""

from __future__ import annotations

import argparse

from bluesky import RunEngine

from qd_bluesky.callbacks import LiveAnalyzer, subscribe_live_analysis
from qd_bluesky.catalog import open_catalog
from qd_bluesky.devices import connect_instrument
from qd_bluesky.plans import bias_cycling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cycles", type=int, required=True)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--no-analyzer", action="store_true")
    parser.add_argument("--no-catalog", action="store_true")
    args = parser.parse_args()
    instrument = connect_instrument(args.prefix, timeout=10)
    with open_catalog(args.data_dir) as catalog:
        RE = RunEngine({})  # noqa: N806
        analyzer = None
        if not args.no_catalog and not args.no_analyzer:
            analyzer = subscribe_live_analysis(RE, catalog.writer)
        elif not args.no_catalog:
            RE.subscribe(catalog.writer)
        elif not args.no_analyzer:
            analyzer = LiveAnalyzer(lambda name, doc: None)
            RE.subscribe(analyzer)
        RE(bias_cycling(instrument.tcspc, instrument.pot, args.cycles, rate=args.rate))
        if analyzer is not None:
            analyzer.wait(120)


if __name__ == "__main__":
    main()
