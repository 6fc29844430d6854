"""A stand-in for PicoQuant's TimeHarp 260 library (TH260Lib) that replays real recordings.

:class:`EmulatedTh260Lib` has the library's calling surface: the ``TH260_*`` function names,
plain ``int`` arguments, ``int`` error codes (0 or a negative ``TH260_ERROR_*``), out-parameters
passed with ``ctypes.byref`` and a ``unsigned int*`` FIFO buffer. The Harp backend
(:mod:`._harp`) cannot tell it from the real library loaded with ``ctypes.CDLL``, so the
Harp-backed IOC runs against it in CI exactly as against the card.

What the "card" sees is a PTU recording made on real hardware (HydraHarp-family T3, and
optionally T2), replayed in real time from each ``TH260_StartMeas`` (looped when it runs
out), plus marker edges at known periods on the marker inputs (the recordings have none).
The records in the FIFO are encoded afresh in the TimeHarp 260 format (HydraHarp v2 layout:
overflow records carry their count, markers are special records with the marker bits), after
the sync divider and the binning the caller set: photon ``(sync n, dtime d)`` of the recording
is ``(n // div, (d + (n % div) * period_bins) >> binning)``, dropped beyond the 15-bit dtime.
``fifo_full_after`` records after the start the FIFO fills: ``FLAG_FIFOFULL`` is raised, the
measurement stops and what the FIFO holds stays readable. Channel enable drops a channel's
photons; levels, offsets, dead time and hold-off are stored and read back only.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from . import _harp_codes as hc

#: Marker edges the emulated wiring puts on the marker inputs: (input 1-4, period s).
DEFAULT_MARKERS: tuple[tuple[int, float], ...] = ((1, 0.05), (2, 0.2))
_RATE_GATE_S = 0.1  # the card's rate meters count over 100 ms


@numba.njit(cache=True)
def _encode(times, low, code, special, time_bits, state):  # pragma: no cover - numba
    """HydraHarp-v2-layout records of events sorted by time, overflow records inserted.

    ``state[0]`` is the wrap count already emitted (carried across calls).
    """
    mask = (1 << time_bits) - 1
    max_count = mask  # an overflow record carries up to this many wraps
    wrap = state[0]
    n_extra = 0
    for i in range(times.size):
        w = times[i] >> time_bits
        if w > wrap:
            n_extra += (w - wrap + max_count - 1) // max_count
            wrap = w
    out = np.empty(times.size + n_extra, dtype=np.uint32)
    wrap = state[0]
    j = 0
    for i in range(times.size):
        w = times[i] >> time_bits
        while w > wrap:
            k = min(w - wrap, max_count)
            out[j] = np.uint32((1 << 31) | (63 << 25) | k)
            wrap += k
            j += 1
        rec = (special[i] << 31) | (code[i] << 25) | (low[i] << time_bits) | (times[i] & mask)
        out[j] = np.uint32(rec)
        j += 1
    state[0] = wrap
    return out


class _Recording:
    """The photons of one PTU recording, as the card's input sees them (looped)."""

    def __init__(self, path: Path) -> None:
        from qd_bluesky.analysis import read_photons

        table = read_photons(path)
        self.mode = table.mode
        self.macrotime = table.macrotime - table.macrotime[0] if len(table) else table.macrotime
        self.microtime = table.microtime
        self.channel = table.channel
        self.unit_s = table.macrotime_unit_s  # T3: sync period; T2: tick
        self.resolution_s = table.microtime_unit_s or table.macrotime_unit_s
        self.span = int(self.macrotime[-1]) + 1 if len(table) else 1
        self.period_bins = round(table.macrotime_unit_s / self.resolution_s)

    def window(self, start: int, stop: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Indices (into the looped recording) of photons with time in ``[start, stop)``, and
        their absolute times."""
        idx, times = [], []
        for loop in range(start // self.span, (stop - 1) // self.span + 1 if stop > start else 0):
            base = loop * self.span
            lo = np.searchsorted(self.macrotime, max(start - base, 0), side="left")
            hi = np.searchsorted(self.macrotime, min(stop - base, self.span), side="left")
            idx.append(np.arange(lo, hi))
            times.append(self.macrotime[lo:hi] + base)
        if not idx:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(idx), np.concatenate(times)


class EmulatedTh260Lib:
    """TH260Lib with one TimeHarp 260 that replays recordings (see the module docstring).

    Parameters
    ----------
    t3_recording
        PTU recording (HydraHarp-family T3) replayed in T3 mode; 1 / its sync period is the
        sync rate.
    t2_recording
        PTU recording replayed in T2 mode (None: T2 replays nothing).
    markers
        (marker input 1-4, period s) of the edges wired to the marker inputs.
    fifo_full_after
        The FIFO fills after this many records of a measurement (None: never).
    clock
        Seconds, monotonic.
    model
        What ``TH260_GetHardwareInfo`` says.
    """

    def __init__(
        self,
        t3_recording: str | Path,
        t2_recording: str | Path | None = None,
        *,
        markers: Sequence[tuple[int, float]] = DEFAULT_MARKERS,
        fifo_full_after: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        model: str = "TimeHarp 260 P",
    ) -> None:
        self._rec = {"T3": _Recording(Path(t3_recording))}
        if t2_recording is not None:
            self._rec["T2"] = _Recording(Path(t2_recording))
        self._markers = tuple((int(c), float(p)) for c, p in markers)
        self.fifo_full_after = fifo_full_after
        self._clock = clock
        self.model = model
        self._open = False
        self._mode: str | None = None
        self._t0 = clock()
        self.settings: dict[str, Any] = {
            "sync_div": 1,
            "binning": 0,
            "enable": [1, 1],
            "marker_enable": [0, 0, 0, 0],
            "marker_edges": [1, 1, 1, 1],
            "holdoff_ns": 0,
        }
        self._measuring = False
        self._flags = 0

    # -- the library's surface ------------------------------------------------------------

    def TH260_GetLibraryVersion(self, version) -> int:  # noqa: N802 - the library's names
        version.value = b"3.0"
        return hc.ERROR_NONE

    def TH260_GetErrorString(self, errstring, errcode) -> int:  # noqa: N802
        errstring.value = hc.ERROR_TEXTS.get(int(errcode), "unknown error").encode()
        return hc.ERROR_NONE

    def TH260_OpenDevice(self, devidx, serial) -> int:  # noqa: N802
        if int(devidx) != 0:
            return hc.ERROR_DEVICE_OPEN_FAIL
        self._open = True
        serial.value = b"EMU00001"
        return hc.ERROR_NONE

    def TH260_CloseDevice(self, devidx) -> int:  # noqa: N802
        self._open = self._measuring = False
        return hc.ERROR_NONE

    def TH260_Initialize(self, devidx, mode) -> int:  # noqa: N802
        if not self._open:
            return hc.ERROR_DEVICE_NOT_OPEN
        names = {hc.MODE_T2: "T2", hc.MODE_T3: "T3"}
        if int(mode) not in names:
            return hc.ERROR_INVALID_MODE
        self._mode = names[int(mode)]
        self._measuring = False
        return hc.ERROR_NONE

    def TH260_GetHardwareInfo(self, devidx, model, partno, version) -> int:  # noqa: N802
        model.value, partno.value, version.value = self.model.encode(), b"EMU", b"1.0"
        return self._ready()

    def TH260_GetNumOfInputChannels(self, devidx, nchannels) -> int:  # noqa: N802
        _out(nchannels, 2)
        return self._ready()

    def TH260_GetBaseResolution(self, devidx, resolution, binsteps) -> int:  # noqa: N802
        _out(resolution, self._base_resolution_s() * 1e12)
        _out(binsteps, 22)
        return self._ready()

    def TH260_GetResolution(self, devidx, resolution) -> int:  # noqa: N802
        shift = self.settings["binning"] if self._mode == "T3" else 0
        _out(resolution, self._base_resolution_s() * 2**shift * 1e12)
        return self._ready()

    def TH260_SetSyncDiv(self, devidx, div) -> int:  # noqa: N802
        return self._set("sync_div", int(div), hc.SYNCDIV_RANGE)

    def TH260_SetBinning(self, devidx, binning) -> int:  # noqa: N802
        return self._set("binning", int(binning), (0, 21))

    def TH260_SetSyncCFD(self, devidx, level, zc) -> int:  # noqa: N802
        return self._set("sync_cfd", (int(level), int(zc)))

    def TH260_SetSyncEdgeTrg(self, devidx, level, edge) -> int:  # noqa: N802
        return self._set("sync_edge", (int(level), int(edge)))

    def TH260_SetSyncChannelOffset(self, devidx, value) -> int:  # noqa: N802
        return self._set("sync_offset_ps", int(value), hc.CHANNEL_OFFSET_RANGE_PS)

    def TH260_SetInputCFD(self, devidx, channel, level, zc) -> int:  # noqa: N802
        return self._set(f"input_cfd{int(channel)}", (int(level), int(zc)), channel=channel)

    def TH260_SetInputEdgeTrg(self, devidx, channel, level, edge) -> int:  # noqa: N802
        return self._set(f"input_edge{int(channel)}", (int(level), int(edge)), channel=channel)

    def TH260_SetInputChannelOffset(self, devidx, channel, value) -> int:  # noqa: N802
        rc = self._set(f"input_offset_ps{int(channel)}", int(value), hc.CHANNEL_OFFSET_RANGE_PS)
        return rc or self._channel_ok(channel)

    def TH260_SetInputDeadTime(self, devidx, channel, tdcode) -> int:  # noqa: N802
        rc = self._set(f"dead_time{int(channel)}", int(tdcode), hc.DEAD_TIME_CODE_RANGE)
        return rc or self._channel_ok(channel)

    def TH260_SetInputChannelEnable(self, devidx, channel, enable) -> int:  # noqa: N802
        if rc := self._channel_ok(channel) or self._ready():
            return rc
        self.settings["enable"][int(channel)] = 1 if int(enable) else 0
        return hc.ERROR_NONE

    def TH260_SetMarkerEdges(self, devidx, me1, me2, me3, me4) -> int:  # noqa: N802
        return self._set("marker_edges", [int(v) for v in (me1, me2, me3, me4)])

    def TH260_SetMarkerEnable(self, devidx, en1, en2, en3, en4) -> int:  # noqa: N802
        return self._set("marker_enable", [int(v) for v in (en1, en2, en3, en4)])

    def TH260_SetMarkerHoldoffTime(self, devidx, holdofftime) -> int:  # noqa: N802
        return self._set("holdoff_ns", int(holdofftime), hc.HOLDOFF_RANGE_NS)

    def TH260_GetSyncRate(self, devidx, syncrate) -> int:  # noqa: N802
        _out(syncrate, round(1.0 / self._rec["T3"].unit_s))
        return self._ready()

    def TH260_GetCountRate(self, devidx, channel, cntrate) -> int:  # noqa: N802
        if rc := self._channel_ok(channel) or self._ready():
            return rc
        _out(cntrate, self._count_rate(int(channel)))
        return hc.ERROR_NONE

    def TH260_GetWarnings(self, devidx, warnings) -> int:  # noqa: N802
        bits = 0
        if self._mode == "T3" and self.settings["sync_div"] > 1:
            bits |= hc.WARNING_DIVIDER_GREATER_ONE
        if any(en and not self._count_rate(ch) for ch, en in enumerate(self.settings["enable"])):
            bits |= hc.WARNING_INPT_RATE_ZERO
        _out(warnings, bits)
        return self._ready()

    def TH260_GetFlags(self, devidx, flags) -> int:  # noqa: N802
        self._fill_fifo()
        _out(flags, self._flags)
        return self._ready()

    def TH260_StartMeas(self, devidx, tacq) -> int:  # noqa: N802
        if rc := self._ready():
            return rc
        if not 1 <= int(tacq) <= hc.ACQ_TIME_MAX_MS:
            return hc.ERROR_INVALID_ARGUMENT
        self._measuring = True
        self._flags = 0
        self._meas_t0 = self._clock()
        self._tacq_s = int(tacq) / 1000.0
        self._generated = 0  # recording time units (sync periods / ticks) put in the FIFO
        self._records = 0
        self._wrap_state = np.zeros(1, dtype=np.int64)
        self._fifo: list[NDArray[np.uint32]] = []
        return hc.ERROR_NONE

    def TH260_StopMeas(self, devidx) -> int:  # noqa: N802
        if self._measuring:
            self._fill_fifo()
        self._measuring = False
        return self._ready()

    def TH260_CTCStatus(self, devidx, ctcstatus) -> int:  # noqa: N802
        done = not self._measuring or self._clock() - self._meas_t0 >= self._tacq_s
        _out(ctcstatus, 1 if done else 0)
        return self._ready()

    def TH260_ReadFiFo(self, devidx, buffer, count, nactual) -> int:  # noqa: N802
        if rc := self._ready():
            return rc
        if int(count) < 128:
            return hc.ERROR_INVALID_ARGUMENT
        self._fill_fifo()
        fifo = getattr(self, "_fifo", [])
        pending = np.concatenate(fifo) if fifo else np.empty(0, np.uint32)
        n = min(int(count), pending.size)
        if n:
            np.ctypeslib.as_array(buffer, shape=(int(count),))[:n] = pending[:n]
        self._fifo = [pending[n:]] if pending.size > n else []
        _out(nactual, n)
        return hc.ERROR_NONE

    # -- the replay -----------------------------------------------------------------------

    def _ready(self) -> int:
        if not self._open:
            return hc.ERROR_DEVICE_NOT_OPEN
        return hc.ERROR_NONE if self._mode else hc.ERROR_NOT_INITIALIZED

    def _channel_ok(self, channel) -> int:
        return hc.ERROR_NONE if 0 <= int(channel) < 2 else hc.ERROR_INVALID_ARGUMENT

    def _set(self, name: str, value, bounds: tuple[int, int] | None = None, channel=0) -> int:
        if rc := self._ready() or self._channel_ok(channel):
            return rc
        if self._measuring and name in ("sync_div", "binning"):
            return hc.ERROR_INSTANCE_RUNNING
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            return hc.ERROR_INVALID_ARGUMENT
        self.settings[name] = value
        return hc.ERROR_NONE

    def _base_resolution_s(self) -> float:
        return self._rec[self._mode or "T3"].resolution_s

    def _count_rate(self, channel: int) -> int:
        """Photons of ``channel`` in the last whole 100 ms gate, per second."""
        rec = self._rec.get(self._mode or "T3", self._rec["T3"])
        if not self.settings["enable"][channel]:
            return 0
        gate = int((self._clock() - self._t0) / _RATE_GATE_S)
        start = round(max(gate - 1, 0) * _RATE_GATE_S / rec.unit_s)
        stop = round(gate * _RATE_GATE_S / rec.unit_s) if gate else 0
        idx, _ = rec.window(start, stop)
        return int(np.count_nonzero(rec.channel[idx] == channel) / _RATE_GATE_S)

    def _fill_fifo(self) -> None:
        """Put the records of the photons and markers since the last fill into the FIFO."""
        if not self._measuring:
            return
        rec = self._rec.get(self._mode or "T3")
        elapsed = min(self._clock() - self._meas_t0, self._tacq_s)
        stop = int(elapsed / rec.unit_s) if rec is not None else 0
        if rec is None or stop <= self._generated:
            return
        idx, times = rec.window(self._generated, stop)
        channel = rec.channel[idx]
        micro = rec.microtime[idx].astype(np.int64)
        keep = np.asarray(self.settings["enable"], dtype=bool)[np.minimum(channel, 1)]
        marker_t, marker_bits = self._marker_edges(rec, self._generated, stop)
        if self._mode == "T3":
            div, shift = int(self.settings["sync_div"]), int(self.settings["binning"])
            micro = (micro + (times % div) * rec.period_bins) >> shift
            keep &= micro < hc.MAX_T3_BINS
            times, marker_t = times // div, marker_t // div
            time_bits = 10
        else:
            micro[:] = 0
            time_bits = 25
        times, micro, channel = times[keep], micro[keep], channel[keep].astype(np.int64)
        all_t = np.concatenate([times, marker_t])
        order = np.argsort(all_t, kind="stable")
        records = _encode(
            all_t[order],
            np.concatenate([micro, np.zeros(marker_t.size, np.int64)])[order],
            np.concatenate([channel, marker_bits])[order],
            np.concatenate([np.zeros(times.size, np.int64), np.ones(marker_t.size, np.int64)])[
                order
            ],
            time_bits,
            self._wrap_state,
        )
        self._generated = stop
        if self.fifo_full_after is not None and self._records + records.size >= int(
            self.fifo_full_after
        ):
            records = records[: max(int(self.fifo_full_after) - self._records, 0)]
            self._flags |= hc.FLAG_FIFOFULL
            self._measuring = False  # a full FIFO ends the card's measurement
        self._records += records.size
        self._fifo.append(records)

    def _marker_edges(self, rec: _Recording, start: int, stop: int):
        """Times (recording units) and marker bits of the enabled marker edges in the span."""
        times, bits = [], []
        for channel, period_s in self._markers:
            if not self.settings["marker_enable"][channel - 1]:
                continue
            step = max(round(period_s / rec.unit_s), 1)
            first = -(-max(start, 1) // step) * step
            t = np.arange(first, stop, step, dtype=np.int64)
            times.append(t)
            bits.append(np.full(t.size, 1 << (channel - 1), dtype=np.int64))
        if not times:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(times), np.concatenate(bits)


def _out(ref, value) -> None:
    """Write an out-parameter passed as ``ctypes.byref(x)`` (or as ``x`` itself)."""
    target = getattr(ref, "_obj", ref)
    if isinstance(target, ctypes._SimpleCData):
        target.value = value
    else:
        raise TypeError(f"out-parameter must be ctypes.byref(...), got {type(ref).__name__}")
