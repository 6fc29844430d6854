"""``qd-bluesky report UID``: rebuild the figures and summary of stored runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild the report (figures, summary.json, summary.md) of stored runs",
        description="Rebuild the report of one or more runs from the catalog. A raw run is "
        "reported through its live derived run; a derived run is reported as it is.",
    )
    p.add_argument(
        "uids",
        nargs="+",
        metavar="UID",
        help="run uid or unique prefix (raw or derived), or -N: the N-th newest raw run",
    )
    p.add_argument("--data-dir", default=None, help="data directory of the embedded catalog")
    p.add_argument("--catalog", default=None, metavar="URI", help="a Tiled server instead")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report directory (default: <data dir>/reports/run-<uid>)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..callbacks import find_live_derived
    from ..catalog import CatalogError, get_run, open_catalog
    from ..report import derived_from_run, summary_markdown, write_report

    with open_catalog(args.data_dir, uri=args.catalog, create=False) as catalog:
        runs = []
        for uid in args.uids:
            node = get_run(catalog, uid)
            start = node.metadata["start"]
            if "raw_uid" in start:
                raw_uid, derived = start["raw_uid"], node
            else:
                raw_uid, derived = start["uid"], find_live_derived(catalog, start["uid"])
                if derived is None:
                    raise CatalogError(
                        f"run {start['uid'][:8]} has no derived run; analyse it with "
                        f"`qd-bluesky replay {start['uid'][:8]}` first"
                    )
            runs.append((raw_uid, derived_from_run(derived)))
        out = args.out or catalog.reports_dir / f"run-{runs[0][0][:8]}"
        report = write_report(out, runs)
    if args.json:
        json.dump({"report_dir": str(report.directory), "summary": report.summary}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(summary_markdown(report.summary))
        print(f"report: {report.directory} ({len(report.figures)} figures)")
    return 0
