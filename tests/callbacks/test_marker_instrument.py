"""Bias-synchronous timing on the simulated instrument: a TCSPC card that does not see the bias
(``qd-bluesky sim --card-blind``, as a real card) and the potentiostat's trigger output on its
marker input 1. Plans over Channel Access, the live analyzer writing derived runs into a real
catalog, and the replay of each run equal to its live analysis."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from qd_bluesky.analysis import validate_photon_file
from qd_bluesky.callbacks import replay, subscribe_live_analysis
from qd_bluesky.devices import connect_instrument
from qd_bluesky.iocs import SimulatedInstrumentProcess
from qd_bluesky.sim import Sample

PRESET, SEED = "qd1", 1


class Bench:
    def __init__(self, catalog) -> None:
        self.catalog = catalog
        self.ioc = SimulatedInstrumentProcess(
            catalog.photon_dir, seed=SEED, preset=PRESET, options=["--card-blind"]
        ).start()
        self.inst = connect_instrument(self.ioc.prefix)
        self.RE = RunEngine({})
        self.analyzer = subscribe_live_analysis(self.RE, catalog.writer)
        home = Sample(preset=PRESET, seed=SEED).home_um
        self.inst.stage.x.set(float(home[0])).wait(10)
        self.inst.stage.y.set(float(home[1])).wait(10)

    def run(self, plan) -> str:
        (uid,) = self.RE(plan)
        assert self.analyzer.wait(60)
        return uid

    def derived(self, uid):
        outcome = self.analyzer.outcomes[uid]
        assert outcome.exit_status == "success", outcome.reason
        return self.catalog.client[outcome.derived_uid]

    def photon_file(self) -> h5py.File:
        """The last run's photon file (the card's ``file_path``)."""
        return h5py.File(self.inst.tcspc.file_path.get(use_monitor=False), "r")

    def close(self) -> None:
        self.analyzer.close()
        for device in self.inst:
            device.destroy()
        self.ioc.stop()


@pytest.fixture(scope="module")
def bench(catalog):
    b = Bench(catalog)
    yield b
    b.close()


def test_cv_on_a_blind_card_gets_each_photons_bias_from_the_trigger(bench):
    from qd_bluesky.plans import cv_scan

    inst = bench.inst
    inst.pot.set(0.0).wait(10)
    uid = bench.run(cv_scan(inst.tcspc, inst.pot, 0.0, -1.0, 0.0, 1.0, 1))
    path = bench.inst.tcspc.file_path.get(use_monitor=False)
    assert validate_photon_file(path).problems == []  # a valid photon file without /user/bias
    with bench.photon_file() as f:
        assert "bias" not in f["user"]  # the card was not told the bias
        ts = f["user/markers/timestamp"][:]
        channel = f["user/markers/channel"][:]
        rep = f["photon_data/measurement_specs/laser_repetition_rate"][()]
    assert set(channel.tolist()) == {1}
    # The sweep's corners (start, vertex, end) 1 s apart at 1 V/s: the last three markers.
    gaps_s = np.diff(ts[-3:]) / rep
    assert gaps_s == pytest.approx([1.0, 1.0], abs=0.05)
    flid = bench.derived(uid)["flid"].read()
    bias = flid["bias_v"].values
    t = flid["time_s"].values
    sweep = np.isfinite(bias)
    assert bias[sweep].min() == pytest.approx(-1.0, abs=0.03)
    assert bias[sweep].max() == pytest.approx(0.0, abs=0.03)
    # Along the sweep the bias follows the triangle between the corner markers.
    t_vertex = t[sweep][np.argmin(bias[sweep])]
    down = sweep & (t < t_vertex - 0.1) & (bias < -0.05)
    assert np.all(np.diff(bias[down]) <= 1e-9)
    result = replay(bench.catalog, uid)
    assert result.matches_live is True, result.differences


def test_bias_switching_on_the_instrument(bench):
    from qd_bluesky.plans import bias_switching

    inst = bench.inst
    inst.pot.set(-0.2).wait(10)
    uid = bench.run(bias_switching(inst.tcspc, inst.pot, -1.0, 0.0, period=1e-3, cycles=1000))
    assert inst.pot.position == pytest.approx(-0.2, abs=1e-6)  # the bias is back
    with bench.photon_file() as f:
        ts = f["user/markers/timestamp"][:]
        rep = f["photon_data/measurement_specs/laser_repetition_rate"][()]
    half = round(0.5e-3 * rep)
    on_wave = np.isclose(np.diff(ts), half, atol=1)
    assert np.count_nonzero(on_wave) == 1999  # 2000 edges, each at its half period
    response = bench.derived(uid)["switching_response"].read()
    steps = dict(zip(response["edge"].values, response["steps"].values, strict=True))
    assert steps == {"rising": 999, "falling": 1000}  # the first edge only starts the wave
    table = bench.derived(uid)["switching"].read()
    assert int(table["photons"].values.sum()) > 1000
    assert np.all(table["time_us"].values < 500.0)
    result = replay(bench.catalog, uid)
    assert result.matches_live is True, result.differences
