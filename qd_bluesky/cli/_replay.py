"""``qd-bluesky replay``: analyse a stored raw run again and compare with the live analysis."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run the live analysis over a stored raw run",
        description="Read a raw run back from the catalog, run the live photon analyzer over "
        "it again, write the result as a new derived run (marked as a replay) and compare it "
        "with the derived run written live: the FLID, the decay histograms and the g2 "
        "counts must be identical. Exit status 0 when they are (or when there is no live "
        "derived run to compare with), 1 otherwise.",
    )
    p.add_argument(
        "uid",
        metavar="UID",
        help="raw run uid, a unique prefix of it, or -N: the N-th newest raw run (-1: the last)",
    )
    p.add_argument("--data-dir", metavar="D", help="data directory holding the catalog")
    p.add_argument("--catalog", metavar="URI", help="Tiled server URI instead of the embedded one")
    p.add_argument("--json", action="store_true", help="print a JSON object on stdout")
    p.add_argument(
        "--no-write",
        action="store_true",
        help="only compare: do not write the replayed derived run to the catalog",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..callbacks import replay
    from ..catalog import open_catalog

    with open_catalog(args.data_dir, uri=args.catalog, create=False) as catalog:
        result = replay(catalog, args.uid, write=not args.no_write)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_result(result))
    ok = result.exit_status == "success" and result.matches_live is not False
    return 0 if ok else 1


def format_result(result) -> str:
    """A few readable lines about a :class:`~qd_bluesky.callbacks.ReplayResult`."""
    written = result.derived_uid or "(not written)"
    lines = [
        f"raw run      {result.raw_uid}",
        f"replayed as  {written} ({result.exit_status}, {result.photons} photons, "
        f"{result.seconds:.2f} s)",
    ]
    if result.reason:
        lines.append(f"  {result.reason}")
    if result.live_uid is None:
        lines.append("live run     none (nothing to compare)")
    else:
        verdict = "identical" if result.matches_live else "DIFFERENT"
        lines.append(f"live run     {result.live_uid}: {verdict}")
        lines.extend(f"  {d}" for d in result.differences)
    return "\n".join(lines)
