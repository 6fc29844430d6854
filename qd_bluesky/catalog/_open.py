"""Open the run catalog: an embedded Tiled catalog on disk, or a Tiled server.

Both give the same objects afterwards: a Tiled client whose root is a ``CatalogOfBlueskyRuns``
and a ``TiledWriter`` that the RunEngine subscribes to.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CatalogError
from ._paths import DataLayout, resolve_data_dir
from ._server import ROOT_SPEC, check_server

if TYPE_CHECKING:
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

#: The spec of the catalog root: SQL-backed Bluesky runs (``BlueskyRunV3`` clients).
CATALOG_SPECS = [ROOT_SPEC]

# How long to wait for a Tiled server before saying it is unreachable. Tiled's own client
# retries a refused connection for up to 45 s; a first probe answers in one line at once.
_PROBE_TIMEOUT_S = 5.0


class Catalog:
    """An open run catalog, embedded or remote.

    Use :func:`open_catalog` to make one. It is a context manager; :meth:`close` shuts down
    the in-process Tiled app of an embedded catalog (or the connection to a server).

    Attributes
    ----------
    client : tiled.client.container.Container
        The Tiled client of the catalog root (a ``CatalogOfBlueskyRuns``):
        ``client[uid]["primary"].read()``, ``client[uid]["photons"]["<key>"][a:b]``.
    writer : bluesky_tiled_plugins.TiledWriter
        A bluesky callback that writes every run it sees into this catalog:
        ``RE.subscribe(catalog.writer)``. Events and stream datums are written in batches,
        and whatever is pending at the stop document.
    derived_writer : bluesky_tiled_plugins.TiledWriter
        The writer of derived runs (``qd_bluesky.callbacks``): their documents are composed in
        the current schema, so it skips TiledWriter's normalizer, whose deep copy and schema
        validation of every event were half the time of a replay.
    data_dir : pathlib.Path
        The data directory.
    photon_dir : pathlib.Path
        Where photon HDF5 files go; the embedded catalog may read files under it.
    reports_dir : pathlib.Path
        Where figures and summaries go.
    uri : str or None
        The Tiled server URI, or None for the embedded catalog.
    created : bool
        True when this call created the embedded catalog database.
    open_seconds : float
        Wall time :func:`open_catalog` took, including Tiled's imports on a first call.
    """

    def __init__(
        self,
        client: Container,
        *,
        layout: DataLayout,
        uri: str | None,
        created: bool = False,
        open_seconds: float = float("nan"),
    ) -> None:
        from bluesky_tiled_plugins import TiledWriter

        self.client = client
        # Default batching: a batch of 1 writes an event page row by row (20x slower).
        self.writer: TiledWriter = TiledWriter(
            client, patches={"stream_datum": _without_row_seq_nums}
        )
        self.derived_writer: TiledWriter = _derived_writer(client, embedded=uri is None)
        self.data_dir = layout.root
        self.photon_dir = layout.photons
        self.reports_dir = layout.reports
        self.uri = uri
        self.created = created
        self.open_seconds = open_seconds
        self._closed = False

    @property
    def embedded(self) -> bool:
        """True for the embedded (in-process, on-disk) catalog."""
        return self.uri is None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut down the in-process Tiled app (or close the server connection). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.client.context.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"server {self.uri}" if self.uri else f"embedded {self.data_dir}"
        state = ", closed" if self._closed else ""
        return f"<Catalog {where}{state}>"


def _derived_writer(client: Container, *, embedded: bool) -> TiledWriter:
    """A TiledWriter for derived runs: no normalizer; embedded, no stream-closing requests.

    A derived run is written in ~70 requests, 27 of them closing the stream of every node at
    the stop. The embedded catalog has neither a streaming cache nor webhooks, so there the
    server does nothing with them (Tiled 0.2.20's ``close_stream``) and they are skipped. A
    server (``--catalog URI``) may stream to subscribers: its writer closes them.
    """
    from bluesky_tiled_plugins import TiledWriter
    from event_model import RunRouter

    writer = TiledWriter(client, normalizer=None)
    factory = getattr(writer, "_factory", None)
    if not embedded or factory is None or not hasattr(writer, "_run_router"):
        return writer  # (another bluesky-tiled-plugins: keep its behaviour)

    def without_stream_close(name: str, doc: dict) -> tuple[list, list]:
        callbacks, subfactories = factory(name, doc)
        for callback in callbacks:
            if hasattr(callback, "_close_stream_tree"):
                callback._close_stream_tree = lambda: None
        return callbacks, subfactories

    writer._run_router = RunRouter([without_stream_close])
    return writer


def _without_row_seq_nums(doc: dict) -> dict:
    """A stream datum as TiledWriter needs it: without its per-row sequence numbers.

    The RunEngine numbers every row of a collected stream (here: every photon), and
    bluesky-tiled-plugins' consolidator keeps a ``{seq_num: index}`` entry per row for the
    whole run (2.0.12 reads it nowhere else). For photons that was ~360 bytes per photon, GBs
    per hour. The indices, which say where the rows are, stay. ``doc`` is TiledWriter's own
    copy (its normalizer deep-copies before patching).
    """
    doc["seq_nums"] = {"start": 0, "stop": 0}
    return doc


def open_catalog(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    uri: str | None = None,
    api_key: str | None = None,
    create: bool = True,
) -> Catalog:
    """Open the run catalog.

    Parameters
    ----------
    data_dir
        The data directory (``--data-dir``); default ``$QD_BLUESKY_DATA``, else the per-user
        data directory. It holds the embedded catalog and, in both modes, the photon files.
    uri
        A Tiled server (``--catalog``), e.g. ``http://localhost:8000/api``. When None, use the
        embedded catalog in ``data_dir``, created on first use.
    api_key
        API key for the server; default ``$TILED_API_KEY``. Ignored for the embedded catalog.
    create
        Create the data directory and the embedded catalog if they do not exist. With
        ``create=False`` a missing catalog is an error.

    Returns
    -------
    Catalog
        Close it when done (or use it in a ``with`` block).

    Raises
    ------
    CatalogError
        The catalog is missing (``create=False``), not a Tiled catalog, made by another Tiled
        version, or the server is unreachable.
    """
    t0 = time.perf_counter()
    layout = DataLayout(resolve_data_dir(data_dir))
    if uri is None:
        client, created = _open_embedded(layout, create=create)
    else:
        if create:
            layout.create()
        client, created = _open_remote(uri, api_key=api_key), False
    return Catalog(
        client,
        layout=layout,
        uri=uri,
        created=created,
        open_seconds=time.perf_counter() - t0,
    )


def catalog_exists(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """True if the data directory holds an initialized embedded catalog."""
    return not _needs_init(DataLayout(resolve_data_dir(data_dir)).catalog_db)


# --- embedded ---------------------------------------------------------------------------------


def _needs_init(db: Path) -> bool:
    """True if ``db`` is missing or was never stamped by Tiled's catalog initialisation.

    Checked with the standard library so that an existing catalog opens without running
    Tiled's ``catalog init`` subprocess (alembic), which costs seconds.
    """
    if not db.is_file() or db.stat().st_size == 0:
        return True
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
            return con.execute("SELECT version_num FROM alembic_version").fetchone() is None
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return True  # an interrupted first initialisation: run it again
        raise CatalogError(f"{db}: cannot read the catalog database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{db}: not a catalog database ({exc})") from None


@functools.cache
def _serialization_registry() -> Any:
    """Tiled's default serializers plus the Bluesky document stream of a run.

    Without the ``json_seq_exporter`` for "BlueskyRun", ``run.documents()`` answers 406.
    """
    import copy

    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    # A deep copy: registering on the shared default would change every app in the process.
    registry = copy.deepcopy(default_serialization_registry)
    registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    return registry


def _open_embedded(layout: DataLayout, *, create: bool) -> tuple[Container, bool]:
    db = layout.catalog_db
    needs_init = _needs_init(db)
    if needs_init and not create:
        raise CatalogError(f"no catalog in {layout.root} (it is created by the first run)")
    layout.create()

    from tiled.alembic_utils import (
        DatabaseUpgradeNeeded,
        UninitializedDatabase,
        UnrecognizedDatabase,
    )
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.catalog.adapter import DatabaseInitializationError
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    # The in-process server announces "Tiled version ..." on stderr at INFO at every start.
    app_logger = logging.getLogger("tiled.server.app")
    if app_logger.level == logging.INFO:
        app_logger.setLevel(logging.WARNING)

    if needs_init:
        logger.info("creating the Tiled catalog %s", db)
    try:
        adapter = catalog_from_uri(
            f"sqlite:///{db}",
            specs=CATALOG_SPECS,
            writable_storage=[str(layout.arrays), f"sqlite:///{layout.tables}"],
            readable_storage=[str(layout.photons)],
            init_if_not_exists=needs_init,
        )
    except DatabaseInitializationError as exc:
        last = (str(exc).strip().splitlines() or ["unknown error"])[-1]
        raise CatalogError(f"{db}: cannot initialize the catalog: {last}") from None
    app = build_app(adapter, serialization_registry=_serialization_registry())
    try:
        with warnings.catch_warnings():
            # Starlette's TestClient (Tiled's in-process transport) nags about httpx.
            warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*")
            context = Context.from_app(app)
    except UninitializedDatabase:
        raise CatalogError(f"{db}: not an initialized Tiled catalog") from None
    except DatabaseUpgradeNeeded:
        raise CatalogError(
            f"{db} was made by an older Tiled; back it up, then run "
            f"`tiled catalog upgrade-database sqlite:///{db}`"
        ) from None
    except UnrecognizedDatabase:
        raise CatalogError(
            f"{db} was made by a newer Tiled, or by another program; "
            "open it with the Tiled version that made it"
        ) from None
    return from_context(context), needs_init


# --- remote -----------------------------------------------------------------------------------


def _open_remote(uri: str, *, api_key: str | None) -> Container:
    import httpx
    from tiled.client import from_uri

    try:
        # One quick request first: Tiled's client would retry a dead server for 45 s.
        httpx.get(uri, timeout=_PROBE_TIMEOUT_S, follow_redirects=True)
    except httpx.InvalidURL as exc:
        raise CatalogError(f"invalid catalog URI {uri!r}: {exc}") from None
    except (httpx.TransportError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CatalogError(f"cannot reach the Tiled server at {uri}: {reason}") from None
    try:
        client = from_uri(uri, api_key=api_key)
    except RuntimeError as exc:
        # Tiled's client says so when the server wants a key and none (or no usable one) came.
        if "API key" not in str(exc):
            raise
        raise CatalogError(
            f"the Tiled server at {uri} requires an API key (api_key=..., or $TILED_API_KEY)"
        ) from None
    except httpx.HTTPStatusError as exc:
        reason = " ".join(str(exc).split())
        raise CatalogError(f"the Tiled server at {uri} refused: {reason}") from None
    except httpx.TransportError as exc:
        raise CatalogError(f"cannot reach the Tiled server at {uri}: {exc}") from None
    check_server(client, uri)
    return client
