"""TimeHarp 260 library constants (TH260Lib v3.0 th260defin.h, errorcodes.h) and texts.

Shared by the Harp backend, its emulator and the simulated card (which reports the same
warnings and flags).
"""

from __future__ import annotations

MODE_T2, MODE_T3 = 2, 3
#: Records one ``TH260_ReadFiFo`` call may return (the buffer must hold this many).
TTREADMAX = 131072
SYNCDIV_RANGE = (1, 8)
#: CFD level and zero cross (TH 260 Pico), mV; edge trigger level (TH 260 Nano), mV.
CFD_LEVEL_RANGE_MV = (-1200, 0)
CFD_ZC_RANGE_MV = (-40, 0)
TRG_LEVEL_RANGE_MV = (-1200, 1200)
CHANNEL_OFFSET_RANGE_PS = (-99999, 99999)
HOLDOFF_RANGE_NS = (0, 25500)
DEAD_TIME_CODE_RANGE = (0, 7)
ACQ_TIME_MAX_MS = 360_000_000
#: T3 microtime field (dtime) of the HydraHarp-family records: 15 bits.
MAX_T3_BINS = 1 << 15

#: The card's settings: PV name -> (backend ``configure`` name, start value).
CARD_SETTINGS: dict[str, tuple[str, int | float]] = {
    "sync_divider": ("sync_divider", 1),
    "sync_level": ("sync_level_mv", -50.0),
    "sync_zero_cross": ("sync_zero_cross_mv", -10.0),
    "sync_offset": ("sync_offset_ps", 0.0),
    "input_level0": ("input_level0_mv", -50.0),
    "input_level1": ("input_level1_mv", -50.0),
    "input_zero_cross0": ("input_zero_cross0_mv", -10.0),
    "input_zero_cross1": ("input_zero_cross1_mv", -10.0),
    "input_offset0": ("input_offset0_ps", 0.0),
    "input_offset1": ("input_offset1_ps", 0.0),
    "input_enable0": ("input_enable0", 1),
    "input_enable1": ("input_enable1", 1),
    "dead_time0": ("dead_time0", 0),
    "dead_time1": ("dead_time1", 0),
    "marker_edges": ("marker_edges", 0xF),
    "marker_enable": ("marker_enable", 0xF),
    "marker_holdoff": ("marker_holdoff_ns", 0.0),
    "binning": ("binning", 0),
}

ERROR_NONE = 0
ERROR_DEVICE_OPEN_FAIL = -1
ERROR_DEVICE_NOT_OPEN = -10
ERROR_INSTANCE_RUNNING = -16
ERROR_INVALID_ARGUMENT = -17
ERROR_INVALID_MODE = -18
ERROR_NOT_INITIALIZED = -22
ERROR_UNSUPPORTED_FUNCTION = -80
ERROR_TEXTS = {
    ERROR_NONE: "no error",
    ERROR_DEVICE_OPEN_FAIL: "device open failed",
    ERROR_DEVICE_NOT_OPEN: "device not open",
    ERROR_INSTANCE_RUNNING: "instance running",
    ERROR_INVALID_ARGUMENT: "invalid argument",
    ERROR_INVALID_MODE: "invalid mode",
    ERROR_NOT_INITIALIZED: "not initialized",
    ERROR_UNSUPPORTED_FUNCTION: "unsupported function",
}

FLAG_OVERFLOW = 0x0001
FLAG_FIFOFULL = 0x0002
FLAG_SYNC_LOST = 0x0004
FLAG_EVTS_DROPPED = 0x0008
FLAG_SYSERROR = 0x0010
FLAG_SOFTERROR = 0x0020
FLAG_TEXTS = {
    FLAG_OVERFLOW: "histogram overflow",
    FLAG_FIFOFULL: "FIFO full (measurement stopped)",
    FLAG_SYNC_LOST: "sync lost",
    FLAG_EVTS_DROPPED: "events dropped (input rate too high)",
    FLAG_SYSERROR: "hardware error",
    FLAG_SOFTERROR: "software error",
}

WARNING_SYNC_RATE_ZERO = 0x0001
WARNING_SYNC_RATE_VERY_LOW = 0x0002
WARNING_SYNC_RATE_TOO_HIGH = 0x0004
WARNING_INPT_RATE_ZERO = 0x0010
WARNING_INPT_RATE_TOO_HIGH = 0x0040
WARNING_INPT_RATE_RATIO = 0x0100
WARNING_DIVIDER_GREATER_ONE = 0x0200
WARNING_TIME_SPAN_TOO_SMALL = 0x0400
WARNING_OFFSET_UNNECESSARY = 0x0800
WARNING_DIVIDER_TOO_SMALL = 0x1000
WARNING_COUNTS_DROPPED = 0x2000
WARNING_TEXTS = {
    WARNING_SYNC_RATE_ZERO: "sync rate is zero",
    WARNING_SYNC_RATE_VERY_LOW: "sync rate is very low",
    WARNING_SYNC_RATE_TOO_HIGH: "sync rate is too high",
    WARNING_INPT_RATE_ZERO: "an input rate is zero",
    WARNING_INPT_RATE_TOO_HIGH: "an input rate is too high",
    WARNING_INPT_RATE_RATIO: "input rate ratio too high",
    WARNING_DIVIDER_GREATER_ONE: "sync divider > 1 in T3",
    WARNING_TIME_SPAN_TOO_SMALL: "time span too small",
    WARNING_OFFSET_UNNECESSARY: "offset unnecessary",
    WARNING_DIVIDER_TOO_SMALL: "sync divider too small",
    WARNING_COUNTS_DROPPED: "counts dropped",
}


def bits_text(bits: int, texts: dict[int, str]) -> str:
    """The set bits of ``bits`` as ``"; "``-joined texts ("" when none)."""
    parts = [text for bit, text in texts.items() if bits & bit]
    rest = bits & ~sum(texts)
    if rest:
        parts.append(f"bits 0x{rest:x}")
    return "; ".join(parts)
