"""Runs in the catalog: listing, lookup by (partial) uid, and the replayed document stream."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from ._errors import CatalogError

if TYPE_CHECKING:
    from tiled.client.container import Container

    from ._open import Catalog

# Bluesky uids are uuid4 strings; accepting only their characters also keeps a prefix from
# carrying SQL LIKE wildcards ("%", "_") into the search.
_UID_PREFIX = re.compile(r"[0-9a-f-]+")
_FULL_UID_LENGTH = 36
#: ``-N``: the N-th newest raw run.
_NEWEST = re.compile(r"-[0-9]+")


def _client(catalog: Catalog | Container) -> Container:
    """The Tiled client of a :class:`Catalog`, or the argument itself if it is a client."""
    if getattr(catalog, "closed", False):
        raise CatalogError("the catalog is closed")
    return cast("Container", getattr(catalog, "client", catalog))


def _iso_utc(timestamp: Any) -> str | None:
    if not isinstance(timestamp, int | float):
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def run_summary(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """One run's listing entry, from its metadata (the start and stop documents).

    Parameters
    ----------
    metadata
        ``run.metadata``: a mapping with ``"start"`` and, once the run has ended, ``"stop"``.

    Returns
    -------
    dict
        ``uid``, ``plan_name``, ``kind`` (``"derived"`` when the start document carries
        ``raw_uid``, else ``"raw"``), ``raw_uid`` (derived runs only), ``time`` (start time,
        ISO 8601 in UTC), ``exit_status`` (from the stop document; None while the run has no
        stop document: still running, or its process died), ``scan_id`` (or None) and
        ``num_events`` (events per stream from the stop document, or None).
    """
    start = metadata.get("start") or {}
    stop = metadata.get("stop") or {}
    raw_uid = start.get("raw_uid")
    entry: dict[str, Any] = {
        "uid": start.get("uid"),
        "plan_name": start.get("plan_name"),
        "kind": "derived" if raw_uid else "raw",
    }
    if raw_uid:
        entry["raw_uid"] = raw_uid
    entry.update(
        time=_iso_utc(start.get("time")),
        exit_status=stop.get("exit_status"),
        scan_id=start.get("scan_id"),
        num_events=dict(stop["num_events"]) if "num_events" in stop else None,
    )
    return entry


def list_runs(catalog: Catalog | Container) -> list[dict[str, Any]]:
    """All runs in the catalog, oldest first.

    Parameters
    ----------
    catalog
        A :class:`Catalog` or a Tiled client of a catalog of Bluesky runs.

    Returns
    -------
    list of dict
        One :func:`run_summary` per run. Nodes that are not Bluesky runs (no start
        document) are skipped.
    """
    client = _client(catalog)
    keyed = []
    for _, node in client.items():
        start = node.metadata.get("start")
        if isinstance(start, Mapping):
            t = start.get("time")
            # Start time, then uid: a stable order even for runs started in the same instant.
            key = (t if isinstance(t, int | float) else float("-inf"), str(start.get("uid")))
            keyed.append((key, run_summary(node.metadata)))
    keyed.sort(key=lambda pair: pair[0])
    return [entry for _, entry in keyed]


def get_run(catalog: Catalog | Container, uid: str) -> Any:
    """The run with this uid, or with the only uid that starts with this prefix.

    Parameters
    ----------
    catalog
        A :class:`Catalog` or a Tiled client of a catalog of Bluesky runs.
    uid
        A full run uid or a unique prefix of one (case-insensitive); or ``-N``, the N-th
        newest raw run (``-1``: the last one recorded).

    Returns
    -------
    bluesky_tiled_plugins.clients.bluesky_run.BlueskyRunV3
        The run's Tiled client: ``run.metadata["start"]``, ``run["primary"].read()``.

    Raises
    ------
    CatalogError
        No run, or several runs, match; or ``uid`` is not (a prefix of) a uid.
    """
    from tiled.queries import Like

    client = _client(catalog)
    key = str(uid).strip().lower()
    if _NEWEST.fullmatch(key):
        raw = [run for run in list_runs(client) if run["kind"] == "raw"]
        n = int(key[1:])
        if not 1 <= n <= len(raw):
            raise CatalogError(f"{key}: the catalog holds {len(raw)} raw runs")
        return client[raw[-n]["uid"]]
    if not _UID_PREFIX.fullmatch(key):
        raise CatalogError(f"{uid!r} is not a run uid (hex digits and dashes)")
    if len(key) == _FULL_UID_LENGTH and key in client:
        return client[key]
    matches = list(client.search(Like("start.uid", f"{key}%")).keys().head(3))
    if not matches:
        raise CatalogError(f"no run with uid {key!r} in the catalog")
    if len(matches) > 1:
        more = ", ..." if len(matches) > 2 else ""
        raise CatalogError(
            f"uid prefix {key!r} is ambiguous ({', '.join(matches[:2])}{more}); give more digits"
        )
    return client[matches[0]]


def iter_documents(catalog: Catalog | Container, uid: str | Any) -> Iterator[tuple[str, dict]]:
    """The Bluesky documents of a stored run, as ``(name, doc)`` pairs.

    This is the stream Tiled rebuilds from what it stored, not the one the RunEngine emitted:
    the start document, the descriptors, the events one by one, then for every external key
    ONE ``stream_resource`` and ONE ``stream_datum`` covering all its rows (synthetic uids),
    after all events, then the stop document. A consumer that must give the same answer live
    and on replay cannot depend on document order or on how rows were split into datums.

    Parameters
    ----------
    catalog
        A :class:`Catalog` or a Tiled client of a catalog of Bluesky runs.
    uid
        A run uid or unique prefix (see :func:`get_run`), or a run client.

    Yields
    ------
    (str, dict)
        Document name and document.

    Raises
    ------
    CatalogError
        Unknown run, or a Tiled server that cannot export Bluesky documents.
    """
    import httpx

    run = get_run(catalog, uid) if isinstance(uid, str) else uid
    try:
        yield from run.documents()
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 406:
            raise CatalogError(
                "the Tiled server cannot export Bluesky documents: register "
                "bluesky_tiled_plugins.exporters:json_seq_exporter for BlueskyRun "
                "as application/json-seq in its media_types"
            ) from None
        raise
