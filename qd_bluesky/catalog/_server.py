"""The Tiled server of a data directory: its configuration, and the checks a client makes.

``qd-bluesky serve-catalog`` serves the catalog of a data directory to several processes or
machines with ``tiled serve config`` and the configuration :func:`server_config` writes: the
catalog and the event tables on PostgreSQL (or the data directory's own SQLite files), Zarr
arrays under ``arrays/``, the photon files under ``photons/`` as readable storage, the Bluesky
specs, and the ``application/json-seq`` exporter that ``run.documents()`` (replay, report)
needs. :func:`check_server` tells a client, in one line, which of those a server lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ._errors import CatalogError
from ._paths import DataLayout

if TYPE_CHECKING:
    from tiled.client.container import Container

#: The spec of the catalog root, and the media type of a run's document stream.
ROOT_SPEC = {"name": "CatalogOfBlueskyRuns", "version": "3.0"}
RUN_SPEC = "BlueskyRun"
DOCUMENTS_MEDIA_TYPE = "application/json-seq"
DOCUMENTS_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"
#: Where the configuration goes inside the data directory.
CONFIG_FILE = "tiled/config.yml"


def database_uris(layout: DataLayout, database: str = "sqlite") -> tuple[str, str]:
    """The catalog database and the table storage of a server.

    Parameters
    ----------
    layout
        The data directory.
    database
        ``"sqlite"``: the data directory's own ``catalog.db`` and ``tables.sqlite`` (the files
        of the embedded catalog, so the same runs are served); or a
        ``postgresql://user[:password]@host[:port]/dbname`` URI, which holds both the catalog
        and the event tables.

    Raises
    ------
    ValueError
        Neither ``sqlite`` nor a PostgreSQL URI with a database name.
    """
    if database == "sqlite":
        return f"sqlite:///{layout.catalog_db}", f"sqlite:///{layout.tables}"
    parsed = urlparse(database)
    if parsed.scheme not in ("postgresql", "postgres") or not parsed.path.strip("/"):
        raise ValueError(
            "--database takes 'sqlite' or postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME, "
            f"not {database!r}"
        )
    uri = parsed._replace(scheme="postgresql").geturl()
    return uri, uri


def server_config(layout: DataLayout, database: str = "sqlite") -> dict[str, Any]:
    """The ``tiled serve config`` configuration of a data directory's catalog.

    The API key is not part of it: ``tiled serve config --api-key`` (or
    ``$TILED_SINGLE_USER_API_KEY``) gives it, so the file can be shown and kept.
    """
    catalog_uri, tables_uri = database_uris(layout, database)
    return {
        "authentication": {"allow_anonymous_access": False},
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": catalog_uri,
                    "specs": [ROOT_SPEC],
                    "writable_storage": [str(layout.arrays), tables_uri],
                    "readable_storage": [str(layout.photons)],
                    "init_if_not_exists": True,
                },
            }
        ],
        "media_types": {RUN_SPEC: {DOCUMENTS_MEDIA_TYPE: DOCUMENTS_EXPORTER}},
    }


def server_config_yaml(layout: DataLayout, database: str = "sqlite") -> str:
    """:func:`server_config` as the YAML file a facility deploys."""
    import yaml

    header = (
        "# Tiled server for the qd-bluesky data directory "
        f"{layout.root}\n"
        "# (qd-bluesky serve-catalog --print-config). Serve it with\n"
        "#   tiled serve config THIS_FILE --host HOST --port PORT --api-key KEY\n"
        "# Clients: qd-bluesky run|runs|replay|report --catalog http://HOST:PORT/api "
        "with $TILED_API_KEY=KEY.\n"
        "# readable_storage must hold the photon directory (the runs reference their HDF5\n"
        "# files there) and media_types the json-seq exporter (run.documents(): replay).\n"
    )
    return header + yaml.safe_dump(server_config(layout, database), sort_keys=False)


@contextlib.contextmanager
def _no_retries() -> Iterator[None]:
    """Tiled's client retries a server error for up to 45 s; a probe wants the first answer."""
    import stamina

    was_active = stamina.is_active()
    stamina.set_active(False)
    try:
        yield
    finally:
        stamina.set_active(was_active)


def check_server(client: Container, uri: str) -> None:
    """One line naming what a Tiled server lacks for qd-bluesky, before anything uses it.

    Checks that the root is a catalog of Bluesky runs, that the server exports a run's
    documents (``application/json-seq``), and, on the newest run that recorded photons, that
    the server may read the photon files.

    Raises
    ------
    CatalogError
        Naming the missing piece and how to get a server that has it.
    """
    import httpx

    fix = "(qd-bluesky serve-catalog --print-config shows a complete configuration)"
    specs = [getattr(spec, "name", spec) for spec in (client.specs or [])]
    if ROOT_SPEC["name"] not in specs:
        raise CatalogError(
            f"the Tiled server at {uri} does not serve a catalog of Bluesky runs (root specs "
            f"{specs or 'none'}; add specs: [{ROOT_SPEC['name']}] to its catalog) {fix}"
        )
    formats = client.context.server_info.formats or {}
    if DOCUMENTS_MEDIA_TYPE not in formats.get(RUN_SPEC, []):
        raise CatalogError(
            f"the Tiled server at {uri} cannot export Bluesky documents: its media_types lack "
            f"{RUN_SPEC}: {DOCUMENTS_MEDIA_TYPE} ({DOCUMENTS_EXPORTER}) {fix}"
        )
    # The newest run with photons: a missing readable_storage shows as a server error there.
    from tiled.queries import Key

    try:
        newest = client.search(Key("start.qd.photon_stream") == "photons").values().last()
    except IndexError:  # no run with photons yet
        return
    stream = newest.get("photons")
    if stream is None:
        return
    try:
        with _no_retries():
            for key in stream:
                stream[key][:1]
                break
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code < 500:
            raise
        raise CatalogError(
            f"the Tiled server at {uri} cannot read the photon files of run "
            f"{newest.metadata['start']['uid'][:8]}: is their directory in its "
            f"readable_storage? {fix}"
        ) from None
