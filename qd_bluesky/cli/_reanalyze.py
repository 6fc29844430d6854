"""``qd-bluesky reanalyze``: re-analyse every matching raw run on a Dask cluster."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reanalyze",
        help="re-analyse every matching raw run on a Dask cluster",
        description="Re-analyse the raw photon runs in the catalog (all of them, or those of "
        "--plan since --since) with the given analysis settings, one Dask task per run, on a "
        "LocalCluster of one worker process per core or on a running scheduler (--scheduler; "
        "its workers must see the same data directory or Tiled server). Each run gets a new "
        "derived run, as `qd-bluesky replay` writes it, with the settings (the analysis "
        "defaults and the options given here, whatever the live run used) in its start "
        "document. A run that fails is reported in one line and the others go on; exit "
        "status 1 if any failed.",
    )
    p.add_argument(
        "--plan",
        metavar="NAME",
        action="append",
        help="only runs of this plan (repeatable)",
    )
    p.add_argument(
        "--since",
        metavar="DATE",
        help="only runs started at or after this ISO 8601 date or time (UTC unless it says)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster)",
    )
    p.add_argument(
        "--connect-timeout",
        metavar="S",
        type=float,
        default=10.0,
        help="seconds to wait for the scheduler (10)",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help="worker processes of the LocalCluster (default: one per core, at most one per run)",
    )
    p.add_argument(
        "--bin-ms",
        metavar="MS",
        type=float,
        default=None,
        help="FLID bin width in ms (the analysis' 20)",
    )
    p.add_argument(
        "--confidence",
        metavar="C",
        type=float,
        choices=(0.69, 0.90, 0.95, 0.99),
        default=None,
        help="confidence of the change-point test behind the levels: 0.69, 0.90, 0.95 (the "
        "default) or 0.99",
    )
    p.add_argument("--data-dir", metavar="D", help="data directory holding the catalog")
    p.add_argument("--catalog", metavar="URI", help="Tiled server URI instead of the embedded one")
    p.add_argument("--json", action="store_true", help="print a JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """The analysis defaults with the options given on the command line."""
    from ..callbacks import AnalysisSettings

    options = {}
    if args.bin_ms is not None:
        options["flid_bin_s"] = args.bin_ms * 1e-3
    if args.confidence is not None:
        options["confidence"] = args.confidence
    return AnalysisSettings(**options)


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from tqdm import tqdm

    from ..callbacks import parse_since, reanalyze, select_raw_runs
    from ..catalog import open_catalog

    # Argument errors before any catalog or cluster is opened.
    since = None if args.since is None else parse_since(args.since)
    settings = settings_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if not args.connect_timeout > 0:
        raise ValueError(f"--connect-timeout must be positive, got {args.connect_timeout}")
    if not getattr(args, "debug", False):
        # The cluster's start and stop are logged at INFO line by line, and distributed's
        # configuration gives its loggers their own levels.
        import distributed  # noqa: F401 - creates its loggers

        for name in list(logging.root.manager.loggerDict):
            if name.partition(".")[0] == "distributed":
                logging.getLogger(name).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    with open_catalog(args.data_dir, uri=args.catalog, create=False) as catalog:
        uids = select_raw_runs(catalog, plans=args.plan, since=since)
        if not uids:
            raise ValueError(f"no raw photon runs match {_selection(args)}")
        with tqdm(
            total=len(uids), unit="run", file=sys.stderr, disable=args.no_progress, leave=False
        ) as bar:
            results = reanalyze(
                catalog,
                uids,
                settings=settings,
                scheduler=args.scheduler,
                workers=args.workers,
                timeout=args.connect_timeout,
                on_result=lambda _: bar.update(),
            )
    seconds = time.perf_counter() - t0
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"qd-bluesky: error: run {r.raw_uid}: {r.exit_status}: {r.reason}", file=sys.stderr)
    if args.json:
        summary = {
            "runs": [r.to_dict() for r in results],
            "settings": settings.metadata()["settings"],
            "failed": len(failed),
            "photons": sum(r.photons for r in results),
            "seconds": seconds,
        }
        json.dump(summary, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for r in results:
            derived = r.derived_uid or "(none)"
            print(f"{r.raw_uid}  ->  {derived}  {r.exit_status:8} {r.photons:>10} photons")
        print(f"{len(results) - len(failed)} of {len(results)} runs re-analysed in {seconds:.1f} s")
    return 1 if failed else 0


def _selection(args: argparse.Namespace) -> str:
    parts = []
    if args.plan:
        parts.append("plan " + " or ".join(args.plan))
    if args.since:
        parts.append(f"since {args.since}")
    where = args.catalog or "the catalog"
    return f"{', '.join(parts)} in {where}" if parts else f"in {where}"
