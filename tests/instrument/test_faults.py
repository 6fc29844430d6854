"""Faults: IOCs that vanish mid-operation, IOCs that are not there, Ctrl-C on the simulator.

Each test here has an IOC process of its own (``fresh_ioc``), since it kills or interrupts it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest

from qd_bluesky.analysis import read_photon_hdf5
from qd_bluesky.devices import InstrumentNotConnectedError, IocLostError, connect_instrument

#: How long to wait for a lost IOC to be reported (s). The client sees the TCP circuit close
#: at once; the messages below (a loss, not a timeout) are the evidence, this only stops a hang.
LOST_WAIT_S = 30.0


def test_lost_ioc_during_a_move_fails_fast(fresh_ioc):
    inst = fresh_ioc.connect()
    pot = inst.pot
    pot.slew_rate.set(0.5).wait(5)
    status = pot.set(-1.0)  # a 2 s ramp at 0.5 V/s
    time.sleep(0.5)
    assert not status.done
    fresh_ioc.kill()
    # A loss, not a timeout: the move would otherwise have failed with a timeout error.
    with pytest.raises(
        IocLostError, match=r"pot: the potentiostat IOC .* was lost during the move"
    ):
        status.wait(LOST_WAIT_S)
    # The next request fails before anything is sent (no status to wait on).
    with pytest.raises(IocLostError, match="not connected") as info:
        pot.set(0.0)
    assert "\n" not in str(info.value)


def test_lost_ioc_during_an_acquisition_keeps_the_photons(fresh_ioc):
    inst = fresh_ioc.connect()
    tcspc = inst.tcspc
    tcspc.kickoff().wait(10)
    time.sleep(0.6)
    docs = list(tcspc.collect_asset_docs())
    announced = max(d["indices"]["stop"] for name, d in docs if name == "stream_datum")
    uri = next(d["uri"] for name, d in docs if name == "stream_resource")
    path = Path(urlparse(uri).path)
    time.sleep(0.3)
    fresh_ioc.kill()  # SIGKILL: no chance to close the file
    with pytest.raises(IocLostError, match="photons written so far stay in"):
        tcspc.complete().wait(LOST_WAIT_S)
    # Every photon announced before the loss is in the file, readable (SWMR-consistent).
    table = read_photon_hdf5(path)
    assert len(table) >= announced > 1000
    # The run's last collect announces the rows written after the previous one, read from
    # the file (the IOC wrote for 0.3 s more at ~35 kc/s: thousands of rows), exactly up to
    # the file's end; a further collect has nothing left to announce.
    (datum,) = {
        d["indices"]["stop"] for name, d in tcspc.collect_asset_docs() if name == "stream_datum"
    }
    assert datum == len(table) > announced
    with pytest.raises(IocLostError, match="photons written so far stay in"):
        list(tcspc.collect_asset_docs())
    assert np.all(np.diff(table.macrotime) >= 0)
    assert table.microtime.max() < table.microtime_bins
    # The same rows a reader of the announced range would get.
    with h5py.File(path, "r", swmr=True) as f:
        np.testing.assert_array_equal(
            f["photon_data/timestamps"][:announced], table.macrotime[:announced]
        )


def test_missing_ioc_is_named_in_one_line():
    with pytest.raises(InstrumentNotConnectedError) as info:
        connect_instrument("qdnothere:", timeout=1.0)
    message = str(info.value)
    assert "\n" not in message
    for part in ("potentiostat IOC (qdnothere:pot:*", "TCSPC card IOC (qdnothere:tcspc:*"):
        assert part in message
    assert "e.g. qdnothere:pot:" in message and "EPICS_CA_ADDR_LIST" in message


def test_ctrl_c_closes_the_photon_file_intact(fresh_ioc):
    inst = fresh_ioc.connect()
    tcspc = inst.tcspc
    tcspc.kickoff().wait(10)
    time.sleep(0.5)
    path = Path(tcspc.file_path.get(use_monitor=False))
    # Exit code 0 after SIGINT: stopped by its own handler (a hang would time out here and a
    # kill would give a negative code).
    code = fresh_ioc.interrupt(timeout=60)
    assert code == 0, fresh_ioc.log
    assert "qd-bluesky sim: stopped" in fresh_ioc.log
    # Closed intact: a plain (non-SWMR) open works and the writer finalised the file.
    with h5py.File(path, "r") as f:
        n = f["photon_data/timestamps"].shape[0]
        assert f["photon_data/nanotimes"].shape == f["photon_data/detectors"].shape == (n,)
        duration = float(f["acquisition_duration"][()])
        assert f["user/bias/photon_index"][-1] == n
    assert n > 1000
    table = read_photon_hdf5(path)
    assert len(table) == n
    # The recorded duration covers the photons (the file was written up to the interrupt).
    assert duration >= table.duration_s - 1e-6


def test_a_run_whose_ioc_dies_announces_every_row_in_the_file(fresh_ioc):
    """The plan's last collect, after the loss, announces the rows the file holds."""
    from bluesky import RunEngine

    from qd_bluesky.plans import bias_steps

    inst = fresh_ioc.connect()
    RE = RunEngine({})  # noqa: N806
    docs: list[tuple[str, dict]] = []
    # 1.2 s after the first photons are announced (a fixed time from the start could land in
    # the kickoff on a loaded machine), between two collects (every 0.5 s), the IOC dies.
    killer = threading.Timer(1.2, fresh_ioc.kill)

    def record(name: str, doc: dict) -> None:
        docs.append((name, doc))
        if name == "stream_datum" and not killer.is_alive() and not killer.finished.is_set():
            killer.start()

    RE.subscribe(record)
    with pytest.raises(IocLostError, match="was lost during"):
        RE(bias_steps(inst.tcspc, inst.pot, [0.0], 4.0))
    killer.join()
    (stop,) = [d for name, d in docs if name == "stop"]
    assert stop["exit_status"] == "fail"
    uri = next(d["uri"] for name, d in docs if name == "stream_resource")
    timestamps = next(
        d["uid"] for name, d in docs if name == "stream_resource" and "timestamps" in d["data_key"]
    )
    stops = [
        d["indices"]["stop"]
        for name, d in docs
        if name == "stream_datum" and d["stream_resource"] == timestamps
    ]
    rows = len(read_photon_hdf5(Path(urlparse(uri).path)))
    # Every photon written is announced, once and in order (~40 000 rows in 1.2 s).
    assert stops == sorted(stops) and stops[-1] == rows > 10_000
