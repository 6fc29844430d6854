"""``qd-bluesky survey``: find the dots of a field, test and classify each one, write a report."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "survey",
        help="find the dots of a field and classify each one (single emitter? how it charges)",
        description="Raster the field, find the dots, and at each one measure g2(0) at 0 V "
        "(non-single emitters are left), run a CV scan and classify the dot as deep (charges "
        "beyond X2-), shallow, none or brightening from the live analysis. Without --prefix "
        "the simulated instrument is started with a field of --dots dots. Writes a survey "
        "report (map by class, FLID thumbnails, class counts).",
    )
    p.add_argument("--data-dir", default=None, help="data directory of the embedded catalog")
    p.add_argument("--prefix", default=None, help="PV prefix of a running instrument")
    p.add_argument("--port", type=int, default=None, help="CA port of the IOCs")
    p.add_argument("--dots", type=int, default=6, help="sites of the simulated field (6)")
    p.add_argument(
        "--area",
        type=float,
        default=None,
        metavar="UM",
        help="side of the square to survey (um; simulated: grows with --dots)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated field (0)")
    p.add_argument(
        "--cv-rate", type=float, default=1.0, metavar="V_PER_S", help="CV scan rate (1 V/s)"
    )
    p.add_argument(
        "--cv-cycles",
        type=int,
        default=2,
        metavar="N",
        help="CV cycles per dot (2: charging must repeat in every cycle)",
    )
    p.add_argument("--g2-duration", type=float, default=4.0, help="g2 seconds per dot (4)")
    p.add_argument("--step", type=float, default=0.25, help="coarse raster step (0.25 um)")
    p.add_argument("--gate", type=float, default=0.1, help="rate-meter gate of the raster (0.1 s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._survey import echo_stderr, run_survey

    if args.port is not None and not 1024 <= args.port <= 65534:
        raise ValueError(f"--port must be in 1024..65534, not {args.port}")
    if args.prefix is None and not 1 <= args.dots <= 31:
        raise ValueError(f"--dots must be in 1..31, not {args.dots}")
    if args.area is not None and not 1.0 <= args.area <= 200.0:
        raise ValueError(f"--area must be in 1..200 um, not {args.area:g}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, not {args.seed}")
    if args.cv_cycles < 1:
        raise ValueError(f"--cv-cycles must be >= 1, not {args.cv_cycles}")
    for name in ("cv_rate", "g2_duration", "step", "gate"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    result = run_survey(
        args.data_dir,
        prefix=args.prefix,
        port=args.port,
        dots=args.dots,
        area_um=args.area,
        seed=args.seed,
        cv_rate=args.cv_rate,
        cv_cycles=args.cv_cycles,
        g2_duration=args.g2_duration,
        step_um=args.step,
        gate_s=args.gate,
        progress=echo_stderr if args.json else print,
    )
    if args.json:
        json.dump(result.as_json(), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        fraction = result.charging_beyond_x2_fraction
        print(
            f"found {result.found} dots; charging beyond X2-: "
            f"{'n/a' if fraction is None else f'{fraction:.0%}'}"
        )
        print(f"report: {result.report_dir}")
        print(f"done in {result.seconds:.0f} s")
    return 130 if result.interrupted else 0
