"""The TimeHarp 260 backend on the TH260Lib emulator, without an IOC (a stepped clock).

The emulator replays a real HydraHarp T3 recording (tests/data) from each start; so every
photon the backend decodes from the FIFO is known: the recording's, as ``read_photons``
decodes the PTU file.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis import read_photons
from qd_bluesky.analysis._records import HYDRAHARP_V2_T3, RecordStream, decode_records
from qd_bluesky.iocs import BackendFault
from qd_bluesky.iocs import _harp_codes as hc
from qd_bluesky.iocs._harp import HarpTcspc, Th260Library
from qd_bluesky.iocs._harp_emulator import EmulatedTh260Lib

DATA = Path(__file__).resolve().parents[2] / "data"
T3_PTU = DATA / "hydraharp_v20_t3.ptu"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def recording():
    table = read_photons(T3_PTU)
    return table, table.macrotime - table.macrotime[0]


def _card(clock, **kwargs) -> tuple[EmulatedTh260Lib, HarpTcspc]:
    emulator = EmulatedTh260Lib(T3_PTU, clock=clock, **kwargs)
    return emulator, HarpTcspc(Th260Library(emulator), clock=clock)


def _run(card: HarpTcspc, clock: Clock, seconds: float, tick: float = 0.05):
    card.start_acquisition()
    blocks = []
    for _ in range(round(seconds / tick)):
        clock.t += tick
        blocks.append(card.read_photons())
        if blocks[-1].fifo_full:
            break
    card.stop_acquisition()
    return blocks


def _cat(blocks, name):
    return np.concatenate([getattr(b, name) for b in blocks])


def test_record_stream_decodes_chunks_as_one_pass():
    raw = np.fromfile(T3_PTU, dtype="<u4")[-100_000:]  # records only, past the header
    whole = decode_records(raw, HYDRAHARP_V2_T3)
    stream = RecordStream(HYDRAHARP_V2_T3)
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(raw.size, 40, replace=False))
    parts = [stream.decode(chunk) for chunk in np.split(raw, cuts)]
    np.testing.assert_array_equal(np.concatenate([p.macrotime for p in parts]), whole.macrotime)
    np.testing.assert_array_equal(np.concatenate([p.microtime for p in parts]), whole.microtime)
    np.testing.assert_array_equal(np.concatenate([p.channel for p in parts]), whole.channel)


def test_fifo_records_decode_to_the_recordings_photons_and_markers(recording):
    table, sync = recording
    clock = Clock()
    _, card = _card(clock)
    blocks = _run(card, clock, 1.0)
    macro, micro, chan = (_cat(blocks, n) for n in ("macrotime", "microtime", "channel"))
    n = macro.size
    # 1 s of the recording: every photon up to 1 s, decoded exactly (overflows unwrapped).
    assert n == np.searchsorted(sync, round(1.0 / table.macrotime_unit_s))
    np.testing.assert_array_equal(macro, sync[:n])
    np.testing.assert_array_equal(micro, table.microtime[:n])
    np.testing.assert_array_equal(chan, table.channel[:n])
    # Marker inputs 1 (50 ms) and 2 (200 ms), one row per input that fired.
    ts, ch = _cat(blocks, "marker_timestamp"), _cat(blocks, "marker_channel")
    for channel, period_s in ((1, 0.05), (2, 0.2)):
        step = round(period_s / table.macrotime_unit_s)
        got = ts[ch == channel]
        np.testing.assert_array_equal(got, step * np.arange(1, got.size + 1))
        assert got.size == round(1.0 / period_s) - 1  # the edge at exactly 1 s is not in yet


def test_divider_and_binning_change_the_time_base(recording):
    table, sync = recording
    period_bins = round(table.macrotime_unit_s / table.microtime_unit_s)
    clock = Clock()
    _, card = _card(clock)
    card.configure("sync_divider", 4)
    card.configure("binning", 1)
    blocks = _run(card, clock, 0.3)
    assert blocks[0].sync_divider == 4
    assert blocks[0].microtime_unit_s == pytest.approx(2 * table.microtime_unit_s, rel=1e-6)
    assert blocks[0].rep_rate_hz == pytest.approx(0.25 / table.macrotime_unit_s, rel=1e-5)
    macro, micro = _cat(blocks, "macrotime"), _cat(blocks, "microtime")
    n = macro.size
    np.testing.assert_array_equal(macro, sync[:n] // 4)
    np.testing.assert_array_equal(micro, (table.microtime[:n] + (sync[:n] % 4) * period_bins) >> 1)


def test_a_full_fifo_stops_the_card_and_hands_over_everything_it_held(recording):
    table, sync = recording
    clock = Clock()
    emulator, card = _card(clock, fifo_full_after=5000)
    # One long wait: the FIFO holds more than one read; the backend drains it all.
    card.start_acquisition()
    clock.t += 5.0
    block = card.read_photons()
    assert block.fifo_full
    n = block.macrotime.size
    assert 2000 < n < 5000
    np.testing.assert_array_equal(block.macrotime, sync[:n])
    # The card stopped: nothing more arrives, the flag says so.
    clock.t += 1.0
    assert card.read_photons().macrotime.size == 0
    assert card.status_bits()[1] & hc.FLAG_FIFOFULL


def test_library_errors_name_the_function_and_the_reason():
    clock = Clock()
    _, card = _card(clock)
    with pytest.raises(BackendFault, match=r"TH260_SetSyncDiv failed: invalid argument \(-17\)"):
        card.configure("sync_divider", 9)
    card.start_acquisition()
    with pytest.raises(BackendFault, match="TH260_SetSyncDiv failed: instance running"):
        card.configure("sync_divider", 2)
    card.stop_acquisition()
    # The out-parameters take ctypes.byref, as the real library's pointers do.
    lib = EmulatedTh260Lib(T3_PTU, clock=clock)
    with pytest.raises(TypeError, match="byref"):
        lib.TH260_OpenDevice(0, ctypes.create_string_buffer(8))
        lib.TH260_Initialize(0, hc.MODE_T3)
        lib.TH260_GetSyncRate(0, 5)


def test_rate_meters_count_the_recording_over_100_ms(recording):
    table, sync = recording
    clock = Clock()
    _, card = _card(clock)
    clock.t = 0.55  # the meters show the gate [0.4, 0.5) s of the replay
    sync_rate, rates = card.count_rates()
    assert sync_rate == round(1.0 / table.macrotime_unit_s)
    lo, hi = (round(t / table.macrotime_unit_s) for t in (0.4, 0.5))
    window = slice(np.searchsorted(sync, lo), np.searchsorted(sync, hi))
    expected = [np.count_nonzero(table.channel[window] == ch) / 0.1 for ch in (0, 1)]
    assert rates == pytest.approx(expected)
    assert card.microtime_bins == 3125  # whole 64 ps bins within the 200.0016 ns period


def test_the_fifo_holds_overflow_records_of_many_wraps_and_markers():
    clock = Clock()
    lib = EmulatedTh260Lib(T3_PTU, clock=clock)
    serial = ctypes.create_string_buffer(8)
    assert lib.TH260_OpenDevice(0, serial) == 0 and lib.TH260_Initialize(0, hc.MODE_T3) == 0
    assert lib.TH260_SetMarkerEnable(0, 1, 1, 0, 0) == 0
    assert lib.TH260_StartMeas(0, 10_000) == 0
    clock.t = 0.5
    buffer = np.zeros(hc.TTREADMAX, dtype=np.uint32)
    got = ctypes.c_int()
    pointer = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint))
    assert lib.TH260_ReadFiFo(0, pointer, hc.TTREADMAX, ctypes.byref(got)) == 0
    raw = buffer[: got.value].astype(np.int64)
    special, code = raw >> 31, (raw >> 25) & 0x3F
    overflow = (special == 1) & (code == 63)
    # At 5 MHz the 10-bit sync field wraps every 205 us, the photons come every ~130 us: an
    # overflow record most gaps, some carrying several wraps (the v2 layout's count).
    assert overflow.sum() > 0.3 * (special == 0).sum()
    assert ((raw & 0x3FF)[overflow] > 1).any()
    assert set(code[(special == 1) & ~overflow]) == {1, 2}  # marker inputs 1 and 2
    # Wrong calls answer with the library's error codes.
    assert lib.TH260_ReadFiFo(0, pointer, 64, ctypes.byref(got)) == hc.ERROR_INVALID_ARGUMENT
    assert lib.TH260_SetSyncDiv(0, 2) == hc.ERROR_INSTANCE_RUNNING
    assert lib.TH260_Initialize(0, 1) == hc.ERROR_INVALID_MODE
