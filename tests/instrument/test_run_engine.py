"""A tiny plan through bluesky's RunEngine: valid documents, every photon, Tiled accepts them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import bluesky.plan_stubs as bps
import event_model
import numpy as np
import pytest
from bluesky import RunEngine

from qd_bluesky.analysis import read_photon_hdf5

BIASES = (-0.5, -1.0)


def _plan(pot, tcspc):
    yield from bps.open_run(md={"plan_name": "tiny_bias_steps"})
    yield from bps.declare_stream(tcspc, name="photons", collect=True)
    yield from bps.kickoff(tcspc, wait=True)
    for bias in BIASES:
        yield from bps.mv(pot, bias)
        # primary: the settled bias and the photon index when it was reached
        yield from bps.trigger_and_read([pot, tcspc.rates])
        yield from bps.sleep(0.3)
        yield from bps.collect(tcspc, name="photons")
    yield from bps.complete(tcspc, wait=True)
    yield from bps.collect(tcspc, name="photons")
    yield from bps.mv(pot, 0.0)
    yield from bps.close_run()


@pytest.fixture(scope="module")
def run_documents(instrument):
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(_plan(instrument.pot, instrument.tcspc))
    return docs, instrument.tcspc.get_index()


def test_documents_validate_and_account_for_every_photon(run_documents):
    docs, n = run_documents
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert docs[-1][1]["exit_status"] == "success"
    for name, doc in docs:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)

    descriptors = {d["uid"]: d for name, d in docs if name == "descriptor"}
    by_stream = {d["name"]: d for d in descriptors.values()}
    assert set(by_stream) == {"primary", "photons"}
    photon_keys = by_stream["photons"]["data_keys"]
    assert {k: v["dtype_numpy"] for k, v in photon_keys.items()} == {
        "tcspc_timestamps": "<i8",
        "tcspc_nanotimes": "<u2",
        "tcspc_detectors": "|u1",
    }
    assert all(v["external"] == "STREAM:" and v["shape"] == [] for v in photon_keys.values())
    # Configuration signals land in the descriptors.
    config = by_stream["primary"]["configuration"]
    assert config["pot"]["data"]["pot_bias_low_limit"] == pytest.approx(-2.0)
    assert by_stream["photons"]["configuration"]["tcspc"]["data"]["tcspc_mode"] == "T3"
    # The rate meters' gate (s) is their configuration.
    assert config["tcspc_rates"]["data"] == {"tcspc_rate_period": pytest.approx(0.5)}

    resources = {d["uid"]: d for name, d in docs if name == "stream_resource"}
    datums = [d for name, d in docs if name == "stream_datum"]
    assert len(resources) == 3
    assert all(d["descriptor"] == by_stream["photons"]["uid"] for d in datums)
    for uid in resources:
        mine = [d for d in datums if d["stream_resource"] == uid]
        assert sum(d["indices"]["stop"] - d["indices"]["start"] for d in mine) == n
        # seq_nums number the photons of the stream contiguously from 1
        assert mine[0]["seq_nums"]["start"] == 1 and mine[-1]["seq_nums"]["stop"] == n + 1

    # The primary stream maps bias to photon index.
    primary = [
        d for name, d in docs if name == "event" and d["descriptor"] == by_stream["primary"]["uid"]
    ]
    biases = np.array([e["data"]["pot"] for e in primary])
    index = np.array([e["data"]["tcspc_num_photons"] for e in primary])
    np.testing.assert_allclose(biases, BIASES)
    assert np.all(np.diff(index) > 0) and index[-1] < n

    path = Path(urlparse(next(iter(resources.values()))["uri"]).path)
    assert len(read_photon_hdf5(path)) == n


def test_reading_the_flyer_in_a_step_stream_is_refused_clearly(instrument):
    with pytest.raises(TypeError, match=r"tcspc is a flyer.*read tcspc.rates"):
        instrument.tcspc.read()


def test_tiled_writer_accepts_the_run(run_documents, tmp_path):
    """The documents go into an embedded Tiled catalog and the photons read back from it."""
    from bluesky_tiled_plugins import TiledWriter
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    docs, n = run_documents
    resource = next(d for name, d in docs if name == "stream_resource")
    photon_dir = Path(urlparse(resource["uri"]).path).parent
    catalog = from_uri(
        f"sqlite:///{tmp_path / 'catalog.db'}",
        writable_storage=[str(tmp_path / "data"), f"sqlite:///{tmp_path / 'tables.sqlite'}"],
        readable_storage=[str(photon_dir)],
        init_if_not_exists=True,
    )
    client = from_context(Context.from_app(build_app(catalog)))
    writer = TiledWriter(client)
    for name, doc in docs:
        writer(name, doc)
    run = client[docs[0][1]["uid"]]
    timestamps = run["photons"]["tcspc_timestamps"].read()
    assert len(timestamps) == n
    table = read_photon_hdf5(Path(urlparse(resource["uri"]).path))
    np.testing.assert_array_equal(np.asarray(timestamps), table.macrotime)
    primary = run["primary"].read()
    np.testing.assert_allclose(np.asarray(primary["pot"]), BIASES)
