"""Runs written through ``Catalog.writer`` and read back through Tiled, values exact.

Every comparison here is exact: the values pass through TiledWriter, SQLite/Zarr/HDF5 and
Tiled unchanged (no arithmetic), so any difference at all is a bug.
"""

from __future__ import annotations

import itertools

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import h5py
import numpy as np
import ophyd
import pytest
from event_model import StreamRange, compose_stream_resource
from ophyd.status import StatusBase

from qd_bluesky.analysis import PhotonHdf5Writer
from qd_bluesky.catalog import iter_documents


def test_layout_of_a_new_data_directory(catalog):
    root = catalog.data_dir
    assert catalog.created
    assert (root / "catalog.db").is_file()
    assert catalog.photon_dir == root / "photons" and catalog.photon_dir.is_dir()
    assert catalog.reports_dir == root / "reports" and catalog.reports_dir.is_dir()
    assert (root / "arrays").is_dir()
    assert catalog.embedded and catalog.uri is None


def test_count_of_soft_signals_round_trips(catalog, RE):
    rate = ophyd.Signal(name="rate", value=0.0)
    step = ophyd.Signal(name="step", value=0)
    label = ophyd.Signal(name="label", value="")
    # 32 elements: above TiledWriter's 16-element limit for table cells, so this one goes
    # to the Zarr storage in arrays/ rather than to tables.sqlite.
    spectrum = ophyd.Signal(name="spectrum", value=np.zeros(32))
    rng = np.random.default_rng(1234)
    rates = rng.normal(35e3, 2e3, size=4)
    spectra = rng.random((4, 32))
    shots = itertools.count()

    def per_shot(detectors):
        i = next(shots)
        yield from bps.mv(rate, rates[i], step, i, label, f"shot-{i}", spectrum, spectra[i])
        yield from bps.trigger_and_read(detectors)

    (uid,) = RE(bp.count([rate, step, label, spectrum], num=4, per_shot=per_shot))

    run = catalog.client[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    data = run["primary"].read()
    np.testing.assert_array_equal(data["rate"].values, rates)
    np.testing.assert_array_equal(data["step"].values, np.arange(4))
    assert list(data["label"].values) == [f"shot-{i}" for i in range(4)]
    np.testing.assert_array_equal(data["spectrum"].values, spectra)
    assert any((catalog.data_dir / "arrays").rglob("*")), "the 32-element array went to Zarr"


def test_scan_over_a_soft_positioner_round_trips(catalog, RE):
    motor = ophyd.SoftPositioner(name="motor", init_pos=0.0)
    det = ophyd.Signal(name="det", value=0.0)
    motor.subscribe(lambda value, **_: det.put(3.0 * value**2 - 1.0))

    (uid,) = RE(bp.scan([det], motor, -1.0, 1.0, 5))

    data = catalog.client[uid]["primary"].read()
    positions = np.linspace(-1.0, 1.0, 5)
    np.testing.assert_array_equal(data["motor"].values, positions)
    np.testing.assert_array_equal(data["det"].values, 3.0 * positions**2 - 1.0)
    assert catalog.client[uid].metadata["start"]["plan_name"] == "scan"


# --- photons in their own stream, from a Photon-HDF5 file -------------------------------------

PHOTON_CHUNK_ROWS = 512  # HDF5 chunk of the photon columns, announced as chunk_shape


class TinyPhotonFlyer:
    """A stand-in for the TCSPC card: appends photons to a SWMR Photon-HDF5 file at each
    collect and describes them as one row per photon (StreamResource/StreamDatum)."""

    def __init__(self, name: str, path, chunks) -> None:
        self.name = name
        self.parent = None
        self.path = path
        self._chunks = list(chunks)
        self._writer: PhotonHdf5Writer | None = None
        self._bundles: dict = {}
        self._rows_announced = 0

    def _done(self) -> StatusBase:
        status = StatusBase()
        status.set_finished()
        return status

    def kickoff(self) -> StatusBase:
        self._writer = PhotonHdf5Writer(
            self.path,
            macrotime_unit_s=1 / 40e6,
            microtime_unit_s=16e-12,
            microtime_bins=1563,
            rep_rate_hz=40e6,
            channels=2,
            chunk_rows=PHOTON_CHUNK_ROWS,
        )
        return self._done()

    def complete(self) -> StatusBase:
        self._writer.close()
        return self._done()

    def describe_collect(self):
        dtypes = {"timestamps": "<i8", "nanotimes": "<u2", "detectors": "|u1"}
        return {
            f"{self.name}_{col}": {
                "source": f"file:{self.path.name}",
                "dtype": "integer",
                "dtype_numpy": dtype,
                "shape": [],
                "external": "STREAM:",
            }
            for col, dtype in dtypes.items()
        }

    def get_index(self) -> int:
        return self._rows_announced

    def collect_asset_docs(self, index=None):
        if self._chunks:
            self._writer.append(*self._chunks.pop(0))
        if not self._bundles:
            for col, dataset in self._writer.dataset_paths.items():
                bundle = compose_stream_resource(
                    mimetype="application/x-hdf5",
                    uri=self.path.as_uri(),
                    data_key=f"{self.name}_{col}",
                    parameters={
                        "dataset": dataset,
                        "chunk_shape": [PHOTON_CHUNK_ROWS],
                        "swmr": True,
                    },
                )
                self._bundles[col] = bundle
                yield "stream_resource", bundle.stream_resource_doc
        start, stop = self._rows_announced, self._writer.rows_written
        if stop > start:
            rows = StreamRange(start=start, stop=stop)
            for bundle in self._bundles.values():
                yield "stream_datum", bundle.compose_stream_datum(rows)
            self._rows_announced = stop


def _photon_chunks(rng, sizes):
    """Sorted macrotimes across chunks, random nanotimes and detectors."""
    last = 0
    for n in sizes:
        macro = last + np.cumsum(rng.integers(1, 2000, size=n))
        last = int(macro[-1])
        yield macro, rng.integers(0, 1563, size=n), rng.integers(0, 2, size=n)


@pytest.fixture(scope="module")
def photon_run(catalog, RE):
    """A run with a `primary` stream (bias, photon index) and a `photons` stream."""
    rng = np.random.default_rng(20240607)
    sizes = [700, 1300, 1000]  # chunk boundaries fall inside HDF5 chunks on purpose
    chunks = list(_photon_chunks(rng, sizes))
    path = catalog.photon_dir / "photons-test.h5"
    flyer = TinyPhotonFlyer("tcspc", path, chunks)
    bias = ophyd.Signal(name="bias", value=0.0)
    photon_index = ophyd.Signal(name="photon_index", value=0)

    @bpp.run_decorator(md={"plan_name": "photon_test"})
    def plan():
        yield from bps.declare_stream(flyer, name="photons", collect=True)
        yield from bps.kickoff(flyer, wait=True)
        for volts in (0.0, -1.4, -2.0):
            yield from bps.mv(bias, volts)
            yield from bps.collect(flyer)
            yield from bps.mv(photon_index, flyer.get_index())
            yield from bps.trigger_and_read([bias, photon_index])
        yield from bps.complete(flyer, wait=True)

    (uid,) = RE(plan())
    columns = {
        "timestamps": np.concatenate([c[0] for c in chunks]),
        "nanotimes": np.concatenate([c[1] for c in chunks]).astype(np.uint16),
        "detectors": np.concatenate([c[2] for c in chunks]).astype(np.uint8),
    }
    return uid, path, columns


def test_photon_stream_reads_back_through_tiled(catalog, photon_run):
    uid, path, columns = photon_run
    run = catalog.client[uid]
    n = len(columns["timestamps"])
    assert run.metadata["stop"]["num_events"]["photons"] == n
    photons = run["photons"]
    for col, truth in columns.items():
        node = photons[f"tcspc_{col}"]
        assert node.shape == (n,)
        assert node.dtype == truth.dtype
        # Slices inside one datum, across datum boundaries (700, 2000) and HDF5 chunks (512).
        for a, b in [(0, n), (0, 10), (650, 2100), (2999, 3000), (1024, 1536)]:
            np.testing.assert_array_equal(node[a:b], truth[a:b])
    # The file itself holds what the catalog serves.
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["photon_data/timestamps"][:], columns["timestamps"])
    # The primary stream maps photons to bias: the photon index after each collect.
    primary = run["primary"].read()
    np.testing.assert_array_equal(primary["bias"].values, [0.0, -1.4, -2.0])
    np.testing.assert_array_equal(primary["photon_index"].values, [700, 2000, 3000])


def test_replayed_documents_cover_every_photon(catalog, photon_run):
    uid, path, columns = photon_run
    docs = list(iter_documents(catalog, uid))
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert docs[0][1]["uid"] == uid
    assert names.count("event") == 3
    # Tiled rebuilds the stream documents after all the events.
    last_event = max(i for i, name in enumerate(names) if name == "event")
    first_stream = min(i for i, name in enumerate(names) if name.startswith("stream_"))
    assert first_stream > last_event

    descriptors = {d["name"]: d for name, d in docs if name == "descriptor"}
    resources = {d["uid"]: d for name, d in docs if name == "stream_resource"}
    datums = [d for name, d in docs if name == "stream_datum"]
    # One stream_resource and one stream_datum per photon column, for all rows.
    assert sorted(r["data_key"] for r in resources.values()) == sorted(
        f"tcspc_{c}" for c in columns
    )
    assert len(datums) == len(columns)
    n = len(columns["timestamps"])
    for datum in datums:
        resource = resources[datum["stream_resource"]]
        assert datum["descriptor"] == descriptors["photons"]["uid"]
        assert datum["indices"] == {"start": 0, "stop": n}
        assert resource["mimetype"] == "application/x-hdf5"
        assert resource["uri"] == path.as_uri()
        # Follow the replayed documents into the file: they name exactly the photons.
        col = resource["data_key"].removeprefix("tcspc_")
        with h5py.File(path, "r") as f:
            rows = f[resource["parameters"]["dataset"]][
                datum["indices"]["start"] : datum["indices"]["stop"]
            ]
        np.testing.assert_array_equal(rows, columns[col])
    # The events replay the primary stream's values.
    events = [d for name, d in docs if name == "event"]
    assert [e["data"]["photon_index"] for e in events] == [700, 2000, 3000]
