"""``qd-bluesky runs``: list the runs in the catalog."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list the runs in the catalog",
        description="List the raw and derived runs in the catalog, oldest first. The catalog "
        "is the embedded one in the data directory (--data-dir, else $QD_BLUESKY_DATA, else "
        "the per-user data directory) unless --catalog names a Tiled server (API key from "
        "$TILED_API_KEY).",
    )
    p.add_argument("--data-dir", metavar="D", help="data directory holding the catalog")
    p.add_argument("--catalog", metavar="URI", help="Tiled server URI instead of the embedded one")
    p.add_argument("--json", action="store_true", help="print a JSON list on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..catalog import catalog_exists, list_runs, open_catalog, resolve_data_dir

    if args.catalog is None and not catalog_exists(args.data_dir):
        # Listing must not create a catalog: a new data directory simply has no runs.
        runs: list[dict[str, Any]] = []
    else:
        with open_catalog(args.data_dir, uri=args.catalog, create=False) as catalog:
            runs = list_runs(catalog)
    if args.json:
        json.dump(runs, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    elif runs:
        print(format_table(runs))
    else:
        where = args.catalog or resolve_data_dir(args.data_dir)
        print(f"no runs in {where}")
    return 0


def _events(num_events: dict[str, int] | None) -> str:
    if not num_events:
        return "-"
    return " ".join(f"{stream}:{n}" for stream, n in sorted(num_events.items()))


def format_table(runs: list[dict[str, Any]]) -> str:
    """A readable table of :func:`~qd_bluesky.catalog.list_runs` entries."""
    header = ("uid", "scan", "time (UTC)", "plan", "kind", "raw", "exit", "events")
    rows = [
        (
            r["uid"][:8],
            "-" if r["scan_id"] is None else str(r["scan_id"]),
            (r["time"] or "-")[:19].replace("T", " "),
            r["plan_name"] or "-",
            r["kind"],
            (r.get("raw_uid") or "-")[:8],
            r["exit_status"] or "(none)",
            _events(r["num_events"]),
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)
