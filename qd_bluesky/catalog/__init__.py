"""The run catalog: Tiled, embedded on disk by default or a server, written by TiledWriter.

Example::

    from qd_bluesky.catalog import list_runs, open_catalog

    with open_catalog() as catalog:      # $QD_BLUESKY_DATA, else the per-user data directory
        RE.subscribe(catalog.writer)     # every run goes into the catalog
        (uid,) = RE(plan())
        catalog.client[uid]["primary"].read()
        list_runs(catalog)
"""

from ._errors import CatalogError
from ._open import CATALOG_SPECS, Catalog, catalog_exists, open_catalog
from ._paths import DATA_DIR_ENV, DataLayout, default_data_dir, resolve_data_dir
from ._runs import get_run, iter_documents, list_runs, run_summary

__all__ = [
    "CATALOG_SPECS",
    "DATA_DIR_ENV",
    "Catalog",
    "CatalogError",
    "DataLayout",
    "catalog_exists",
    "default_data_dir",
    "get_run",
    "iter_documents",
    "list_runs",
    "open_catalog",
    "resolve_data_dir",
    "run_summary",
]
