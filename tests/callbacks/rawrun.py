"""Raw qd runs composed by hand: a real SWMR Photon-HDF5 file written in chunks, and the
documents a qd plan emits for it (the run contract, docs/run_contract), in live or replay order.

Photons come from the simulator (``qd_bluesky.sim``: the qd1 dot, bias steps), so the decays,
the FLID and g2 look like the instrument's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from event_model import ComposeStreamResource, StreamRange, compose_run

from qd_bluesky.analysis import PhotonHdf5Writer
from qd_bluesky.sim import SingleDot

DEVICE = "tcspc"
KEYS = {f: f"{DEVICE}_{f}" for f in ("timestamps", "nanotimes", "detectors")}
DATASETS = {
    "timestamps": "/photon_data/timestamps",
    "nanotimes": "/photon_data/nanotimes",
    "detectors": "/photon_data/detectors",
}
INDEX_KEY = f"{DEVICE}_num_photons"
BIAS_KEY = "pot"


@dataclass
class Photons:
    """Photons of a simulated run: columns, the first row of each bias step, bias markers."""

    macrotime: np.ndarray
    microtime: np.ndarray
    channel: np.ndarray
    step_rows: list[int]
    biases: list[float]
    #: /user/bias markers as the IOC writes them: (photon_index, bias_v)
    log: list[tuple[int, float]] = field(default_factory=list)
    microtime_unit_s: float = 25e-12
    microtime_bins: int = 16000
    rep_rate_hz: float = 2.5e6

    def __len__(self) -> int:
        return len(self.macrotime)


def simulate_steps(biases, dwell_s: float, seed: int, preset: str = "qd1") -> Photons:
    """The dot held at each bias for ``dwell_s`` (a bias_steps run without the instrument)."""
    dot = SingleDot(preset, seed=seed, bias_v=biases[0])
    chunks, rows, log = [], [], []
    n = 0
    for i, bias in enumerate(biases):
        t_end = (i + 1) * dwell_s
        if i:
            dot.set_bias(bias, i * dwell_s)
        c = dot.advance(t_end)
        rows.append(n)
        log.append((n, bias))
        chunks.append(c)
        n += len(c)
    c0 = chunks[0]
    return Photons(
        np.concatenate([c.macrotime for c in chunks]),
        np.concatenate([c.microtime for c in chunks]),
        np.concatenate([c.channel for c in chunks]),
        rows,
        list(biases),
        log,
        c0.microtime_unit_s,
        c0.microtime_bins,
        c0.rep_rate_hz,
    )


class RawRun:
    """Write ``photons`` to ``path`` in chunks and compose the raw run's documents.

    ``live()`` writes the file chunk by chunk and yields the documents in the order a
    RunEngine emits them (a marker before the datums covering its rows; datums may span a
    marker). ``replay()`` gives the order Tiled rebuilds: all events, then one resource and
    one datum per key, then the stop.
    """

    def __init__(
        self,
        photons: Photons,
        path: Path,
        *,
        segments: str = "steps",
        chunk_rows: int = 4096,
        plan_name: str = "bias_steps",
        t2: bool = False,
    ) -> None:
        self.photons = photons
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.segments = segments
        self.t2 = t2  # write a T2 file: no nanotimes
        self.bundle = compose_run(
            metadata={
                "plan_name": plan_name,
                "qd": {
                    "schema": 1,
                    "photon_stream": "photons",
                    "photon_keys": dict(KEYS),
                    "marker_stream": "primary",
                    "photon_index_key": INDEX_KEY,
                    "bias_key": BIAS_KEY,
                    "segments": segments,
                    "bias_setpoints": photons.biases if segments == "steps" else None,
                },
            }
        )
        self.docs: list[tuple[str, dict]] = []
        self.writer: PhotonHdf5Writer | None = None

    @property
    def uid(self) -> str:
        return self.bundle.start_doc["uid"]

    def _open_file(self) -> PhotonHdf5Writer:
        p = self.photons
        return PhotonHdf5Writer(
            self.path,
            macrotime_unit_s=1 / p.rep_rate_hz,
            microtime_unit_s=None if self.t2 else p.microtime_unit_s,
            microtime_bins=p.microtime_bins,
            rep_rate_hz=p.rep_rate_hz,
            chunk_rows=self.chunk_rows,
            swmr=True,
            user_columns={"bias": {"photon_index": np.int64, "bias_v": np.float64}},
        )

    def live(self, cuts: list[int]):
        """Yield the documents, writing rows ``[cuts[i], cuts[i+1])`` before datum i."""
        p = self.photons
        b = self.bundle
        out = []

        def emit(name, doc):
            out.append((name, doc))
            self.docs.append((name, doc))

        emit("start", b.start_doc)
        primary = b.compose_descriptor(
            name="primary",
            data_keys={
                BIAS_KEY: {"source": "PV:pot", "dtype": "number", "shape": []},
                INDEX_KEY: {"source": "PV:n", "dtype": "integer", "shape": []},
            },
        )
        photons = b.compose_descriptor(
            name="photons",
            data_keys={
                k: {"source": "PV:file", "dtype": "integer", "shape": [], "external": "STREAM:"}
                for k in KEYS.values()
            },
        )
        emit("descriptor", primary.descriptor_doc)
        emit("descriptor", photons.descriptor_doc)
        yield from out
        out.clear()
        self.writer = w = self._open_file()
        log = list(p.log)
        compose = ComposeStreamResource()
        bundles = {}
        for field_, key in KEYS.items():
            bundles[field_] = compose(
                mimetype="application/x-hdf5",
                uri=f"file://localhost{self.path.resolve()}",
                data_key=key,
                parameters={"dataset": DATASETS[field_], "chunk_shape": [self.chunk_rows]},
            )
            doc = dict(bundles[field_].stream_resource_doc, run_start=self.uid)
            emit("stream_resource", doc)
        markers = list(zip(p.step_rows, p.biases, strict=True))
        if self.segments == "continuous":
            markers = markers[:1]
        seq = 1
        for a, bb in zip(cuts[:-1], cuts[1:], strict=True):
            # markers whose row is reached by this datum come before it
            while markers and markers[0][0] < bb:
                row, bias = markers.pop(0)
                emit(
                    "event",
                    primary.compose_event(
                        data={BIAS_KEY: bias, INDEX_KEY: row},
                        timestamps={BIAS_KEY: 0.0, INDEX_KEY: 0.0},
                        seq_num=seq,
                    ),
                )
                seq += 1
            while log and log[0][0] < bb:
                row, bias = log.pop(0)
                w.append_user("bias", photon_index=[row], bias_v=[bias])
            w.append(p.macrotime[a:bb], p.microtime[a:bb], p.channel[a:bb])
            for field_ in KEYS:
                datum = bundles[field_].compose_stream_datum(indices=StreamRange(start=a, stop=bb))
                emit("stream_datum", dict(datum, descriptor=photons.descriptor_doc["uid"]))
            yield from out
            out.clear()
        w.close()
        emit("stop", b.compose_stop())
        yield from out

    def replay(self) -> list[tuple[str, dict]]:
        """The documents of :meth:`live` (run first) in the order Tiled rebuilds them."""
        docs = self.docs
        head = [(n, d) for n, d in docs if n in ("start", "descriptor")]
        events = [(n, d) for n, d in docs if n == "event"]
        resources = [(n, d) for n, d in docs if n == "stream_resource"]
        datums = []
        total = len(self.photons)
        for _, res in resources:
            datums.append(
                (
                    "stream_datum",
                    {
                        "uid": f"{res['uid']}/0",
                        "stream_resource": res["uid"],
                        "descriptor": next(d for n, d in docs if n == "stream_datum")["descriptor"],
                        "indices": {"start": 0, "stop": total},
                        "seq_nums": {"start": 1, "stop": total + 1},
                    },
                )
            )
        stop = [(n, d) for n, d in docs if n == "stop"]
        return head + events + resources + datums + stop


# --- a RunEngine stand-in for the TCSPC card: no IOC, a real file -----------------------------


class SimFlyer:
    """A flyer that appends prepared photons to a SWMR Photon-HDF5 file at each collect.

    Each ``collect`` writes the next ``rows_per_collect`` photons (and their bias markers) and
    announces them like the real card (StreamResource once, StreamDatum per collect).
    ``uri`` overrides the file the documents name (to make the analysis fail).
    """

    def __init__(self, name: str, photons: Photons, path: Path, *, rows_per_collect: int, uri=None):
        self.name = name
        self.parent = None
        self.photons = photons
        self.path = Path(path)
        self.uri = uri or f"file://localhost{self.path.resolve()}"
        self.rows_per_collect = rows_per_collect
        self.writer: PhotonHdf5Writer | None = None
        self._log: list[tuple[int, float]] = []
        self._bundles: dict = {}
        self._announced = 0
        #: Rows a collect may write up to (the plan sets it to the end of the segment).
        self.limit = len(photons)

    def _status(self):
        from ophyd.status import StatusBase

        status = StatusBase()
        status.set_finished()
        return status

    def kickoff(self):
        p = self.photons
        self.writer = PhotonHdf5Writer(
            self.path,
            macrotime_unit_s=1 / p.rep_rate_hz,
            microtime_unit_s=p.microtime_unit_s,
            microtime_bins=p.microtime_bins,
            rep_rate_hz=p.rep_rate_hz,
            chunk_rows=4096,
            swmr=True,
            user_columns={"bias": {"photon_index": np.int64, "bias_v": np.float64}},
        )
        self._log = list(p.log)
        return self._status()

    def complete(self):
        # Write what is left; the last collect announces it.
        self.limit = len(self.photons)
        while self.writer.rows_written < len(self.photons):
            self._write_more()
        self.writer.close()
        return self._status()

    def _write_more(self) -> None:
        p, w = self.photons, self.writer
        a = w.rows_written
        b = min(self.limit, a + self.rows_per_collect)
        while self._log and self._log[0][0] < b:
            row, bias = self._log.pop(0)
            w.append_user("bias", photon_index=[row], bias_v=[bias])
        if b > a:
            w.append(p.macrotime[a:b], p.microtime[a:b], p.channel[a:b])

    def describe_collect(self):
        return {
            key: {
                "source": "sim",
                "dtype": "integer",
                "dtype_numpy": {"timestamps": "<i8", "nanotimes": "<u2", "detectors": "|u1"}[f],
                "shape": [],
                "external": "STREAM:",
            }
            for f, key in KEYS.items()
        }

    def get_index(self) -> int:
        return self._announced

    def collect_asset_docs(self, index=None):
        if not self.writer.closed:
            self._write_more()
        if not self._bundles:
            compose = ComposeStreamResource()
            for f, key in KEYS.items():
                self._bundles[f] = compose(
                    mimetype="application/x-hdf5",
                    uri=self.uri,
                    data_key=key,
                    parameters={"dataset": DATASETS[f], "chunk_shape": [4096], "swmr": True},
                )
                yield "stream_resource", self._bundles[f].stream_resource_doc
        stop = self.writer.rows_written
        if stop > self._announced:
            for bundle in self._bundles.values():
                yield (
                    "stream_datum",
                    bundle.compose_stream_datum(StreamRange(start=self._announced, stop=stop)),
                )
            self._announced = stop


def sim_bias_steps(flyer: SimFlyer, md: dict | None = None):
    """A bias_steps-like plan over a SimFlyer: a marker, then collects, per segment."""
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp
    import ophyd

    p = flyer.photons
    bias = ophyd.Signal(name=BIAS_KEY, value=0.0)
    index = ophyd.Signal(name=INDEX_KEY, value=0)
    qd = {
        "schema": 1,
        "photon_stream": "photons",
        "photon_keys": dict(KEYS),
        "marker_stream": "primary",
        "photon_index_key": INDEX_KEY,
        "bias_key": BIAS_KEY,
        "segments": "steps",
        "bias_setpoints": p.biases,
    }

    @bpp.run_decorator(md={"plan_name": "sim_bias_steps", "qd": qd, **(md or {})})
    def plan():
        yield from bps.declare_stream(flyer, name="photons", collect=True)
        yield from bps.kickoff(flyer, wait=True)
        ends = [*p.step_rows[1:], len(p)]
        for row, end, volts in zip(p.step_rows, ends, p.biases, strict=True):
            yield from bps.mv(bias, volts, index, row)
            yield from bps.trigger_and_read([bias, index])
            flyer.limit = end
            while flyer.writer.rows_written < end:
                yield from bps.collect(flyer, name="photons")
        yield from bps.complete(flyer, wait=True)
        yield from bps.collect(flyer, name="photons")

    return (yield from plan())
