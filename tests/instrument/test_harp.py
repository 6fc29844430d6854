"""The TCSPC IOC on the TimeHarp 260 backend, against the vendor library's emulator.

The IOC runs in a subprocess exactly as on the card (``python -m qd_bluesky.iocs.tcspc
--backend th260``), with ``--emulate`` putting :class:`EmulatedTh260Lib` where TH260Lib would
be: the card replays a real HydraHarp T3 recording (tests/data) from each start, with marker
edges on inputs 1 (every 50 ms) and 2 (every 200 ms). So the photons of every file are known:
the recording's first photons, as ``read_photons`` decodes the PTU.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

import qd_bluesky.devices as qd_devices
from qd_bluesky.analysis import read_photon_hdf5, read_photons, validate_photon_file
from qd_bluesky.devices import InstrumentError
from qd_bluesky.devices._pvs import documented_pvs
from qd_bluesky.iocs import SimulatedInstrumentProcess
from qd_bluesky.iocs._harp import READY_LINE
from qd_bluesky.plans import g2_measurement

DATA = Path(__file__).resolve().parents[1] / "data"
T3_PTU = DATA / "hydraharp_v20_t3.ptu"
T2_PTU = DATA / "libpicoquant" / "hydraharp_v30_t2.ptu"
MARKER_PERIODS_S = {1: 0.05, 2: 0.2}


class HarpIoc(SimulatedInstrumentProcess):
    """``python -m qd_bluesky.iocs.tcspc --backend th260 --emulate PTU`` in a subprocess."""

    ready_line = READY_LINE

    def __init__(self, data_dir: Path, *, fifo_full_after: int | None = None) -> None:
        super().__init__(data_dir, prefix=f"qdh{uuid.uuid4().hex[:10]}:")
        self.fifo_full_after = fifo_full_after

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-P", "-m", "qd_bluesky.iocs.tcspc", "--backend", "th260",
            "--emulate", str(T3_PTU), "--emulate-t2", str(T2_PTU),
            "--prefix", self.prefix, "--port", str(self.port), "--photon-dir", str(self.data_dir),
        ]  # fmt: skip
        if self.fifo_full_after is not None:
            cmd += ["--fifo-full-after", str(self.fifo_full_after)]
        return cmd

    def card(self) -> qd_devices.TcspcCard:
        card = qd_devices.TcspcCard(f"{self.prefix}tcspc:", name="tcspc")
        card.wait_for_connection(timeout=20)
        return card


@pytest.fixture(scope="module")
def harp_ioc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HarpIoc]:
    ioc = HarpIoc(tmp_path_factory.mktemp("harp")).start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="module")
def harp_card(harp_ioc: HarpIoc) -> Iterator[qd_devices.TcspcCard]:
    card = harp_ioc.card()
    yield card
    card.destroy()


@pytest.fixture
def card(harp_card: qd_devices.TcspcCard) -> qd_devices.TcspcCard:
    """The card, untimed (``acquire_time`` = 0) as the plans expect."""
    harp_card.acquire_time.set(0.0).wait(5)
    return harp_card


@pytest.fixture(scope="module")
def recording():
    table = read_photons(T3_PTU)
    return table, table.macrotime - table.macrotime[0]


def _acquire(card, seconds: float) -> str:
    card.acquire_time.set(seconds).wait(5)
    card.kickoff().wait(10)
    card.complete().wait(10 + seconds)
    return card.file_path.get(use_monitor=False)


def test_t3_file_holds_the_recordings_photons_and_markers(card, recording):
    table, sync = recording
    path = _acquire(card, 0.6)
    got = read_photon_hdf5(path)
    n = len(got)
    # 0.6 s of a ~7.8 kcps recording; every photon the card saw, decoded exactly.
    assert 3000 < n == card.get_index()
    np.testing.assert_array_equal(got.macrotime, sync[:n])
    np.testing.assert_array_equal(got.microtime, table.microtime[:n])
    np.testing.assert_array_equal(got.channel, table.channel[:n])
    # The file spans the acquisition: the next photon of the recording lies beyond it.
    assert sync[n] * table.macrotime_unit_s >= 0.6 - 0.01
    assert got.macrotime_unit_s == pytest.approx(table.macrotime_unit_s, rel=1e-5)
    assert got.microtime_unit_s == pytest.approx(table.microtime_unit_s, rel=1e-6)
    with h5py.File(path, "r") as f:
        markers = {k: f[f"user/markers/{k}"][()] for k in ("timestamp", "channel", "photon_index")}
        assert "user/bias/photon_index" not in f or f["user/bias/photon_index"].size == 0
    # Markers at their wiring's periods, each after exactly the photons before it.
    for channel, period_s in MARKER_PERIODS_S.items():
        ts = markers["timestamp"][markers["channel"] == channel]
        step = round(period_s / table.macrotime_unit_s)
        np.testing.assert_array_equal(ts, step * np.arange(1, len(ts) + 1))
        # Every edge up to the last photon, none after the acquisition's end.
        assert len(ts) >= sync[n - 1] // step
        assert ts[-1] * table.macrotime_unit_s <= 0.6 + 1e-6
    np.testing.assert_array_equal(
        markers["photon_index"], np.searchsorted(sync[:n], markers["timestamp"], side="left")
    )
    assert validate_photon_file(path).valid


def test_rate_meters_are_the_cards_and_trigger_waits_for_fresh_gates(card, recording):
    table, sync = recording
    gates = []
    for _ in range(2):
        before = card.rate_gate.get(use_monitor=False)
        card.trigger().wait(5)
        gates.append(card.rate_gate.get() - before)
    assert gates == [2, 2]
    reading = card.rates.read()
    assert reading["tcspc_sync_rate"]["value"] == round(1 / table.macrotime_unit_s)
    # The card's 100 ms meters replay the recording: a mean within its range of 100 ms rates.
    per_gate = np.bincount((sync * table.macrotime_unit_s / 0.1).astype(int)) / 0.1
    total = reading["tcspc_count_rate0"]["value"] + reading["tcspc_count_rate1"]["value"]
    assert per_gate.min() <= total <= per_gate.max()


def test_a_plan_announces_every_row_of_the_file(card, recording, tmp_path):
    """A TCSPC-only plan (g2_measurement) on the card: the run's documents tile the file."""
    import subprocess

    table, sync = recording
    RE = RunEngine({})  # noqa: N806
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(g2_measurement(card, 0.8, collect_period=0.2))
    (stop,) = [doc for name, doc in docs if name == "stop"]
    assert stop["exit_status"] == "success"
    resources = {d["uid"]: d for name, d in docs if name == "stream_resource"}
    assert {r["data_key"] for r in resources.values()} == {
        "tcspc_timestamps", "tcspc_nanotimes", "tcspc_detectors",
    }  # fmt: skip
    (uri,) = {r["uri"] for r in resources.values()}
    path = uri.removeprefix("file://localhost")
    n = len(read_photon_hdf5(path))
    for uid in resources:
        ranges = [
            (d["indices"]["start"], d["indices"]["stop"])
            for name, d in docs
            if name == "stream_datum" and d["stream_resource"] == uid
        ]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    np.testing.assert_array_equal(read_photon_hdf5(path).macrotime, sync[:n])
    # The file spans the plan's 0.8 s of photons (and the marker before them).
    assert sync[n - 1] * table.macrotime_unit_s >= 0.8 - 0.05
    # The command line check of the contract accepts the card's file.
    out = subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", "validate", path],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"valid (T3, {n} photons)" in out.stdout


def test_sync_divider_sets_the_time_base(card, recording):
    table, sync = recording
    period_bins = round(table.macrotime_unit_s / table.microtime_unit_s)
    try:
        card.rates.sync_rate.get()
        _set(card, "sync_divider", 4)
        path = _acquire(card, 0.3)
    finally:
        _set(card, "sync_divider", 1)
    got = read_photon_hdf5(path)
    n = len(got)
    # Divided syncs: unit 4 / sync rate, the delay counted from the last divided sync.
    assert got.macrotime_unit_s == pytest.approx(4 * table.macrotime_unit_s, rel=1e-5)
    np.testing.assert_array_equal(got.macrotime, sync[:n] // 4)
    np.testing.assert_array_equal(got.microtime, table.microtime[:n] + (sync[:n] % 4) * period_bins)
    assert got.microtime_bins == int(np.ceil(4 * period_bins))
    validation = validate_photon_file(path)
    assert validation.valid, validation.problems


def test_t2_mode_replays_time_tags_at_the_cards_fixed_tick(card):
    t2 = read_photons(T2_PTU)
    try:
        card.mode.set("T2").wait(5)
        # The card fixes the T2 tick: a resolution put is refused, the readback is the tick.
        assert card.resolution.get(use_monitor=False) == pytest.approx(t2.macrotime_unit_s)
        with pytest.raises(Exception):  # noqa: B017 - the IOC fails the put; the reason is in error
            card.resolution.set(100e-12).wait(5)
        assert "fixes the T2 tick" in card.error.get(use_monitor=False)
        path = _acquire(card, 0.12)
    finally:
        card.mode.set("T3").wait(5)
    got = read_photon_hdf5(path)
    n = len(got)
    assert got.mode == "T2" and n > 5000
    assert got.macrotime_unit_s == pytest.approx(t2.macrotime_unit_s)
    ticks = t2.macrotime - t2.macrotime[0]
    np.testing.assert_array_equal(got.macrotime, ticks[:n])
    np.testing.assert_array_equal(got.channel, t2.channel[:n])
    # T2 marker records in ticks: input 1 at 50 and 100 ms, each after the photons before it.
    with h5py.File(path, "r") as f:
        stamps, channels = f["user/markers/timestamp"][()], f["user/markers/channel"][()]
        index = f["user/markers/photon_index"][()]
    step = round(0.05 / t2.macrotime_unit_s)
    np.testing.assert_array_equal(stamps[channels == 1], [step, 2 * step])
    np.testing.assert_array_equal(index, np.searchsorted(ticks[:n], stamps, side="left"))
    assert validate_photon_file(path).valid


def test_settings_reach_the_card_and_warnings_come_back(card, waiter):
    prefix = card.prefix
    from ophyd import EpicsSignal, EpicsSignalRO

    warnings = EpicsSignalRO(f"{prefix}warnings", name="w")
    text = EpicsSignalRO(f"{prefix}warnings_text", name="wt", string=True)
    enable1 = EpicsSignal(f"{prefix}input_enable1", name="en1")
    for sig in (warnings, text, enable1):
        sig.wait_for_connection(timeout=10)
    try:
        enable1.set(0).wait(5)
        path = _acquire(card, 0.3)
        got = read_photon_hdf5(path)
        # Input 1 disabled: the card records input 0 only.
        assert len(got) > 500 and set(np.unique(got.channel)) == {0}
        _set(card, "sync_divider", 2)
        assert waiter(lambda: warnings.get(use_monitor=False) & 0x0200, 5.0)
        assert "divider" in text.get(use_monitor=False)
    finally:
        enable1.set(1).wait(5)
        _set(card, "sync_divider", 1)
    assert waiter(lambda: not warnings.get(use_monitor=False) & 0x0200, 5.0)


def test_a_full_fifo_ends_the_run_with_every_photon_read(tmp_path, recording):
    table, sync = recording
    with HarpIoc(tmp_path, fifo_full_after=2000) as ioc:
        card = ioc.card()
        try:
            RE = RunEngine({})
            docs = []
            RE.subscribe(lambda name, doc: docs.append((name, doc)))
            # A TCSPC-only plan; the FIFO fills after ~0.3 s of its 2 s.
            with pytest.raises(InstrumentError, match="FIFO full"):
                RE(g2_measurement(card, 2.0, collect_period=0.2))
            stop = [doc for name, doc in docs if name == "stop"][-1]
            assert stop["exit_status"] == "fail"
            assert stop["reason"].startswith("tcspc: FIFO full: the card stopped the measurement")
            # The run announced every row the file holds.
            datums = [doc for name, doc in docs if name == "stream_datum"]
            announced = max(d["indices"]["stop"] for d in datums)
            assert card.fifo_full.get(use_monitor=False) == 1
            path = card.file_path.get(use_monitor=False)
        finally:
            card.destroy()
    got = read_photon_hdf5(path)
    # 2000 records: photons plus overflow records (about one per photon at ~8 kcps and
    # 5 MHz) and markers; every photon of them is in the file.
    n = len(got)
    assert 500 < n < 2000 and announced == n
    np.testing.assert_array_equal(got.macrotime, sync[:n])
    np.testing.assert_array_equal(got.microtime, table.microtime[:n])
    validation = validate_photon_file(path)
    assert validation.valid, validation.problems


def _set(card, pv: str, value) -> None:
    from ophyd import EpicsSignal

    sig = EpicsSignal(f"{card.prefix}{pv}", name=pv)
    sig.wait_for_connection(timeout=10)
    sig.set(value).wait(5)
    sig.destroy()


def test_bias_steps_with_the_card_and_a_separate_potentiostat(card, sim_ioc, recording):
    """The lab as wired: the card's IOC on its own, the potentiostat on another IOC. The bias
    steps plan maps each settled bias to the photon rows of its segment through the primary
    stream (the card does not see the bias), and announces every row of the file."""
    from qd_bluesky.plans import bias_steps

    table, sync = recording
    pot = sim_ioc.connect().pot
    RE = RunEngine({})  # noqa: N806
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(bias_steps(card, pot, [0.0, -0.5], 0.5, collect_period=0.2))
    (stop,) = [doc for name, doc in docs if name == "stop"]
    assert stop["exit_status"] == "success"
    primary = next(d["uid"] for name, d in docs if name == "descriptor" and d["name"] == "primary")
    events = [d for name, d in docs if name == "event" and d["descriptor"] == primary]
    assert [e["data"]["pot"] for e in events] == pytest.approx([0.0, -0.5], abs=1e-3)
    index = [e["data"]["tcspc_num_photons"] for e in events]
    (uri,) = {d["uri"] for name, d in docs if name == "stream_resource"}
    got = read_photon_hdf5(uri.removeprefix("file://localhost"))
    n = len(got)
    # Segment 1 starts after the first dwell: ~0.5 s of the ~7.8 kcps recording later.
    assert 0 <= index[0] < index[1] < n
    assert (sync[index[1]] - sync[max(index[0], 0)]) * table.macrotime_unit_s >= 0.5 - 0.05
    stops = [d["indices"]["stop"] for name, d in docs if name == "stream_datum"]
    assert max(stops) == n
    np.testing.assert_array_equal(got.macrotime, sync[:n])
    pot.destroy()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--library", "/nonexistent/libth260.so"], "cannot load the TimeHarp 260 library"),
        (["--emulate", "/nonexistent.ptu"], "/nonexistent.ptu: no such file"),
    ],
)
def test_a_card_that_cannot_be_had_is_one_line(args, reason):
    import subprocess

    cmd = [sys.executable, "-P", "-m", "qd_bluesky.iocs.tcspc", "--backend", "th260", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], out.stderr


def test_the_conformance_command_passes_the_harp_ioc(harp_ioc: HarpIoc) -> None:
    """The IOC on the emulated card passes the checks the simulated instrument passes (the
    acquisition needs a laser IOC, whose interlock the card's device checks first)."""
    check = [sys.executable, "-P", "-m", "qd_bluesky.cli", "check-instrument"]
    check += ["--prefix", harp_ioc.prefix, "--port", str(harp_ioc.port), "--only", "tcspc"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "PASS  tcspc: connect",
        f"PASS  tcspc: documented PVs: {len(documented_pvs('tcspc'))} PVs read, types as "
        "documented",
        "SKIP  tcspc: short acquisition: the laser IOC is not connected: the interlock is unknown",
        "3 checks, 0 failed",
    ]
