"""Catalog-wide re-analysis: every selected raw run replayed as a task on a Dask cluster.

What crosses the process boundary is small: the catalog's location (data directory and server
URI), the raw uid and the :class:`AnalysisSettings`. Each worker opens the catalog itself (once
per process), reads the raw run's documents and its photon file, and runs :func:`replay` with
the derived documents collected instead of written. The documents go back to the client, which
alone writes them to the catalog, run after run, while the workers go on analysing.

Why the client writes: the embedded catalog's table storage (``tables.sqlite``, through ADBC)
has no busy timeout, so two processes writing derived runs at once fail with "database is
locked" (seen with two replays in two processes). One writer is safe for both the embedded
catalog and a Tiled server. The embedded databases are switched to SQLite's write-ahead log
first (persistent; Tiled intends it for its catalog), so the workers' reads do not collide
with the client's writes either.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import AnalysisSettings
from ._replay import replay

if TYPE_CHECKING:
    from qd_bluesky.catalog import Catalog

logger = logging.getLogger(__name__)

#: Seconds to wait for a scheduler (or a new LocalCluster) before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Tasks submitted per worker ahead of the writes (bounds the results held by the workers).
IN_FLIGHT_PER_WORKER = 2


@dataclass
class ReanalysisResult:
    """One raw run's re-analysis.

    Attributes
    ----------
    raw_uid
        The raw run.
    derived_uid
        The derived run written (None when nothing was written).
    photons
        Photons analysed.
    seconds
        Wall time: the worker's analysis plus the client's write of the derived run.
    analysis_s, write_s
        The two parts of ``seconds``: the worker's (reading the raw run, analysing, and a
        first task's catalog open) and the client's write.
    exit_status, reason
        Of the derived run ("success", or "fail" and why); "error" when no derived run could
        be made or written, ``reason`` then says why in one line.
    """

    raw_uid: str
    derived_uid: str | None
    photons: int
    seconds: float
    exit_status: str
    reason: str = ""
    analysis_s: float = math.nan
    write_s: float = math.nan

    @property
    def ok(self) -> bool:
        return self.exit_status == "success"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``qd-bluesky reanalyze --json``)."""
        out = asdict(self)
        for key in ("seconds", "analysis_s", "write_s"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        return out


def parse_since(text: str) -> float:
    """``--since``: an ISO 8601 date or date and time (UTC unless it names a zone).

    Returns
    -------
    float
        POSIX time.

    Raises
    ------
    ValueError
        Not an ISO 8601 date.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r} is not an ISO 8601 date (e.g. 2026-03-01 or 2026-03-01T14:00)"
        ) from None
    if when.tzinfo is None:
        from datetime import UTC

        when = when.replace(tzinfo=UTC)  # as `qd-bluesky runs` shows the times
    return when.timestamp()


def select_raw_runs(
    catalog: Catalog | Any,
    *,
    plans: Sequence[str] | None = None,
    since: float | None = None,
) -> list[str]:
    """The uids of the raw photon runs matching a selection, oldest first.

    Parameters
    ----------
    catalog
        An open :class:`~qd_bluesky.catalog.Catalog` (or its Tiled client).
    plans
        Keep runs of these plans only (``start.plan_name``).
    since
        Keep runs started at or after this POSIX time.

    Returns
    -------
    list of str
        Raw runs with photons for the analyzer (a ``qd`` entry in their start); derived runs
        and runs of other plans are left out.
    """
    from tiled.queries import Comparison, In

    node: Any = getattr(catalog, "client", catalog)
    if plans:
        node = node.search(In("start.plan_name", list(plans)))
    if since is not None:
        node = node.search(Comparison("ge", "start.time", float(since)))
    found = []
    for uid, run in node.items():
        start = run.metadata.get("start") or {}
        if "qd" in start and not start.get("raw_uid"):
            found.append((start.get("time") or 0.0, uid))
    found.sort()
    return [uid for _, uid in found]


# --- in the worker ----------------------------------------------------------------------------

# One open catalog per worker process and location: opening costs seconds.
_worker_catalogs: dict[tuple[str, str | None], Catalog] = {}


class _Collected:
    """A catalog whose ``writer`` keeps the derived documents instead of writing them."""

    def __init__(self, catalog: Catalog) -> None:
        self.client = catalog.client
        self.closed = False
        self.documents: list[tuple[str, dict]] = []
        self.writer = lambda name, doc: self.documents.append((name, doc))


def _worker_catalog(data_dir: str, uri: str | None) -> Catalog:
    from qd_bluesky.catalog import open_catalog

    key = (data_dir, uri)
    if key not in _worker_catalogs:
        _worker_catalogs[key] = open_catalog(data_dir, uri=uri, create=False)
    return _worker_catalogs[key]


def close_worker_catalogs() -> int:
    """Close the catalogs this worker opened (their Tiled app threads keep a process from
    exiting). Returns how many were open."""
    n = len(_worker_catalogs)
    while _worker_catalogs:
        _, catalog = _worker_catalogs.popitem()
        catalog.close()
    return n


def analyse_raw_run(
    data_dir: str, uri: str | None, raw_uid: str, settings: AnalysisSettings
) -> dict[str, Any]:
    """The Dask task: replay one raw run and return its derived documents (nothing written).

    Returns
    -------
    dict
        ``raw_uid``, ``photons``, ``seconds``, ``exit_status``, ``reason``, ``documents``
        (a list of ``(name, doc)``, empty when the run could not be analysed: then
        ``exit_status`` is "error" and ``reason`` says why in one line).
    """
    t0 = time.perf_counter()
    try:
        sink = _Collected(_worker_catalog(data_dir, uri))
        result = replay(sink, raw_uid, settings=settings, compare=False)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - one run's failure is that run's result
        return {
            "raw_uid": raw_uid,
            "photons": 0,
            "seconds": time.perf_counter() - t0,
            "exit_status": "error",
            "reason": " ".join(str(exc).split()) or type(exc).__name__,
            "documents": [],
        }
    return {
        "raw_uid": raw_uid,
        "photons": result.photons,
        "seconds": time.perf_counter() - t0,
        "exit_status": result.exit_status,
        "reason": result.reason,
        "documents": sink.documents,
    }


# --- in the client ----------------------------------------------------------------------------


def use_write_ahead_log(catalog: Catalog) -> None:
    """Switch an embedded catalog's SQLite files to the write-ahead log (readers then never
    wait for the writer). Persistent; a no-op for a server or files already in WAL mode."""
    if not catalog.embedded:
        return
    from qd_bluesky.catalog import DataLayout

    layout = DataLayout(Path(catalog.data_dir))
    for db in (layout.catalog_db, layout.tables):
        if not db.is_file():
            continue
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=CONNECT_TIMEOUT_S)) as con:
                con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:  # still correct without: reads may then wait
            logger.warning("%s: could not switch to the write-ahead log (%s)", db, exc)


def _write(catalog: Catalog, task: dict[str, Any]) -> ReanalysisResult:
    t0 = time.perf_counter()
    documents = task["documents"]
    derived_uid = None
    status, reason = task["exit_status"], task["reason"]
    if documents:
        try:
            for name, doc in documents:
                catalog.writer(name, doc)
            derived_uid = documents[0][1]["uid"]
        except Exception as exc:  # noqa: BLE001 - one run's failure is that run's result
            status = "error"
            reason = "writing the derived run failed: " + (
                " ".join(str(exc).split()) or type(exc).__name__
            )
    write_s = time.perf_counter() - t0
    return ReanalysisResult(
        raw_uid=task["raw_uid"],
        derived_uid=derived_uid,
        photons=task["photons"],
        seconds=task["seconds"] + write_s,
        exit_status=status,
        reason=reason,
        analysis_s=task["seconds"],
        write_s=write_s,
    )


def default_workers(runs: int) -> int:
    """Worker processes of a LocalCluster: one per core this process may use, no more than
    there are runs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, runs))


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    workers: int = 1,
    timeout: float = CONNECT_TIMEOUT_S,
):
    """A ``distributed.Client``: of the scheduler at ``scheduler``, else of a new
    ``LocalCluster`` of ``workers`` single-threaded worker processes (closed on exit).

    Raises
    ------
    ConnectionError
        No scheduler answers at ``scheduler`` within ``timeout`` seconds, or it has no
        workers.
    ValueError
        ``scheduler`` is not an address.
    """
    from distributed import Client, LocalCluster

    if scheduler is None:
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never a clash with another cluster
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster, timeout=timeout) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"no Dask scheduler answers at {scheduler!r} within {timeout:g} s "
            f"({' '.join(str(exc).split()) or type(exc).__name__})"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--scheduler {scheduler!r}: {' '.join(str(exc).split())}") from None
    with client:
        try:
            # Tasks on a scheduler without workers would wait for ever.
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ConnectionError(
                f"the Dask scheduler at {scheduler!r} has no workers (waited {timeout:g} s)"
            ) from None
        yield client


def reanalyze(
    catalog: Catalog,
    uids: Iterable[str],
    *,
    settings: AnalysisSettings | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    on_result: Callable[[ReanalysisResult], object] | None = None,
) -> list[ReanalysisResult]:
    """Re-analyse raw runs on a Dask cluster, one task per run, and write a derived run each.

    Each derived run is what :func:`replay` with ``settings`` writes (marked a replay, the
    settings in its start document's ``qd_analysis``); a run that fails is reported in its
    result and the others go on.

    Parameters
    ----------
    catalog
        The open catalog; the workers open the same one (the same data directory path, or the
        same server URI with ``$TILED_API_KEY``) and this process writes the derived runs.
    uids
        Raw runs (e.g. from :func:`select_raw_runs`).
    settings
        Analysis settings; default :class:`AnalysisSettings` ().
    scheduler
        Address of a running Dask scheduler; default a ``LocalCluster``.
    workers
        Worker processes of the ``LocalCluster`` (default :func:`default_workers`).
    timeout
        Seconds to wait for the scheduler.
    on_result
        Called with each result as its derived run is written (e.g. a progress bar).

    Returns
    -------
    list of ReanalysisResult
        In the order of ``uids``.

    Raises
    ------
    ValueError
        No runs.
    ConnectionError
        No scheduler at ``scheduler``.
    """
    from distributed import as_completed

    uids = list(dict.fromkeys(uids))  # one task per run
    if not uids:
        raise ValueError("no raw runs to re-analyse")
    settings = settings or AnalysisSettings()
    use_write_ahead_log(catalog)
    data_dir = str(catalog.data_dir)
    n = workers or default_workers(len(uids))
    results: dict[str, ReanalysisResult] = {}
    with dask_client(scheduler, workers=n, timeout=timeout) as client:

        def submit(uid: str):
            return client.submit(
                analyse_raw_run, data_dir, catalog.uri, uid, settings, key=f"reanalyze-{uid}"
            )

        # A few tasks per worker in flight, no more: finished derived runs wait in the
        # workers' memory until this process has written the ones before them.
        in_flight = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        waiting = iter(uids)
        running = as_completed([submit(uid) for uid in itertools.islice(waiting, in_flight)])
        for future in running:
            for uid in itertools.islice(waiting, 1):
                running.add(submit(uid))
            try:
                task = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its run only
                uid = str(future.key).removeprefix("reanalyze-")
                task = {
                    "raw_uid": uid,
                    "photons": 0,
                    "seconds": math.nan,
                    "exit_status": "error",
                    "reason": " ".join(str(exc).split()) or type(exc).__name__,
                    "documents": [],
                }
            future.release()
            result = _write(catalog, task)
            results[result.raw_uid] = result
            if on_result is not None:
                on_result(result)
        client.run(close_worker_catalogs)
    return [results[uid] for uid in uids]
