"""``qd-bluesky demo``: the paper's experiment on the simulated instrument, with a report."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the paper's experiment on the simulated instrument and write a report",
        description="Start the simulated instrument, find the dot, step the bias through 0, "
        "-1.4, -1.7, -1.8 and -2 V, run a CV scan 0 -> -2 -> 0 V and a g2 measurement with live "
        "analysis, store everything in the catalog and write a report (about 5 minutes; "
        "--quick: about 2 minutes).",
    )
    p.add_argument("--data-dir", default=None, help="data directory of the embedded catalog")
    p.add_argument("--port", type=int, default=None, help="CA port of the simulated IOCs")
    p.add_argument("--quick", action="store_true", help="short dwells: done in about 2 minutes")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated sample (1)")
    p.add_argument(
        "--field",
        type=int,
        default=None,
        metavar="N",
        help="run on a survey field of N dots (the brightest found), not the preset dot",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._demo import DemoSettings, run_demo
    from ..report import summary_markdown

    if args.port is not None and not 1024 <= args.port <= 65534:
        raise ValueError(f"--port must be in 1024..65534, not {args.port}")
    if args.field is not None and not 1 <= args.field <= 31:
        raise ValueError(f"--field must be in 1..31, not {args.field}")
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    result = run_demo(
        args.data_dir,
        port=args.port,
        settings=DemoSettings.quick() if args.quick else DemoSettings(),
        seed=args.seed,
        progress=not args.no_progress,
        echo=say,
        field=args.field,
    )
    if args.json:
        json.dump(
            {
                "data_dir": str(result.data_dir),
                "report_dir": str(result.report_dir),
                "raw_uids": result.raw_uids,
                "derived_uids": result.derived_uids,
                "seconds": result.seconds,
                "summary": result.summary,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
        return 0
    print()
    print(summary_markdown(result.summary))
    print(f"report: {result.report_dir}")
    print(f"runs:   qd-bluesky runs --data-dir {result.data_dir}")
    print(f"done in {result.seconds:.0f} s")
    return 0
