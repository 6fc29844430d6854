"""The IOCs on fault-injecting backends, in this process (no Channel Access, no subprocess).

A PVGroup reaches its instrument only through its backend, so a backend that fails on request
shows what the IOC does with a fault: an alarm on its status PV, one log line, a refused put,
and it keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import h5py
import pytest
from caproto import AlarmSeverity

from qd_bluesky.iocs import (
    BackendFault,
    FaultInjectingBackend,
    PotentiostatIOC,
    RefusedError,
    SimulatedPotentiostat,
    SimulatedSample,
    SimulatedTcspc,
    TcspcIOC,
)
from qd_bluesky.iocs._common import log_refusals_in_one_line


@pytest.fixture(scope="module")
def sample() -> SimulatedSample:
    return SimulatedSample(seed=3)


def test_compliance_trip_refuses_the_put_with_an_alarm(sample) -> None:
    backend = FaultInjectingBackend(SimulatedPotentiostat(sample))
    pot = PotentiostatIOC(prefix="t:pot:", backend=backend)

    async def scenario() -> None:
        await pot.bias.write(-0.2)
        assert pot.status.alarm.severity == AlarmSeverity.NO_ALARM
        backend.inject("apply_bias", "refuse", "compliance: 10 mA reached")
        with pytest.raises(RefusedError, match="compliance: 10 mA reached"):
            await pot.bias.write(-1.0)
        assert pot.status.value.startswith("fault: ") and "compliance" in pot.status.value
        assert pot.status.alarm.severity == AlarmSeverity.MAJOR_ALARM
        assert pot.busy.value == 0 and pot.bias_rbv.value == pytest.approx(-0.2)
        # Still serving: once the instrument works again, the next put clears the alarm.
        backend.clear()
        await pot.bias.write(-0.3)
        assert pot.bias_rbv.value == pytest.approx(-0.3)
        assert pot.status.alarm.severity == AlarmSeverity.NO_ALARM

    asyncio.run(scenario())


def test_card_that_stops_delivering_photons_closes_the_file(sample, tmp_path: Path, caplog):
    backend = FaultInjectingBackend(SimulatedTcspc(sample))
    tcspc = TcspcIOC(prefix="t:tcspc:", backend=backend, data_dir=tmp_path)

    async def scenario() -> None:
        await tcspc.acquire.write(1)
        await asyncio.sleep(0.2)
        await tcspc.poll()
        announced = tcspc.num_photons.value
        assert announced > 0
        backend.inject("read_photons", "raise", "FIFO read failed")
        with caplog.at_level(logging.WARNING, logger="qd_bluesky.iocs"):
            for _ in range(3):  # a fault is one line, not one per tick
                await tcspc.poll()
        assert tcspc.acquiring.value == 0 and tcspc.acquire.value == 0
        assert "FIFO read failed" in tcspc.error.value
        assert tcspc.error.alarm.severity == AlarmSeverity.MAJOR_ALARM
        lines = [r for r in caplog.records if r.name.startswith("qd_bluesky.iocs")]
        assert len(lines) == 1 and lines[0].exc_info is None
        assert "FIFO read failed" in lines[0].getMessage()
        # Closed intact, with every row it announced.
        with h5py.File(tcspc.file_path.value, "r") as f:
            assert f["photon_data/timestamps"].shape[0] == announced
        # A new acquisition is refused while the card fails, and works (alarm cleared) after.
        with pytest.raises(RefusedError, match="FIFO read failed"):
            await tcspc.acquire.write(1)
        backend.clear()
        await tcspc.acquire.write(1)
        assert tcspc.acquiring.value == 1
        assert tcspc.error.alarm.severity == AlarmSeverity.NO_ALARM
        await tcspc.acquire.write(0)

    asyncio.run(scenario())


def test_fault_kinds(sample) -> None:
    backend = FaultInjectingBackend(SimulatedPotentiostat(sample))
    backend.inject("read_current", "hang", "no answer", hang_s=0.01)
    backend.inject("bias_v", "raise", "serial port closed")
    with pytest.raises(TimeoutError, match="no answer"):
        backend.read_current()
    with pytest.raises(ConnectionError, match="serial port closed"):
        backend.bias_v  # noqa: B018 - a property that fails
    backend.clear("bias_v")
    assert backend.bias_v == sample.bias_v
    assert backend.hardware_range_v == (-5.0, 5.0)  # passed through
    with pytest.raises(ValueError, match="fault must be one of"):
        backend.inject("apply_bias", "explode")
    with pytest.raises(ValueError, match="no operation 'fly'"):
        backend.inject("fly", "refuse")
    assert issubclass(BackendFault, RuntimeError)


def test_refused_put_is_one_log_line(caplog) -> None:
    """caproto logs a failed put with ``log.exception``; a refusal becomes one warning."""
    log_refusals_in_one_line()
    circuit_log = logging.getLogger("caproto.circ")
    with caplog.at_level(logging.WARNING, logger="caproto.circ"):
        try:
            raise RefusedError("bias -3.000 V is outside the safe window", source="qd:pot:")
        except RefusedError:
            circuit_log.exception("Invalid write request by %s (%s): %r", "u", "h", "cmd")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "qd:pot: put refused: bias -3.000 V is outside the safe window"


def test_stage_fault_ends_the_move_with_a_record_alarm(sample) -> None:
    """A controller fault stops the motor record with a MAJOR alarm (``EpicsMotor`` fails the
    move on it) and the problem bit of ``.MSTA``; the next move clears both."""
    from qd_bluesky.iocs import SimulatedStage, StageIOC
    from qd_bluesky.iocs._stage import MSTA_DONE, MSTA_PROBLEM

    backend = FaultInjectingBackend(SimulatedStage(sample))
    stage = StageIOC(prefix="t:stage:", backend=backend)
    x = stage.x.motor
    fields = x.field_inst

    async def scenario() -> None:
        await x._server_startup(None)
        start = x.value
        assert fields.user_readback_value.value == pytest.approx(start)
        await x.write(start + 0.5)  # completes on arrival
        assert fields.user_readback_value.value == pytest.approx(start + 0.5)
        assert fields.done_moving_to_value.value == 1
        backend.inject("move_to", "refuse", "following error")
        await x.write(start + 1.0)
        assert fields.done_moving_to_value.value == 1 and fields.motor_is_moving.value == 0
        assert fields.user_readback_value.alarm.severity == AlarmSeverity.MAJOR_ALARM
        assert fields.motor_status.value & MSTA_PROBLEM
        assert x.value == pytest.approx(start + 0.5)  # VAL: where the axis is
        assert "following error" in stage.status.value
        backend.clear()
        await x.write(start)
        assert fields.user_readback_value.alarm.severity == AlarmSeverity.NO_ALARM
        assert fields.motor_status.value & (MSTA_PROBLEM | MSTA_DONE) == MSTA_DONE
        assert stage.status.alarm.severity == AlarmSeverity.NO_ALARM
        # A new target while moving takes over at once (VAL shows it); the first put ends.
        await fields.velocity.write(5.0)
        first = asyncio.create_task(x.write(start + 2.0))  # 0.4 s
        await asyncio.sleep(0.1)
        second = asyncio.create_task(x.write(start - 0.5))
        await first
        assert not second.done() and x.value == pytest.approx(start - 0.5)
        await second
        assert fields.user_readback_value.value == pytest.approx(start - 0.5)
        assert fields.done_moving_to_value.value == 1
        await fields.velocity.write(200.0)
        await x.write(start)
        # Beyond HLM: LVIO, no motion, VAL restored.
        await x.write(500.0)
        assert fields.limit_violation.value == 1 and x.value == pytest.approx(start)
        assert backend.position_um[0] == pytest.approx(start)

    asyncio.run(scenario())


def test_trigger_edges_become_the_cards_marker_records() -> None:
    """The potentiostat's trigger (a corner of a ramp, every switching edge) on the card's
    marker input: each edge once, filed in the sync period it falls in, none lost when the
    wave ends between two read-outs of the card."""
    now = [0.0]
    sample = SimulatedSample(seed=3, clock=lambda: now[0], card_sees_bias=False)
    pot, card = SimulatedPotentiostat(sample), SimulatedTcspc(sample)
    now[0] = 0.1
    card.read_photons()
    card.start_acquisition()
    now[0] = 0.12
    pot.apply_bias(-0.5, dbias_dt_v_per_s=-10.0)  # a ramp starts: an edge
    now[0] = 0.15
    pot.apply_bias(-1.0)  # ... and ends: an edge
    now[0] = 0.16
    block = card.read_photons()
    sync, _, channel = card.read_markers(block)
    assert sync.tolist() == [300_000, 375_000] and channel.tolist() == [1, 1]  # 2.5 MHz
    assert card.drain_bias_log() == []  # a card blind to the bias
    assert pot.start_switching(-1.0, 0.0, 1e-3, 10) == pytest.approx(0.01)
    edges = []
    for t in (0.1633, 0.1671):
        now[0] = t
        edges += card.read_markers(card.read_photons())[0].tolist()
    now[0] = 0.1749
    pot.stop_switching()  # the wave is over; its last edges are not read out yet
    pot.apply_bias(-1.0)
    now[0] = 0.2
    edges += card.read_markers(card.read_photons())[0].tolist()
    assert edges == [400_000 + 1250 * k for k in range(20)]  # 20 edges, half a period apart
