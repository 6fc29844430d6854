"""A real embedded Tiled catalog on disk, shared by the catalog tests (init costs seconds)."""

from __future__ import annotations

import pytest
from bluesky import RunEngine

from qd_bluesky.catalog import open_catalog


@pytest.fixture(scope="session")
def catalog(tmp_path_factory):
    with open_catalog(tmp_path_factory.mktemp("qd-data")) as cat:
        yield cat


@pytest.fixture(scope="session")
def RE(catalog):  # noqa: N802 - the conventional name of a RunEngine
    engine = RunEngine({})
    engine.subscribe(catalog.writer)
    return engine
