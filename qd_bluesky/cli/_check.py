"""``qd-bluesky check-instrument``: the PV conformance suite against a lab's (or any) IOCs."""

from __future__ import annotations

import argparse
import json
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-instrument",
        help="run the PV conformance checks against the IOCs of a prefix",
        description="Connect each IOC of PREFIX, read every documented PV (docs/hardware.md), "
        "refuse an unsafe bias (at the device and at the IOC), move the stage a little and "
        "back, stop a move, take a short acquisition if the laser interlock is closed and "
        "emission on, and check that emission is refused with the interlock open where the "
        "IOC lets a client open it. One line per check (PASS/FAIL/SKIP and why); exits with 1 "
        "if any check fails. Run it against your own IOCs before the first experiment.",
    )
    p.add_argument("--prefix", default="qd:", help="PV prefix of the instrument (qd:)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="find the IOCs on 127.0.0.1 at this Channel Access port (as `qd-bluesky sim "
        "--port` serves them); default: EPICS_CA_ADDR_LIST",
    )
    p.add_argument(
        "--only",
        default=None,
        metavar="IOC[,IOC]",
        help="check only these IOCs: pot, tcspc, laser, stage (default: all four)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds each IOC may take to connect and each action to finish (10)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.port is not None:
        from .._session import ca_client_environment

        os.environ.update(ca_client_environment(args.port))
    from ..devices import disconnect_channel_access
    from ..devices._conformance import FAIL, run_checks

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    results = []
    try:
        for result in run_checks(args.prefix, timeout=args.timeout, only=only):
            results.append(result)
            if not args.json:
                print(result.line(), flush=True)
    finally:
        disconnect_channel_access()
    failed = sum(r.outcome == FAIL for r in results)
    if args.json:
        rows = [r._asdict() for r in results]
        print(json.dumps({"prefix": args.prefix, "failed": failed, "checks": rows}))
    else:
        print(f"{len(results)} checks, {failed} failed")
    return 1 if failed else 0
