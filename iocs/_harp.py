"""The PicoQuant TimeHarp 260 behind the TCSPC IOC: TH260Lib through ctypes.

:class:`Th260Library` calls the vendor library (``libth260.so`` / ``th260lib64.dll``, or the
emulator of :mod:`._harp_emulator`) and turns a negative return code into a
:class:`~._backends.BackendFault` that names the function and the library's error text.
:class:`HarpTcspc` is the :class:`~._backends.TcspcBackend` on it: it streams the FIFO's T3
(or T2) records through the package's numba record decoder
(:class:`qd_bluesky.analysis._records.RecordStream`, overflow records unwrapped across reads),
hands the marker records on with the photons, and says when the card's FIFO filled up.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _harp_codes as hc
from ._backends import BackendFault

logger = logging.getLogger(__name__)

#: Library file names tried when none is given (PicoQuant's installers' names).
DEFAULT_LIBRARIES = (
    ("th260lib64.dll", "th260lib.dll") if sys.platform == "win32" else ("libth260.so",)
)
#: What the IOC prints once it serves.
READY_LINE = "qd-bluesky tcspc: serving a TimeHarp 260"
#: Reads of a full buffer in one ``read_photons`` call before the rest waits for the next tick.
MAX_READS_PER_CALL = 64


class Th260Library:
    """TH260Lib's functions, each raising :class:`BackendFault` on a negative return code.

    Parameters
    ----------
    lib
        The loaded library (``ctypes.CDLL``) or an object with the same ``TH260_*`` functions.
    """

    def __init__(self, lib: Any) -> None:
        self._lib = lib

    @classmethod
    def load(cls, path: str | None = None) -> Th260Library:
        """Load TH260Lib from ``path`` (default: the system's ``libth260.so``).

        Raises
        ------
        BackendFault
            The library cannot be loaded.
        """
        names = (path,) if path else DEFAULT_LIBRARIES
        errors = []
        for name in names:
            try:
                return cls(ctypes.CDLL(name))
            except OSError as exc:
                errors.append(f"{name}: {exc}")
        raise BackendFault(f"cannot load the TimeHarp 260 library ({'; '.join(errors)})")

    def __call__(self, name: str, *args: Any) -> None:
        rc = getattr(self._lib, f"TH260_{name}")(*args)
        if rc < 0:
            text = ctypes.create_string_buffer(40)
            self._lib.TH260_GetErrorString(text, rc)
            raise BackendFault(f"TH260_{name} failed: {text.value.decode(errors='replace')} ({rc})")

    def get_int(self, name: str, *args: Any) -> int:
        out = ctypes.c_int()
        self(name, *args, ctypes.byref(out))
        return int(out.value)

    def get_double(self, name: str, *args: Any) -> float:
        out = ctypes.c_double()
        self(name, *args, ctypes.byref(out))
        return float(out.value)


@dataclass
class HarpBlock:
    """A :class:`~._backends.PhotonBlock` read from the card's FIFO.

    In T3 ``macrotime`` counts the divided syncs since the start, ``rep_rate_hz`` is their rate
    (sync rate / divider); in T2 (``t2_ticks``) ``macrotime`` is the time tag in ticks of
    ``microtime_unit_s`` and ``microtime`` is zero.
    """

    macrotime: NDArray[np.int64]
    microtime: NDArray[np.uint16]
    channel: NDArray[np.uint8]
    t_start_s: float
    t_stop_s: float
    sync_start: int
    sync_stop: int
    rep_rate_hz: float
    microtime_unit_s: float
    sync_divider: int = 1
    t2_ticks: bool = False
    #: (timestamp in macrotime units, marker input 1-4) of the marker records
    marker_timestamp: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    marker_channel: NDArray[np.uint8] = field(default_factory=lambda: np.empty(0, np.uint8))
    #: the FIFO filled up: the card stopped the measurement after these photons
    fifo_full: bool = False


#: Settings of the card and their start values (``binning`` is kept apart: T3 only).
DEFAULT_SETTINGS: dict[str, Any] = {
    name: value for name, value in hc.CARD_SETTINGS.values() if name != "binning"
}


class HarpTcspc:
    """:class:`~._backends.TcspcBackend` on a TimeHarp 260 (Pico or Nano).

    The card does not see the laser's interlock nor the bias: ``interlock_open`` is False
    and ``sees_bias`` is False (the bias timing comes in on a marker input, as marker
    records). A measurement runs while the IOC acquires; between acquisitions only the card's
    rate meters count.

    Parameters
    ----------
    library
        The TH260Lib functions.
    device_index
        Which card (0-3).
    clock
        Seconds, monotonic.
    """

    sees_bias = False
    #: The card drops what its FIFO cannot take and says so in its flags: no overrun model.
    reports_overruns = True

    def __init__(
        self,
        library: Th260Library,
        device_index: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from qd_bluesky.analysis._records import HYDRAHARP_V2_T2, HYDRAHARP_V2_T3

        self.lib = library
        self.dev = int(device_index)
        self._clock = clock
        self._layouts = {"T2": HYDRAHARP_V2_T2, "T3": HYDRAHARP_V2_T3}
        serial = ctypes.create_string_buffer(8)
        self.lib("OpenDevice", self.dev, serial)
        self.serial = serial.value.decode(errors="replace")
        self.settings = dict(DEFAULT_SETTINGS)
        self._binning = 0
        self.model = ""
        self._initialize("T3")
        self._buffer = np.zeros(hc.TTREADMAX, dtype=np.uint32)
        self._measuring = self._started = False
        self._sync_rate = 0.0
        self._last = clock()

    # -- configuration --------------------------------------------------------------------

    def _initialize(self, mode: str) -> None:
        self.lib("Initialize", self.dev, hc.MODE_T3 if mode == "T3" else hc.MODE_T2)
        self.mode = mode
        if not self.model:  # the library answers this only after an Initialize
            model, part, version = (ctypes.create_string_buffer(16) for _ in range(3))
            self.lib("GetHardwareInfo", self.dev, model, part, version)
            self.model = model.value.decode(errors="replace")
        res, steps = ctypes.c_double(), ctypes.c_int()
        self.lib("GetBaseResolution", self.dev, ctypes.byref(res), ctypes.byref(steps))
        self._base_s = res.value * 1e-12
        for name, value in self.settings.items():
            self._apply(name, value)
        self.lib("SetBinning", self.dev, self._binning if mode == "T3" else 0)

    def configure(self, name: str, value: Any) -> None:
        """Apply one setting of :data:`DEFAULT_SETTINGS`, or ``mode`` (T2/T3), or ``binning``.

        Raises
        ------
        BackendFault
            The card refused it (out of range, or measuring).
        """
        if name == "mode":
            self._initialize(str(value))
        elif name == "binning":
            if self.mode == "T3":
                self.lib("SetBinning", self.dev, int(value))
            self._binning = int(value)
        else:
            self._apply(name, value)
            self.settings[name] = value

    def _apply(self, name: str, value: Any) -> None:
        d, lib = self.dev, self.lib
        s = {**self.settings, name: value}
        if name == "sync_divider":
            lib("SetSyncDiv", d, int(value))
        elif name.startswith("sync_level") or name.startswith("sync_zero"):
            if self._nano_model():
                lib("SetSyncEdgeTrg", d, round(s["sync_level_mv"]), 0)
            else:
                lib("SetSyncCFD", d, round(s["sync_level_mv"]), round(s["sync_zero_cross_mv"]))
        elif name == "sync_offset_ps":
            lib("SetSyncChannelOffset", d, round(value))
        elif name.startswith("input_level") or name.startswith("input_zero"):
            ch = int(name[-4]) if name.endswith("_mv") else 0
            level, zc = s[f"input_level{ch}_mv"], s[f"input_zero_cross{ch}_mv"]
            if self._nano_model():
                lib("SetInputEdgeTrg", d, ch, round(level), 0)
            else:
                lib("SetInputCFD", d, ch, round(level), round(zc))
        elif name.startswith("input_offset"):
            lib("SetInputChannelOffset", d, int(name[12]), round(value))
        elif name.startswith("input_enable"):
            lib("SetInputChannelEnable", d, int(name[-1]), int(bool(value)))
        elif name.startswith("dead_time"):
            if not self._nano_model():
                lib("SetInputDeadTime", d, int(name[-1]), int(value))
        elif name == "marker_edges":
            lib("SetMarkerEdges", d, *((int(value) >> k) & 1 for k in range(4)))
        elif name == "marker_enable":
            lib("SetMarkerEnable", d, *((int(value) >> k) & 1 for k in range(4)))
        elif name == "marker_holdoff_ns":
            lib("SetMarkerHoldoffTime", d, int(value))
        else:
            raise BackendFault(f"unknown TimeHarp 260 setting {name!r}")

    def _nano_model(self) -> bool:
        return self.model.endswith("N")  # "TimeHarp 260 N": edge triggers, no dead time

    # -- the TcspcBackend protocol --------------------------------------------------------

    @property
    def rep_rate_hz(self) -> float:
        """Sync rate at the card's input (Hz), from its rate meter."""
        return self._sync_rate

    @property
    def microtime_unit_s(self) -> float:
        return self._base_s

    @property
    def t2_tick_s(self) -> float:
        """The T2 time tag unit, fixed by the card."""
        return self._base_s

    @property
    def microtime_bins(self) -> int:
        rate = self._sync_rate
        if rate <= 0:
            return hc.MAX_T3_BINS
        # Whole bins within the measured period: the range never exceeds it (the rate meter
        # is good to ~1e-5; a partial last bin is left out).
        return min(math.floor(1.0 / (rate * self._base_s) + 1e-2), hc.MAX_T3_BINS)

    interlock_open = False
    bias_v = math.nan
    current_a = math.nan

    def describe(self, mode: str) -> str:
        return f"PicoQuant {self.model} (serial {self.serial}), {mode} mode"

    def now(self) -> float:
        return self._clock()

    def count_rates(self) -> tuple[float, list[float]]:
        """The card's rate meters (100 ms gate): sync rate and each input's rate, Hz."""
        self._sync_rate = float(self.lib.get_int("GetSyncRate", self.dev))
        return self._sync_rate, [
            float(self.lib.get_int("GetCountRate", self.dev, ch)) for ch in range(2)
        ]

    def status_bits(self) -> tuple[int, int]:
        """The card's warnings and flags (``TH260_GetWarnings``/``GetFlags`` bits)."""
        return self.lib.get_int("GetWarnings", self.dev), self.lib.get_int("GetFlags", self.dev)

    def start_acquisition(self) -> None:
        """Start a measurement: the FIFO fills from now, times count from 0."""
        if self._sync_rate <= 0:
            self.count_rates()
        self._stream = _RecordDecoder(self._layouts[self.mode])
        self._divider = int(self.settings["sync_divider"])
        self._resolution_s = self.lib.get_double("GetResolution", self.dev) * 1e-12
        self.lib("StartMeas", self.dev, hc.ACQ_TIME_MAX_MS)
        self._measuring = self._started = True
        self._t0 = self._last = self._clock()
        self._sync_done = 0

    @property
    def measurement_start_s(self) -> float | None:
        """When the running measurement started (:meth:`now`'s clock), None when idle."""
        return self._t0 if self._measuring else None

    def stop_acquisition(self) -> None:
        self._measuring = False
        if self._started:  # also after a full FIFO stopped the card: the library wants it
            self._started = False
            self.lib("StopMeas", self.dev)

    def read_photons(self) -> HarpBlock:
        """Everything the FIFO holds now, decoded; the FIFO is drained when it filled up."""
        now = self._clock()
        t_start, self._last = self._last, now
        if not self._measuring:
            empty = np.empty(0, np.int64)
            return HarpBlock(
                empty, empty.astype(np.uint16), empty.astype(np.uint8), t_start, now, 0, 0,
                self._sync_rate or 1.0, self._base_s,
            )  # fmt: skip
        full = bool(self.lib.get_int("GetFlags", self.dev) & hc.FLAG_FIFOFULL)
        chunks = []
        for _ in range(MAX_READS_PER_CALL if not full else 1 << 20):
            got = ctypes.c_int()
            self.lib(
                "ReadFiFo",
                self.dev,
                self._buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint)),
                hc.TTREADMAX,
                ctypes.byref(got),
            )
            if got.value:
                chunks.append(self._buffer[: got.value].copy())
            if got.value < hc.TTREADMAX:
                break
        raw = np.concatenate(chunks) if chunks else np.empty(0, np.uint32)
        block = self._stream.block(raw)
        t2 = self.mode == "T2"
        rate = 1.0 / self._resolution_s if t2 else self._sync_rate / self._divider
        sync_start = self._sync_done
        self._sync_done = max(int((now - self._t0) * rate), sync_start)
        if block.macrotime.size:
            self._sync_done = max(self._sync_done, int(block.macrotime[-1]) + 1)
        if full:
            self._measuring = False  # the card stopped; what it held is in this block
            logger.warning("TimeHarp 260: FIFO full, the card stopped the measurement")
        return HarpBlock(
            block.macrotime,
            block.microtime,
            block.channel,
            t_start,
            now,
            sync_start,
            self._sync_done,
            rate,
            self._resolution_s,
            sync_divider=1 if t2 else self._divider,
            t2_ticks=t2,
            marker_timestamp=block.marker_timestamp,
            marker_channel=block.marker_channel,
            fifo_full=full,
        )

    # A card has no potentiostat: no bias log, no current.
    def drain_bias_log(self) -> list[tuple[float, float, float]]:
        return []

    def read_current(self) -> float:
        return math.nan

    def close(self) -> None:
        self.stop_acquisition()
        self.lib("CloseDevice", self.dev)


class _RecordDecoder:
    """The FIFO's records to photons and one marker row per marker input that fired."""

    def __init__(self, layout) -> None:
        from qd_bluesky.analysis._records import RecordStream

        self._stream = RecordStream(layout)

    def block(self, raw: NDArray[np.uint32]) -> HarpBlock:
        decoded = self._stream.decode(raw)
        markers = decoded.markers
        assert markers is not None  # RecordStream always gives the (maybe empty) table
        # One marker record carries the bits of every input that fired at that time.
        bits = markers["bits"].astype(np.int64)
        rows = [(markers["macrotime"][bits >> k & 1 == 1], k + 1) for k in range(4)]
        timestamp = np.concatenate([t for t, _ in rows])
        channel = np.concatenate([np.full(t.size, c, np.uint8) for t, c in rows])
        order = np.argsort(timestamp, kind="stable")
        return HarpBlock(
            decoded.macrotime, decoded.microtime, decoded.channel, 0.0, 0.0, 0, 0, 1.0, 1.0,
            marker_timestamp=timestamp[order], marker_channel=channel[order],
        )  # fmt: skip


def main_harp(argv: list[str] | None = None) -> None:
    """Serve the TCSPC IOC on a TimeHarp 260 (``python -m qd_bluesky.iocs.tcspc --backend
    th260``), or on the library's emulator (``--emulate PTU``)."""
    from pathlib import Path

    from qd_bluesky._errors import QdBlueskyError

    from ._server import (
        apply_environment,
        ioc_parser,
        loopback_environment,
        photon_dir_of,
        serve,
    )
    from ._tcspc import TcspcIOC

    parser, split_args = ioc_parser(
        desc="The TCSPC IOC on a PicoQuant TimeHarp 260 (TH260Lib), PVs {prefix}tcspc:*.",
        data_dir=True,
    )
    parser.prog = "python -m qd_bluesky.iocs.tcspc --backend th260"
    parser.add_argument("--backend", choices=("th260",), default="th260")
    parser.add_argument(
        "--port", type=int, default=None, help="serve on loopback only, on this CA port"
    )
    parser.add_argument("--library", default=None, help="path of TH260Lib (libth260.so)")
    parser.add_argument("--device", type=int, default=0, help="device index 0-3")
    parser.add_argument(
        "--emulate",
        default=None,
        metavar="PTU",
        help="emulate the card: replay this T3 recording instead of loading the library",
    )
    parser.add_argument("--emulate-t2", default=None, metavar="PTU", help="T2 recording")
    parser.add_argument(
        "--fifo-full-after",
        type=int,
        default=None,
        metavar="N",
        help="emulator: the FIFO fills after N records",
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    try:
        if args.emulate:
            from ._harp_emulator import EmulatedTh260Lib

            library = Th260Library(
                EmulatedTh260Lib(
                    Path(args.emulate), args.emulate_t2, fifo_full_after=args.fifo_full_after
                )
            )
        else:
            library = Th260Library.load(args.library)
        backend = HarpTcspc(library, args.device)
    except (BackendFault, OSError, ValueError, QdBlueskyError) as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    group = TcspcIOC(
        prefix=f"{ioc_options['prefix']}tcspc:",
        backend=backend,
        data_dir=photon_dir_of(args.data_dir, args.photon_dir),
    )
    if args.port is not None:
        apply_environment(loopback_environment(args.port), override=True)
        run_options["interfaces"] = ["127.0.0.1"]
    try:
        serve([group], on_ready=lambda: print(READY_LINE, flush=True), **run_options)
    finally:
        backend.close()
