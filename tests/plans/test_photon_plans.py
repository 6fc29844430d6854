"""The photon plans against the simulated IOCs: documents, markers, photon rows, the catalog.

Timing tolerances come from the simulated instrument: the TCSPC IOC writes photons every
50 ms (TICK), the potentiostat ramps at 10 V/s (SLEW), settles 50 ms (SETTLE) and updates its
readback every 20 ms while sweeping (RAMP_TICK). CA round trips and the RunEngine add a few
ms, more on a loaded machine: LATENCY is the slack we allow for them.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from bluesky.utils import FailedStatus, RunEngineInterrupted
from ophyd import Signal
from ophyd.status import StatusBase

from qd_bluesky.analysis import PhotonHdf5Reader
from qd_bluesky.plans import bias_cycling, bias_steps, cv_scan, g2_measurement
from qd_bluesky.sim import CellParameters

sys.path.insert(0, str(Path(__file__).parent))
from plan_docs import (  # noqa: E402
    by_name,
    column,
    descriptor,
    file_bias_of_rows,
    photon_file,
    photon_ranges,
    start_doc,
    stop_doc,
    stream_events,
    validate,
)

TICK, SLEW, SETTLE, RAMP_TICK = 0.05, 10.0, 0.05, 0.02
LATENCY = 0.3
PHOTON_KEYS = ("tcspc_timestamps", "tcspc_nanotimes", "tcspc_detectors")

STEPS = (0.0, -1.4, -2.0)
DWELL = 1.0
START_BIAS = 0.2  # bias_steps must come back here


def _read_file(path: Path):
    with PhotonHdf5Reader(path) as reader:
        return reader.read(), reader.read_user("bias")


def _times(table, markers) -> np.ndarray:
    """Seconds since the acquisition started, of every photon row (T3: sync counts)."""
    return (table.macrotime - markers["sync"][0]) * table.macrotime_unit_s


def _assert_rows_tile_the_file(docs, n_file: int) -> None:
    """Each photon key's stream datums cover rows [0, N) exactly once, in order; N = file rows."""
    ranges = photon_ranges(docs)
    assert set(ranges) == set(PHOTON_KEYS)
    for key, spans in ranges.items():
        starts, stops = np.array(spans).T
        assert starts[0] == 0 and stops[-1] == n_file, key
        np.testing.assert_array_equal(starts[1:], stops[:-1])
        assert np.all(stops > starts)
    assert stop_doc(docs)["num_events"]["photons"] == n_file


def _assert_markers_precede_their_rows(docs, index_key: str = "tcspc_num_photons") -> None:
    """Live order: rows announced before a marker event all lie before its photon index."""
    announced = 0
    marker_uid = descriptor(docs, "primary")["uid"]
    resource = by_name(docs, "stream_resource")[0]["uid"]
    for name, doc in docs:
        if name == "stream_datum" and doc["stream_resource"] == resource:
            announced = doc["indices"]["stop"]
        elif name == "event" and doc["descriptor"] == marker_uid:
            assert announced <= doc["data"][index_key]


def _qd_block(bias_key, segments, setpoints):
    return {
        "schema": 1,
        "photon_stream": "photons",
        "photon_keys": {
            "timestamps": "tcspc_timestamps",
            "nanotimes": "tcspc_nanotimes",
            "detectors": "tcspc_detectors",
        },
        "marker_stream": "primary",
        "photon_index_key": "tcspc_num_photons",
        "bias_key": bias_key,
        "segments": segments,
        "bias_setpoints": setpoints,
    }


# -- bias_steps ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steps_run(bench):
    bench.park(START_BIAS)
    uid, docs = bench.run(
        bias_steps(bench.inst.tcspc, bench.inst.pot, STEPS, DWELL, collect_period=0.25)
    )
    return uid, docs, bench.inst.pot.position


def test_bias_steps_documents(steps_run, bench):
    uid, docs, _ = steps_run
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "bias_steps"
    assert start["plan_args"] == {
        "tcspc": repr(bench.inst.tcspc),
        "potentiostat": repr(bench.inst.pot),
        "biases": list(STEPS),
        "dwell": DWELL,
        "readables": [],
        "collect_period": 0.25,
    }
    assert start["qd"] == _qd_block("pot", "steps", list(STEPS))
    assert start["num_points"] == len(STEPS) and start["motors"] == ["pot"]
    assert {d["name"] for d in by_name(docs, "descriptor")} == {"primary", "photons"}
    assert stop_doc(docs)["exit_status"] == "success"
    assert stop_doc(docs)["num_events"]["primary"] == len(STEPS)


def test_bias_steps_markers_and_photons(steps_run):
    _, docs, _ = steps_run
    # The IOC's ramp ends exactly on the setpoint and the marker is read after it settled.
    np.testing.assert_allclose(column(docs, "primary", "pot"), STEPS, rtol=0, atol=1e-9)
    index = column(docs, "primary", "tcspc_num_photons")
    # ~30 kc/s over a 1 s dwell: thousands of photons per segment
    assert np.all(np.diff(index) > 1000)
    _assert_markers_precede_their_rows(docs)

    table, markers = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    t = _times(table, markers)
    bias_of_row = file_bias_of_rows(markers, np.arange(len(table)))
    bounds = [*index, len(table)]
    for k, setpoint in enumerate(STEPS):
        # The marker's photon index is where the IOC's file says the bias reached the
        # setpoint, give or take one photon tick before and settle + tick + latency after.
        reached = markers["t_s"][np.flatnonzero(markers["bias_v"] == setpoint)[0]]
        lag = t[index[k]] - reached
        assert -TICK - 0.01 <= lag <= SETTLE + TICK + LATENCY, (k, lag)
        # Photons of the segment at another bias: at most one tick at its start, and the
        # ramp to the next bias (|dV|/SLEW + SETTLE) plus one tick at its end.
        seg = slice(bounds[k], bounds[k + 1])
        t_seg, wrong = t[seg], bias_of_row[seg] != setpoint
        ramp = abs(STEPS[k + 1] - setpoint) / SLEW + SETTLE if k + 1 < len(STEPS) else 0.0
        head = t_seg[0] + TICK + 0.01
        tail = t_seg[-1] - ramp - TICK - LATENCY
        assert not np.any(wrong & (t_seg > head) & (t_seg < tail)), k
        # The dwell: from the marker to the next move (or the end of the acquisition).
        moved = t_seg[wrong & (t_seg > head)]
        dwell = (moved[0] if moved.size else t_seg[-1]) - t_seg[0]
        assert DWELL - TICK - 0.01 <= dwell <= DWELL + TICK + LATENCY, (k, dwell)


def test_bias_steps_returns_to_the_start_bias(steps_run):
    *_, after = steps_run
    assert after == pytest.approx(START_BIAS, abs=1e-9)


def test_bias_steps_in_the_catalog(steps_run, bench):
    uid, docs, _ = steps_run
    run = bench.catalog.client[uid]
    assert run.metadata["start"]["qd"] == start_doc(docs)["qd"]
    primary = run["primary"].read()
    np.testing.assert_allclose(np.asarray(primary["pot"]), STEPS, atol=1e-9)
    np.testing.assert_array_equal(
        np.asarray(primary["tcspc_num_photons"]), column(docs, "primary", "tcspc_num_photons")
    )
    table, _ = _read_file(photon_file(docs))
    served = {key: np.asarray(run["photons"][key][:]) for key in PHOTON_KEYS}
    np.testing.assert_array_equal(served["tcspc_timestamps"], table.macrotime)
    np.testing.assert_array_equal(served["tcspc_nanotimes"], table.microtime)
    np.testing.assert_array_equal(served["tcspc_detectors"], table.channel)


# -- cv_scan ---------------------------------------------------------------------------------

CV = {"start": 0.0, "vertex": -1.0, "end": 0.0, "rate": 1.0, "cycles": 1}


@pytest.fixture(scope="module")
def cv_run(bench):
    bench.park(0.0)
    uid, docs = bench.run(cv_scan(bench.inst.tcspc, bench.inst.pot, **CV, collect_period=0.25))
    return uid, docs, bench.inst.pot.position, bench.inst.pot.mode.get()


def test_cv_scan_documents(cv_run, bench):
    _, docs, bias_after, mode_after = cv_run
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "cv_scan"
    assert start["plan_args"] == {
        "tcspc": repr(bench.inst.tcspc),
        "potentiostat": repr(bench.inst.pot),
        **CV,
        "readables": [],
        "collect_period": 0.25,
        "monitor_bias": True,
    }
    assert start["qd"] == _qd_block("pot", "continuous", None)
    assert start["sweep_duration_s"] == pytest.approx(2.0)
    assert {d["name"] for d in by_name(docs, "descriptor")} == {
        "primary",
        "photons",
        "pot_monitor",
        "pot_current_monitor",
    }
    assert stop_doc(docs)["exit_status"] == "success"
    # one marker, at the settled start bias
    np.testing.assert_allclose(column(docs, "primary", "pot"), [CV["start"]], atol=1e-9)
    assert bias_after == pytest.approx(0.0, abs=1e-9) and mode_after == "static"


def test_cv_scan_waveform_in_the_file_and_monitors(cv_run):
    _, docs, *_ = cv_run
    table, markers = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    _assert_markers_precede_their_rows(docs)
    bias, t_s = markers["bias_v"], markers["t_s"]
    # The IOC's ramp lands exactly on the vertex.
    assert bias.min() == CV["vertex"]
    # Time spent below -0.05 V: 2 * (1 - 0.05) / rate, within a ramp tick and a photon tick.
    below = t_s[bias < -0.05]
    assert below[-1] - below[0] == pytest.approx(1.9, abs=RAMP_TICK + TICK)
    # The descending branch is linear at -rate (least squares over the ramp's markers).
    i_vertex = int(np.argmin(bias))
    down = (t_s <= t_s[i_vertex]) & (bias < -0.05) & (bias > -0.95)
    slope = np.polyfit(t_s[down], bias[down], 1)[0]
    assert slope == pytest.approx(-CV["rate"], rel=0.05)
    # Photons throughout: the file runs past the end of the sweep.
    back = t_s[(t_s > t_s[i_vertex]) & (bias == CV["end"])][0]
    assert _times(table, markers)[-1] > back

    # The monitored readback spans the waveform. bluesky's monitor reads the signal when
    # notified (not the notified value), so under load it may skip a few ramp ticks, and
    # the vertex is held for no time at all: allow 5 ramp ticks at the sweep rate.
    readback = column(docs, "pot_monitor", "pot")
    assert readback.min() == pytest.approx(CV["vertex"], abs=CV["rate"] * 5 * RAMP_TICK)
    assert readback[-1] == pytest.approx(CV["end"], abs=1e-9)
    # The current is the double-layer charging current C dV/dt on both branches (the noise,
    # 2 nA rms, and the faradaic current at >= -1 V, < 1 nA, are far below 5 % of 4 uA).
    current = column(docs, "pot_current_monitor", "pot_current")
    charging = CellParameters().capacitance_f * CV["rate"]
    assert np.percentile(current, 5) == pytest.approx(-charging, rel=0.05)
    assert np.percentile(current, 95) == pytest.approx(charging, rel=0.05)


def test_cv_scan_in_the_catalog(cv_run, bench):
    uid, docs, *_ = cv_run
    run = bench.catalog.client[uid]
    np.testing.assert_array_equal(
        np.asarray(run["pot_monitor"].read()["pot"]), column(docs, "pot_monitor", "pot")
    )
    table, _ = _read_file(photon_file(docs))
    np.testing.assert_array_equal(
        np.asarray(run["photons"]["tcspc_timestamps"][:]), table.macrotime
    )
    assert (
        np.asarray(run["primary"].read()["tcspc_num_photons"]).tolist()
        == column(docs, "primary", "tcspc_num_photons").tolist()
    )


# -- bias_cycling ----------------------------------------------------------------------------


def test_bias_cycling_one_marker_per_cycle(bench):
    bench.park(0.0)
    cycles, vertex = 2, -0.5
    _, docs = bench.run(
        bias_cycling(
            bench.inst.tcspc, bench.inst.pot, cycles, vertex=vertex, rate=2.0, collect_period=0.2
        )
    )
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "bias_cycling" and start["num_points"] == cycles
    assert start["qd"] == _qd_block("pot", "continuous", None)
    assert stop_doc(docs)["exit_status"] == "success"
    np.testing.assert_allclose(column(docs, "primary", "pot"), [0.0] * cycles, atol=1e-9)
    index = column(docs, "primary", "tcspc_num_photons")
    _assert_markers_precede_their_rows(docs)

    table, markers = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    bias_of_row = file_bias_of_rows(markers, np.arange(len(table)))
    bounds = [*index, len(table)]
    for k in range(cycles):
        seg = bias_of_row[bounds[k] : bounds[k + 1]]
        # Each segment is one whole cycle: it starts at 0 V, reaches the vertex and is back at
        # 0 V at its end. The IOC's ramp lands on the vertex exactly (a marker says so); the
        # next leg's first tick follows within microseconds, so no photon need see it.
        assert seg[0] == 0.0 and seg[-1] == 0.0
        in_segment = (markers["photon_index"] >= bounds[k]) & (
            markers["photon_index"] <= bounds[k + 1]
        )
        assert markers["bias_v"][in_segment].min() == vertex
        assert seg.min() == pytest.approx(vertex, abs=2.0 * 0.02)  # one 20 ms tick at 2 V/s
        # ... and goes down only once: one run of photons below half the vertex.
        low = (seg < vertex / 2).astype(int)
        assert np.count_nonzero(np.diff(low) == 1) == 1


# -- g2_measurement --------------------------------------------------------------------------


def test_g2_measurement_at_a_bias(bench):
    bench.park(0.0)
    _, docs = bench.run(
        g2_measurement(bench.inst.tcspc, 1.0, potentiostat=bench.inst.pot, bias=-1.0)
    )
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "g2_measurement"
    assert start["qd"] == _qd_block("pot", "steps", [-1.0])
    np.testing.assert_allclose(column(docs, "primary", "pot"), [-1.0], atol=1e-9)
    table, markers = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    (index,) = column(docs, "primary", "tcspc_num_photons")
    t = _times(table, markers)
    # the segment lasts the duration (plus the last collect and the stop: one tick + latency)
    assert 1.0 - TICK - 0.01 <= t[-1] - t[index] <= 1.0 + TICK + LATENCY
    assert np.all(file_bias_of_rows(markers, np.arange(index, len(table))) == -1.0)
    assert bench.inst.pot.position == pytest.approx(0.0, abs=1e-9)


def test_g2_measurement_without_potentiostat(bench):
    _, docs = bench.run(g2_measurement(bench.inst.tcspc, 0.5))
    validate(docs)
    assert start_doc(docs)["qd"] == _qd_block(None, "steps", None)
    (marker,) = stream_events(docs, "primary")
    assert "pot" not in marker["data"] and "tcspc_num_photons" in marker["data"]
    table, _ = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))


# -- failures ----------------------------------------------------------------------------------


class FailingReadable(Signal):
    """A readable whose trigger fails from the ``fail_at``-th call on."""

    def __init__(self, *args, fail_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at, self.calls = fail_at, 0

    def trigger(self):
        self.calls += 1
        status = StatusBase()
        if self.calls >= self.fail_at:
            status.set_exception(RuntimeError("the extra detector broke"))
        else:
            status.set_finished()
        return status


def _new_run(bench, before):
    (uid,) = set(bench.recorder.runs) - before
    return bench.recorder.runs[uid]


def test_a_failure_mid_run_closes_the_file_and_restores_the_bias(bench):
    bench.park(-0.3)
    broken = FailingReadable(name="broken", value=1.0, fail_at=2)
    before = set(bench.recorder.runs)
    with pytest.raises(FailedStatus) as failed:
        bench.RE(
            bias_steps(bench.inst.tcspc, bench.inst.pot, [-0.5, -1.0], 0.5, readables=[broken])
        )
    assert "the extra detector broke" in str(failed.value.__cause__)
    docs = _new_run(bench, before)
    validate(docs)
    assert stop_doc(docs)["exit_status"] == "fail"
    assert len(stream_events(docs, "primary")) == 1  # the second marker failed
    # Every photon written is announced and the file is closed; the bias is back.
    table, _ = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    assert bench.inst.tcspc.acquiring.get(use_monitor=False) == 0
    assert bench.inst.pot.position == pytest.approx(-0.3, abs=1e-9)


def test_a_pause_aborts_the_cv_scan_stops_the_sweep_and_restores_the_bias(bench):
    bench.park(0.0)
    pot, tcspc = bench.inst.pot, bench.inst.tcspc
    before = set(bench.recorder.runs)

    def pause_after_marker(name, doc):
        # Ctrl-C half a second into the sweep (0.5 V/s: at about -0.25 V).
        if name == "event" and "tcspc_num_photons" in doc["data"]:
            threading.Timer(0.5, bench.RE.request_pause).start()

    token = bench.RE.subscribe(pause_after_marker)
    try:
        with pytest.raises(RunEngineInterrupted):
            bench.RE(cv_scan(tcspc, pot, 0.0, -1.0, 0.0, 0.5, 1, collect_period=0.2))
    finally:
        bench.RE.unsubscribe(token)
    docs = _new_run(bench, before)
    validate(docs)
    assert stop_doc(docs)["exit_status"] in ("fail", "abort")
    table, markers = _read_file(photon_file(docs))
    _assert_rows_tile_the_file(docs, len(table))
    # The sweep was stopped where it was (at 0.5 V/s, 0.5 s + latency: far from -1 V).
    assert -0.5 < markers["bias_v"].min() < -0.1
    assert pot.cv.running.get(use_monitor=False) == 0 and pot.busy.get(use_monitor=False) == 0
    assert tcspc.acquiring.get(use_monitor=False) == 0
    assert pot.position == pytest.approx(0.0, abs=1e-9)
