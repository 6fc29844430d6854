"""The TCSPC card over real Channel Access: rate meters, the flyer, the photon file."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from caproto import ErrorResponseReceived
from caproto.sync.client import write as ca_write

from qd_bluesky.analysis import read_photon_hdf5
from qd_bluesky.devices import InterlockOpenError
from qd_bluesky.sim import Sample


def _acquire(tcspc, seconds: float, *, collect_every: float = 0.25):
    """Kick off, collect while acquiring, complete, collect: all documents."""
    docs = []
    tcspc.kickoff().wait(10)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        time.sleep(collect_every)
        docs.extend(tcspc.collect_asset_docs())
    tcspc.complete().wait(10)
    docs.extend(tcspc.collect_asset_docs())
    return docs


@pytest.fixture
def tcspc(instrument):
    tc = instrument.tcspc
    tc.acquire_time.set(0.0).wait(5)
    yield tc
    if tc.acquiring.get(use_monitor=False):
        tc.acquire.set(0).wait(10)


def test_trigger_waits_for_a_fresh_rate_reading(tcspc):
    gates, waits = [], []
    for _ in range(3):
        before = tcspc.rate_gate.get(use_monitor=False)
        t0 = time.monotonic()
        tcspc.trigger().wait(5)
        waits.append(time.monotonic() - t0)
        gates.append(tcspc.rate_gate.get() - before)
    # The gate running at the call is skipped: the reading comes 2 gates later, so at least
    # one whole 0.5 s gate after the call (load can only lengthen the wait; the gate count,
    # not the clock, shows that it was no later than needed).
    assert gates == [2, 2, 2]
    assert all(w >= 0.5 - 0.05 for w in waits), waits
    reading = tcspc.rates.read()
    assert {"tcspc_count_rate0", "tcspc_count_rate1", "tcspc_num_photons"} <= reading.keys()
    assert reading["tcspc_sync_rate"]["value"] == pytest.approx(2.5e6)


def test_a_short_rate_gate_makes_fast_triggers_and_a_bad_one_is_refused(tcspc):
    rates = tcspc.rates
    assert rates.rate_period.get(use_monitor=False) == pytest.approx(0.5)
    rates.rate_period.set(0.1).wait(5)
    try:
        time.sleep(0.6)  # the running 0.5 s gate ends
        t0 = time.monotonic()
        for _ in range(5):
            rates.trigger().wait(5)
        # Five triggers of one to two 0.1 s gates each; at 0.5 s they take at least 2.5 s.
        assert time.monotonic() - t0 < 2.0
        assert rates.read()["tcspc_count_rate0"]["value"] > 0
        with pytest.raises(ErrorResponseReceived, match="Limits are set to 0.05 and 1.0"):
            ca_write(rates.rate_period.pvname, 5.0, notify=True, repeater=False)
        assert rates.rate_period.get(use_monitor=False) == pytest.approx(0.1)
    finally:
        rates.rate_period.set(0.5).wait(5)


def test_negative_bias_dims_the_count_rate(instrument, tcspc, rate_meter, sim_ioc):
    pot = instrument.pot
    truth = Sample(preset=sim_ioc.preset, seed=sim_ioc.seed)
    truth.set_bias(-1.7, 0.0)
    expected_minus = truth.expected_rate_cps(*truth.home_um)
    pot.set(0.0).wait(10)
    at_zero, sigma_zero = rate_meter(tcspc, 3)
    pot.set(-1.7).wait(10)
    at_minus, sigma_minus = rate_meter(tcspc, 3)
    pot.set(0.0).wait(10)
    # 3 gates of 0.5 s; sigma = sqrt(counts) / time (Poisson) for each mean. The drop must
    # exceed 5 sigma of the difference.
    drop = at_zero - at_minus
    assert drop > 5 * np.hypot(sigma_zero, sigma_minus), (at_zero, at_minus)
    # -1.7 V holds the dot in highly charged, little-blinking states: the mean rate is the
    # simulator's expectation within 5 Poisson sigma plus 3 % for the residual flicker.
    assert at_minus == pytest.approx(expected_minus, abs=5 * sigma_minus + 0.03 * expected_minus)


def test_photon_file_holds_exactly_the_announced_photons(tcspc):
    docs = _acquire(tcspc, 1.0)
    n = tcspc.num_photons.get(use_monitor=False)
    resources = [d for name, d in docs if name == "stream_resource"]
    datums = [d for name, d in docs if name == "stream_datum"]
    keys = {r["data_key"]: r for r in resources}
    assert set(keys) == {"tcspc_timestamps", "tcspc_nanotimes", "tcspc_detectors"}
    uris = {r["uri"] for r in resources}
    assert len(uris) == 1
    path = Path(urlparse(uris.pop()).path)
    assert path == Path(tcspc.file_path.get(use_monitor=False))
    assert n > 1000  # a dot at tens of kc/s for 1 s
    # Every data key's datums tile [0, n) without gap or overlap.
    for uid, resource in ((r["uid"], r) for r in resources):
        ranges = [
            (d["indices"]["start"], d["indices"]["stop"])
            for d in datums
            if d["stream_resource"] == uid
        ]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert sum(stop - start for start, stop in ranges) == n
        assert resource["parameters"]["swmr"] is True
    # The file: n rows in every photon dataset, chunked as announced.
    chunk_rows = tcspc.chunk_rows.get()
    with h5py.File(path, "r") as f:
        for r in resources:
            ds = f[r["parameters"]["dataset"]]
            assert ds.shape == (n,)
            assert ds.chunks == tuple(r["parameters"]["chunk_shape"]) == (chunk_rows,)
        markers = {k: f["user/bias"][k][()] for k in f["user/bias"]}
    table = read_photon_hdf5(path)
    assert len(table) == n
    assert table.mode == "T3"
    assert table.rep_rate_hz == pytest.approx(2.5e6)
    assert table.microtime_unit_s == pytest.approx(25e-12)
    assert np.all(np.diff(table.macrotime) >= 0)
    assert table.microtime.max() < table.microtime_bins
    # Two APDs behind a 50/50 splitter: channel 0 gets half the photons (binomial, 5 sigma).
    n0 = int(np.sum(table.channel == 0))
    assert set(np.unique(table.channel)) == {0, 1}
    assert abs(n0 - n / 2) < 5 * np.sqrt(n / 4)
    # The bias markers span the whole file at the static 0 V.
    assert markers["photon_index"][0] == 0 and markers["photon_index"][-1] == n
    assert np.all(np.diff(markers["photon_index"]) >= 0)
    assert np.all(markers["bias_v"] == 0.0)
    # The markers cover the acquisition (>= the 1 s the test acquired; load can only lengthen
    # it), on the same clock as the photons: the last marker is within 10 ms of the last photon
    # (at tens of kc/s a 10 ms gap before the stop has negligible probability).
    assert markers["t_s"][-1] - markers["t_s"][0] >= 1.0 - 0.05
    photon_span = (table.macrotime[-1] - table.macrotime[0]) * table.macrotime_unit_s
    assert markers["t_s"][-1] - markers["t_s"][0] == pytest.approx(photon_span, abs=0.01)


def test_timed_acquisition_stops_by_itself(tcspc):
    tcspc.acquire_time.set(0.6).wait(5)
    tcspc.kickoff().wait(10)
    tcspc.complete().wait(60)  # nothing stops it but its own timer
    assert tcspc.acquiring.get(use_monitor=False) == 0
    n = tcspc.get_index()
    table = read_photon_hdf5(tcspc.file_path.get(use_monitor=False))
    assert len(table) == n
    # The file spans the programmed 0.6 s by the card's own clock (the laser sync count), not
    # the wall clock: the photons stop before 0.6 s of syncs and reach to within 10 ms of it
    # (even in X+ at 5 kc/s a 10 ms gap at either end has probability e^-50). A timer that ran
    # long or short (or ignored the setting) fails, however late the IOC's last tick came.
    span = (table.macrotime[-1] - table.macrotime[0]) * table.macrotime_unit_s
    assert 0.6 - 0.01 < span <= 0.6
    # The file spans the acquisition time exactly, less the waits for the first and the last
    # photon: each ~1/rate (< 1 ms at > 3 kc/s; 10 ms is > 10 such waits).
    span = table.duration_s
    assert 0.6 - 0.01 < span <= 0.6
    assert tcspc.elapsed.get(use_monitor=False) == pytest.approx(0.6, abs=1e-9)


def test_bias_markers_follow_a_bias_change(instrument, tcspc):
    pot = instrument.pot
    tcspc.kickoff().wait(10)
    time.sleep(0.3)
    pot.set(-1.0).wait(10)  # 0.1 s ramp at 10 V/s
    time.sleep(0.3)
    tcspc.complete().wait(10)
    path = tcspc.file_path.get(use_monitor=False)
    n = tcspc.get_index()
    pot.set(0.0).wait(10)
    with h5py.File(path, "r") as f:
        index = f["user/bias/photon_index"][()]
        sync = f["user/bias/sync"][()]
        bias = f["user/bias/bias_v"][()]
        t = f["user/bias/t_s"][()]
        timestamps = f["photon_data/timestamps"][()]
    assert len(timestamps) == n
    assert bias[0] == 0.0 and bias[-1] == pytest.approx(-1.0)
    assert np.all(np.diff(t) >= 0) and np.all(np.diff(index) >= 0)
    ramp = (bias < 0) & (bias > -1.0)
    assert ramp.sum() >= 3  # the ramp ticks every 20 ms during its 0.1 s
    assert np.all(np.diff(bias[bias < 0]) <= 0)  # a monotonic ramp
    # Exact mapping: each marker points at the first photon of its laser pulse or later.
    np.testing.assert_array_equal(np.searchsorted(timestamps, sync, side="left"), index)
    # Marker pulse counts follow the marker times at 2.5 MHz (sync clock = sample clock).
    np.testing.assert_allclose(np.diff(sync) / 2.5e6, np.diff(t), atol=1e-6)


def test_interlock_blocks_acquisition(instrument, tcspc, sim_ioc):
    laser = instrument.laser
    before = tcspc.file_path.get(use_monitor=False)
    try:
        laser.interlock.set("open").wait(5)
        time.sleep(0.2)
        assert laser.emission.get(use_monitor=False) == "off"
        with pytest.raises(InterlockOpenError, match="interlock is open"):
            tcspc.kickoff()
        # Nothing was sent: no acquisition, no new file.
        assert tcspc.acquiring.get(use_monitor=False) == 0
        assert tcspc.file_path.get(use_monitor=False) == before
        # The IOC refuses on its own too (a client without the device's check).
        with pytest.raises(ErrorResponseReceived, match="interlock open"):
            ca_write(f"{sim_ioc.prefix}tcspc:acquire", 1, notify=True, repeater=False)
        assert "interlock open" in tcspc.error.get(use_monitor=False)
        # Emission cannot be switched on while it is open.
        with pytest.raises(ErrorResponseReceived, match="interlock is open"):
            ca_write(f"{sim_ioc.prefix}laser:emission", 1, notify=True, repeater=False)
    finally:
        laser.interlock.set("closed").wait(5)
        laser.emission.set("on").wait(5)
    assert laser.emission.get(use_monitor=False) == "on"
    tcspc.kickoff().wait(10)
    tcspc.complete().wait(10)
    assert tcspc.get_index() > 0


def test_t2_mode_and_coarser_resolution(tcspc):
    try:
        tcspc.mode.set("T2").wait(5)
        tcspc.acquire_time.set(0.3).wait(5)
        assert set(tcspc.describe_collect()) == {"tcspc_timestamps", "tcspc_detectors"}
        tcspc.kickoff().wait(10)
        assert set(tcspc.describe_collect()) == {"tcspc_timestamps", "tcspc_detectors"}
        tcspc.complete().wait(10)
        t2 = read_photon_hdf5(tcspc.file_path.get(use_monitor=False))
        # T2: absolute time tags in 25 ps ticks, no nanotimes; 0.3 s of them.
        assert t2.mode == "T2" and not t2.has_microtime
        assert t2.macrotime_unit_s == pytest.approx(25e-12)
        assert 0.29 < t2.duration_s <= 0.3
        assert len(t2) == tcspc.get_index()

        tcspc.mode.set("T3").wait(5)
        tcspc.resolution.set(100e-12).wait(5)
        tcspc.kickoff().wait(10)
        tcspc.complete().wait(10)
        t3 = read_photon_hdf5(tcspc.file_path.get(use_monitor=False))
        # 100 ps bins: 400 ns / 100 ps = 4000 bins per period.
        assert t3.microtime_unit_s == pytest.approx(100e-12)
        assert t3.microtime_bins == 4000
        assert t3.microtime.max() < 4000
        with pytest.raises(ErrorResponseReceived, match="not 25 ps times a power of two"):
            ca_write(tcspc.resolution.pvname, 30e-12, notify=True, repeater=False)
        assert tcspc.resolution.get(use_monitor=False) == pytest.approx(100e-12)
    finally:
        tcspc.mode.set("T3").wait(5)
        tcspc.resolution.set(25e-12).wait(5)


def test_sync_divider_counts_divided_syncs(tcspc):
    """The simulated card divides the sync as a real one: the T3 timestamps count divided
    syncs (unit = divider / rep rate) and the nanotimes span the divided period."""
    from ophyd import EpicsSignal, EpicsSignalRO

    from qd_bluesky.analysis import validate_photon_file

    divider = EpicsSignal(f"{tcspc.prefix}sync_divider", name="sync_divider")
    warnings = EpicsSignalRO(f"{tcspc.prefix}warnings", name="warnings")
    for sig in (divider, warnings):
        sig.wait_for_connection(timeout=10)
    try:
        divider.set(2).wait(5)
        tcspc.acquire_time.set(0.3).wait(5)
        tcspc.kickoff().wait(10)
        tcspc.complete().wait(10)
        assert warnings.get(use_monitor=False) & 0x0200  # "sync divider > 1 in T3"
    finally:
        divider.set(1).wait(5)
        tcspc.acquire_time.set(0.0).wait(5)
    path = tcspc.file_path.get(use_monitor=False)
    got = read_photon_hdf5(path)
    rep = tcspc.rates.sync_rate.get(use_monitor=False)
    assert got.macrotime_unit_s == pytest.approx(2 / rep)
    period_bins = round(1 / (rep * got.microtime_unit_s))
    assert got.microtime_bins == 2 * period_bins
    # Photons after the odd (undivided) syncs: about half, delayed by one laser period.
    late = np.count_nonzero(got.microtime >= period_bins) / len(got)
    assert abs(late - 0.5) < 5 * 0.5 / np.sqrt(len(got))  # 5 sigma of a binomial half
    assert 0.29 < got.duration_s <= 0.3
    validation = validate_photon_file(path)
    assert validation.valid, validation.problems
