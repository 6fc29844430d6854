"""The TCSPC card IOC: it time-tags photons and writes them to a Photon-HDF5 file itself.

Photons never travel over Channel Access. Like an areaDetector file plugin, the IOC writes them
into an HDF5 file (SWMR, chunked, resizable, Photon-HDF5 layout) and publishes only control and
status over CA: the file path, whether it captures, how many rows are written and flushed, the
rate meters.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from ._common import BACKEND_FAULTS, RefusedError, clear_alarm, raise_alarm, status_pv, text_pv
from ._harp_codes import MAX_T3_BINS
from ._laser import WAVELENGTH_M
from ._tcspc_settings import TcspcSettingsGroup

if TYPE_CHECKING:
    from ._backends import TcspcBackend

logger = logging.getLogger(__name__)


class FifoFullError(RuntimeError):
    """The card's FIFO filled up and the card stopped its measurement (one-line message)."""


#: Photon generation period: each tick asks the sample for the photons since the last one.
TICK_S = 0.05
#: Rate meter gate, like the card's own rate meters (updated even when not acquiring).
RATE_PERIOD_S = 0.5
#: Shortest and longest gate ``rate_period`` accepts (a raster point lasts one to two gates).
RATE_PERIOD_RANGE_S = (0.05, 1.0)
#: Above this the card's FIFO overruns and photons are lost (TimeHarp 260 class).
MAX_COUNT_RATE_CPS = 40e6
#: Rows per HDF5 chunk of the photon datasets.
CHUNK_ROWS = 65536


class TcspcIOC(PVGroup):
    """A two-channel TCSPC card (TimeHarp 260 class) writing photons to Photon-HDF5.

    Two APDs behind a 50/50 splitter feed channels 0 and 1; in T3 mode each photon gets the
    laser-sync count (macrotime), the delay after the sync (microtime, in ``resolution``
    bins) and its channel.

    PVs (prefix ``{P}tcspc:``)
    --------------------------
    mode
        ``T3`` (sync count + microtime) or ``T2`` (absolute time tags in ``resolution``
        ticks). Refused while acquiring.
    resolution
        T3: the microtime bin (s), the card's base resolution times a power of two (sets
        ``binning``). T2: the time tag unit, fixed by the card (a put is refused). Refused while
        acquiring.
    sync_rate
        Measured laser sync rate (Hz).
    count_rate0, count_rate1
        Rate meters (counts/s) of the two channels, updated every ``rate_period``, acquiring
        or not.
    rate_period
        Gate of the rate meters (s, 0.05 to 1; 0.5 at start): short gates make fast rasters.
    rate_gate
        Number of rate-meter gates so far, written after both rates: a client that reads
        ``N`` and then sees ``N + 2`` has rates measured entirely after its read.
    acquire
        Put 1 to open a new photon file and start writing (the put completes when the file is
        open); put 0 to stop (completes when the file is flushed and closed). Refused while
        the laser interlock is open.
    acquire_time
        Acquisition length (s); the card stops by itself after it. 0: until ``acquire`` = 0.
    acquiring
        1 while a photon file is open and being written.
    elapsed
        Seconds since the acquisition started.
    data_dir
        Directory (on the IOC's machine) where photon files go.
    file_path
        Full path of the current (or last) photon file.
    num_photons
        Photons written and flushed to ``file_path`` so far: rows ``[0, num_photons)`` of every
        photon dataset are safe to read (SWMR).
    chunk_rows
        Rows per HDF5 chunk of the photon datasets.
    overflow
        1 when photons were lost to a FIFO overrun during the acquisition.
    error
        Why the last request failed (empty when all is well). A fault of the card (it stopped
        delivering photons) stops the acquisition, closes the file intact and is written here
        with a MAJOR alarm, which the next acquisition clears.

    The card's input settings and status words (``sync_divider``, CFD levels, offsets, marker
    inputs, ``warnings``, ``flags``, ``fifo_full``...) are the PVs of
    :class:`~._tcspc_settings.TcspcSettingsGroup`. A full FIFO (the card stops its
    measurement) ends the acquisition: the file keeps every photon read and is closed intact,
    ``fifo_full`` = 1 and ``error`` says so.

    The ``backend`` (:class:`~qd_bluesky.iocs.TcspcBackend`) delivers the photons and the bias
    markers.

    The file holds ``/photon_data/timestamps``, ``nanotimes`` and ``detectors`` with their
    ``*_specs``, and ``/user/bias`` with bias markers: ``photon_index`` (the first photon
    detected after the marker), ``sync`` (the laser pulse count from which the marker holds:
    in T3 ``photon_index`` is where ``sync`` sorts into the timestamps), ``t_s`` (s since the
    acquisition started), ``bias_v`` and
    ``current_a`` of the potentiostat. There is a marker at the start, at every bias change
    (every ramp tick) and at the end of every photon tick, so photon ``k`` saw the bias of the
    last marker with ``photon_index <= k``.
    """

    def __init__(
        self,
        *args,
        backend: TcspcBackend,
        data_dir: str | Path | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        self._rate_fault = False
        self._default_dir = str(Path(data_dir or ".").resolve())
        self._writer = None
        self._lock = asyncio.Lock()
        self._t_start = 0.0
        self._t_end: float | None = None
        self._rate_counts = np.zeros(2, dtype=np.int64)
        self._rate_t0 = time.monotonic()
        self._shift = 0  # microtime bins are merged by 2**shift
        self._bins = 0  # microtime bins of the open file
        self._meter_samples: list = []

    mode = pvproperty(value="T3", dtype=ChannelType.ENUM, enum_strings=("T2", "T3"), doc="T2 or T3")
    resolution = pvproperty(value=25e-12, units="s", precision=15, doc="time bin (s)")
    sync_rate = pvproperty(value=0.0, units="Hz", precision=1, read_only=True)
    count_rate0 = pvproperty(value=0.0, units="cps", precision=1, read_only=True)
    count_rate1 = pvproperty(value=0.0, units="cps", precision=1, read_only=True)
    rate_gate = pvproperty(value=0, read_only=True, doc="rate-meter gates counted so far")
    rate_period = pvproperty(
        value=RATE_PERIOD_S,
        units="s",
        precision=3,
        lower_ctrl_limit=RATE_PERIOD_RANGE_S[0],
        upper_ctrl_limit=RATE_PERIOD_RANGE_S[1],
        doc="rate-meter gate (s); the control limits refuse others",
    )
    acquire = pvproperty(value=0, doc="1: open a file and write photons; 0: stop and close")
    acquire_time = pvproperty(
        value=0.0,
        units="s",
        precision=3,
        lower_ctrl_limit=0.0,
        upper_ctrl_limit=1e6,
        doc="stop by itself after this time (0: until acquire = 0)",
    )
    acquiring = pvproperty(value=0, read_only=True, doc="1 while a photon file is written")
    elapsed = pvproperty(value=0.0, units="s", precision=3, read_only=True)
    data_dir = text_pv("", read_only=False, doc="directory for photon files")
    file_path = text_pv("", doc="current or last photon file")
    num_photons = pvproperty(value=0, read_only=True, doc="photons written and flushed")
    chunk_rows = pvproperty(
        value=CHUNK_ROWS, read_only=True, doc="rows per HDF5 chunk of the photon datasets"
    )
    overflow = pvproperty(value=0, read_only=True, doc="photons lost to FIFO overrun")
    error = status_pv("", doc="why the last request failed")
    card = SubGroup(TcspcSettingsGroup, prefix="")

    # -- requests -----------------------------------------------------------------------

    async def _refuse(self, reason: str) -> None:
        await self.error.write(reason)
        raise RefusedError(reason, source=self.prefix)

    @data_dir.startup
    async def data_dir(self, instance, async_lib):
        if not self.data_dir.value:
            await self.data_dir.write(self._default_dir, verify_value=False)
        await self.sync_rate.write(self.backend.rep_rate_hz)
        await self.resolution.write(self._bin_s(self.mode.value), verify_value=False)

    @file_path.shutdown
    async def file_path(self, instance, async_lib):
        self.close()  # the open photon file stays intact whatever stops the server

    @mode.putter
    async def mode(self, instance, value):
        if self._writer is not None:
            await self._refuse("cannot change mode while acquiring")
        await self._tell_backend("mode", value)
        await self.resolution.write(self._bin_s(value), verify_value=False)
        return value

    def _bin_s(self, mode: str) -> float:
        """The file's time bin in ``mode``: the T3 microtime bin, or the card's fixed T2 tick."""
        if mode == "T2":
            return float(getattr(self.backend, "t2_tick_s", self.backend.microtime_unit_s))
        return self.backend.microtime_unit_s * 2**self._shift

    async def _tell_backend(self, name: str, value) -> None:
        configure = getattr(self.backend, "configure", None)
        if configure is None:
            return
        try:
            configure(name, value)
        except BACKEND_FAULTS as exc:
            await self._refuse(f"the card refused {name} = {value}: {exc}")

    async def configure_card(self, name: str, value, instance):
        """A put to a card setting PV (:class:`TcspcSettingsGroup`): to the backend."""
        if self._writer is not None:
            await self._refuse(f"cannot change {instance.pvspec.attr} while acquiring")
        await self._tell_backend(name, value)
        if name == "binning":
            self._shift = int(value)
            await self.resolution.write(self._bin_s(self.mode.value), verify_value=False)
        return value

    @resolution.putter
    async def resolution(self, instance, value):
        if self._writer is not None:
            await self._refuse("cannot change resolution while acquiring")
        if self.mode.value == "T2":
            await self._refuse(
                f"the card fixes the T2 tick at {self._bin_s('T2') * 1e12:g} ps; "
                "resolution sets the T3 microtime bin"
            )
        base = self.backend.microtime_unit_s
        shift = round(np.log2(max(float(value), base) / base))
        if not 0 <= shift <= 15 or not np.isclose(
            base * 2**shift, float(value), rtol=1e-6, atol=0.0
        ):
            await self._refuse(
                f"resolution {float(value):.3g} s is not {base * 1e12:g} ps times a power of two"
            )
        await self._tell_backend("binning", shift)
        self._shift = shift
        await self.card.binning.write(shift, verify_value=False)
        return base * 2**shift

    @acquire.putter
    async def acquire(self, instance, value):
        if value:
            await self._start()
            return 1
        await self._stop()
        return 0

    # -- acquisition ----------------------------------------------------------------------

    async def _start(self) -> None:
        if self._writer is not None:
            await self._refuse("already acquiring")
        await clear_alarm(self.error)
        await self.error.write("")
        if self.backend.interlock_open:
            await self._refuse("laser interlock open: acquisition refused")
        from qd_bluesky.analysis._photon_hdf5 import (
            BIAS_MARKER_COLUMNS,
            BIAS_MARKER_GROUP,
            CARD_MARKER_COLUMNS,
            CARD_MARKER_GROUP,
            OVERFLOW_COLUMNS,
            OVERFLOW_GROUP,
            PhotonHdf5Writer,
        )

        user_columns = {OVERFLOW_GROUP: OVERFLOW_COLUMNS, CARD_MARKER_GROUP: CARD_MARKER_COLUMNS}
        if self._sees_bias:
            user_columns[BIAS_MARKER_GROUP] = BIAS_MARKER_COLUMNS

        directory = Path(self.data_dir.value or self._default_dir)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = directory / f"tcspc-{stamp}-{uuid.uuid4().hex[:8]}.h5"
        async with self._lock:
            # Photons detected before the start belong to the rate meter, not to the file.
            try:
                before = self.backend.read_photons()
            except BACKEND_FAULTS as exc:
                await raise_alarm(self.error, f"the card failed: {exc}")
                raise RefusedError(f"the card failed: {exc}", source=self.prefix) from None
            self._count(before)
            rep = self.backend.rep_rate_hz
            t3 = self.mode.value == "T3"
            if t3 and not rep > 0:
                await self._refuse("no sync: the card sees a sync rate of 0 Hz, T3 needs one")
            resolution = self._bin_s(self.mode.value)
            # T3 timestamps count divided syncs: the unit and the microtime range follow. Whole
            # bins only: the range never exceeds the (divided) sync period.
            divider = int(self.card.sync_divider.value) if t3 else 1
            bins = min(divider * self.backend.microtime_bins // 2**self._shift, MAX_T3_BINS)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                self._writer = PhotonHdf5Writer(
                    path,
                    macrotime_unit_s=divider / rep if t3 else resolution,
                    microtime_unit_s=resolution if t3 else None,
                    microtime_bins=bins,
                    rep_rate_hz=rep,
                    description=self.backend.describe(self.mode.value),
                    channels=2,
                    chunk_rows=CHUNK_ROWS,
                    excitation_wavelengths_m=[WAVELENGTH_M],
                    swmr=True,
                    user_columns=user_columns,
                )
            except Exception as exc:  # noqa: BLE001 - any failure to open is reported the same way
                self._writer = None
                await self._refuse(f"cannot open {path}: {' '.join(str(exc).split())}")
            # The file starts where the rate meter stopped: at the end of `before`.
            self._t_start = before.t_stop_s
            duration = float(self.acquire_time.value)
            self._t_end = self._t_start + duration if duration > 0 else None
            self._bins = bins
            try:
                self.backend.start_acquisition()
            except BACKEND_FAULTS as exc:
                self._finish()
                await raise_alarm(self.error, f"the card failed: {exc}")
                raise RefusedError(f"the card failed: {exc}", source=self.prefix) from None
            # A card that starts measuring only now (its FIFO was off) starts the file now.
            started = getattr(self.backend, "measurement_start_s", None)
            if started is not None:
                self._t_start = started
                self._t_end = self._t_start + duration if duration > 0 else None
            self._mark(
                [0],
                [before.sync_stop],
                [self._t_start],
                [self.backend.bias_v],
                [self.backend.current_a],
            )
        await self.error.write("")
        await self.card.fifo_full.write(0)
        await self.overflow.write(0)
        await self.num_photons.write(0)
        await self.elapsed.write(0.0)
        await self.file_path.write(str(path))
        await self.acquiring.write(1)

    async def _stop(self) -> None:
        async with self._lock:
            if self._writer is None:
                return
            try:
                await self._take()
            except FifoFullError as exc:
                await raise_alarm(self.error, str(exc))
            finally:
                self._finish()
        await self.acquiring.write(0)
        await self.acquire.write(0, verify_value=False)

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        self.backend.stop_acquisition()
        if writer is not None:
            writer.close()

    def close(self) -> None:
        """Close an open photon file (called on shutdown: the file stays intact)."""
        self._finish()

    # -- the photon loop ------------------------------------------------------------------

    @count_rate0.scan(period=TICK_S)
    async def count_rate0(self, instance, async_lib):
        await self.poll()

    async def poll(self) -> None:
        """One tick of the photon loop: photons to the file (or the rate meter), the meters.

        A fault of the card is reported (:meth:`_fault`), never raised: the loop goes on.
        """
        if self._t_end is not None and self._writer is not None:
            # End a timed acquisition on time, not up to a tick late.
            remaining = self._t_end - self.backend.now()
            if 0 < remaining < TICK_S:
                await asyncio.sleep(remaining)
        async with self._lock:
            if self._writer is None:
                try:
                    self._count(self.backend.read_photons())
                    self._rate_fault = False
                except BACKEND_FAULTS as exc:
                    if not self._rate_fault:  # one line per fault, not one per tick
                        self._rate_fault = True
                        await self._fault(exc)
            else:
                try:
                    await self._take()
                except FifoFullError as exc:
                    await self._abandon(str(exc), alarm=True)
                    return
                except BACKEND_FAULTS as exc:
                    await self._fault(exc)
                    return
                except Exception as exc:  # noqa: BLE001 - report, close the file, keep serving
                    logger.exception("writing photons failed")
                    await self._abandon(f"write failed, acquisition stopped: {exc}")
                    return
                if self._t_end is not None and self.backend.now() >= self._t_end:
                    self._finish()
                    await self.acquiring.write(0)
                    await self.acquire.write(0, verify_value=False)
        await self._card_status()
        now = time.monotonic()
        if now - self._rate_t0 >= self.rate_period.value:
            rates = self._rate_counts / (now - self._rate_t0)
            if self._meter_samples:  # the card's own 100 ms meters, averaged over the gate
                rates = np.mean(self._meter_samples, axis=0)
                self._meter_samples = []
            self._rate_counts[:] = 0
            self._rate_t0 = now
            await self.count_rate0.write(float(rates[0]))
            await self.count_rate1.write(float(rates[1]))
            await self.rate_gate.write(self.rate_gate.value + 1)
            await self.sync_rate.write(self.backend.rep_rate_hz)

    async def _card_status(self) -> None:
        """The card's rate meters and status words, for a backend that has them."""
        count_rates = getattr(self.backend, "count_rates", None)
        # Rates first: TH260Lib computes the warnings from the rates last read.
        try:
            if count_rates is not None:
                self._meter_samples.append(count_rates()[1][:2])
            status_bits = getattr(self.backend, "status_bits", None)
            if status_bits is not None:
                await self.card.show_status(*status_bits())
        except BACKEND_FAULTS as exc:
            if not self._rate_fault:
                self._rate_fault = True
                await self._fault(exc)

    async def _fault(self, exc: BaseException) -> None:
        """The card failed: one log line, the alarm on ``error``; an acquisition stops."""
        logger.warning("%s the card failed: %s", self.prefix, exc)
        self._rate_fault = True  # the rate meter stays quiet until the card recovers
        if self._writer is None:
            await raise_alarm(self.error, f"the card failed: {exc}")
        else:
            await self._abandon(f"the card failed, acquisition stopped: {exc}", alarm=True)

    async def _abandon(self, reason: str, *, alarm: bool = False) -> None:
        """Close the photon file as it is (intact) and say why the acquisition stopped."""
        self._finish()
        await (raise_alarm(self.error, reason) if alarm else self.error.write(reason))
        await self.acquiring.write(0)
        await self.acquire.write(0, verify_value=False)

    def _count(self, chunk) -> None:
        self._rate_counts += np.bincount(chunk.channel, minlength=2)[:2]

    async def _take(self) -> None:
        """Move the photons detected since the last tick into the file, with bias markers.

        A timed acquisition keeps only the photons of laser pulses before its end time, so the
        file spans ``acquire_time`` exactly, whenever the last tick comes.
        """
        chunk = self.backend.read_photons()
        self._count(chunk)
        macrotime, microtime, channel = chunk.macrotime, chunk.microtime, chunk.channel
        events = self.backend.drain_bias_log()
        t_stop, sync_stop = chunk.t_stop_s, chunk.sync_stop
        if self._t_end is not None and t_stop > self._t_end:
            t_stop = self._t_end
            sync_stop = self._sync_at(chunk, t_stop)
            keep = np.searchsorted(macrotime, sync_stop, side="left")
            macrotime, microtime, channel = macrotime[:keep], microtime[:keep], channel[:keep]
            events = [e for e in events if e[0] <= t_stop]
        n_max = int(MAX_COUNT_RATE_CPS * max(t_stop - chunk.t_start_s, 0.0)) + 1
        rows_before = self._writer.rows_written
        # A real card drops what it cannot buffer itself (and says so in its flags).
        if len(macrotime) > n_max and not getattr(self.backend, "reports_overruns", False):
            # FIFO overrun: the card drops what it cannot buffer, says so in the PV, and the
            # file records where and how many (docs/photon-file.md).
            from qd_bluesky.analysis._photon_hdf5 import OVERFLOW_GROUP

            self._writer.append_user(
                OVERFLOW_GROUP,
                photon_index=[rows_before + n_max],
                t_s=[t_stop - self._t_start],
                dropped=[len(macrotime) - n_max],
            )
            macrotime, microtime, channel = macrotime[:n_max], microtime[:n_max], channel[:n_max]
            await self.overflow.write(1)
        extra = 0  # microtime bins merged here (T3), for the markers' order among photons
        if getattr(chunk, "t2_ticks", False):
            rows = self._writer.append(macrotime, None, channel)  # the card's own time tags
        elif self.mode.value == "T2":
            period_bins = round(1.0 / (chunk.rep_rate_hz * chunk.microtime_unit_s))
            timestamps = macrotime * period_bins + microtime  # ticks of the base resolution
            rows = self._writer.append(timestamps, None, channel)
        else:
            # Bins the card did not merge itself; photons beyond the range are not recorded.
            extra = round(np.log2(self._bin_s("T3") / chunk.microtime_unit_s))
            microtime = microtime >> extra
            keep = microtime < self._bins
            if not keep.all():
                macrotime, microtime, channel = macrotime[keep], microtime[keep], channel[keep]
            rows = self._writer.append(macrotime, microtime, channel)
        self._card_markers(chunk, sync_stop, macrotime, microtime << extra, extra, rows_before)
        if events:
            # Bias changes inside the chunk, each mapped to the first photon of the first
            # laser pulse at or after it: photons from that pulse on saw the new bias.
            t_event = np.array([e[0] for e in events])
            sync = self._sync_at(chunk, t_event)
            index = rows_before + np.searchsorted(macrotime, sync, side="left")
            self._mark(
                index,
                sync,
                t_event,
                np.array([e[1] for e in events]),
                np.array([e[2] for e in events]),
            )
        # One marker per tick as well: the bias and a fresh current reading at its end.
        self._mark(
            np.array([rows]),
            np.array([sync_stop]),
            np.array([t_stop]),
            np.array([self.backend.bias_v]),
            np.array([self.backend.read_current()]),
        )
        await self.num_photons.write(rows)
        await self.elapsed.write(max(0.0, t_stop - self._t_start))
        if getattr(chunk, "fifo_full", False):
            await self.card.fifo_full.write(1)
            raise FifoFullError(
                f"FIFO full: the card stopped the measurement; the file holds all {rows} "
                "photons read"
            )

    @staticmethod
    def _sync_at(chunk, t_s):
        """Index of the first laser pulse at or after ``t_s`` (inside ``chunk``)."""
        sync = chunk.sync_start + np.ceil(
            (np.asarray(t_s) - chunk.t_start_s) * chunk.rep_rate_hz - 1e-6
        ).astype(np.int64)
        return np.clip(sync, chunk.sync_start, chunk.sync_stop)

    @property
    def _sees_bias(self) -> bool:
        return bool(getattr(self.backend, "sees_bias", True))

    def _card_markers(self, chunk, sync_stop, macrotime, microtime, extra, rows_before) -> None:
        """The card's marker records of ``chunk`` into ``/user/markers`` (docs/photon-file.md).

        A real card's block carries them decoded (``marker_timestamp``, ``marker_channel``, in
        the file's timestamp units). A simulated card's backend has ``read_markers(chunk)``:
        per record the sync count of its period, its delay after that sync in finest microtime
        bins, and the input. ``microtime``: the photons' as written, in finest bins; ``extra``:
        the bits merged into the written bins.
        """
        from qd_bluesky.analysis._photon_hdf5 import CARD_MARKER_GROUP

        timestamp = getattr(chunk, "marker_timestamp", None)
        if timestamp is not None:
            keep = timestamp < sync_stop
            if keep.any():
                self._writer.append_user(
                    CARD_MARKER_GROUP,
                    timestamp=timestamp[keep],
                    channel=chunk.marker_channel[keep],
                    photon_index=rows_before
                    + np.searchsorted(macrotime, timestamp[keep], side="left"),
                )
            return
        read_markers = getattr(self.backend, "read_markers", None)
        if read_markers is None:
            return
        sync, offset, marker_channel = read_markers(chunk)
        keep = sync < sync_stop  # a timed acquisition ends at sync_stop
        sync, offset, marker_channel = sync[keep], offset[keep], marker_channel[keep]
        if len(sync) == 0:
            return
        # Photons of the marker's period that arrived before the edge are written before it.
        period_bins = round(1.0 / (chunk.rep_rate_hz * chunk.microtime_unit_s))
        photon_key = macrotime * period_bins + microtime
        marker_key = sync * period_bins + ((np.floor(offset).astype(np.int64) >> extra) << extra)
        index = np.searchsorted(photon_key, marker_key, side="right")
        timestamp = sync if self.mode.value == "T3" else marker_key
        self._writer.append_user(
            CARD_MARKER_GROUP,
            timestamp=timestamp,
            channel=marker_channel,
            photon_index=rows_before + np.minimum(index, len(macrotime)),
        )

    def _mark(self, photon_index, sync, t_s, bias_v, current_a) -> None:
        """Append bias markers: photon ``photon_index`` onwards saw ``bias_v`` (from ``t_s``)."""
        if not self._sees_bias:
            return
        # Imported here like the writer: the IOC package loads without the analysis stack.
        from qd_bluesky.analysis._photon_hdf5 import BIAS_MARKER_GROUP

        if not getattr(self.backend, "sees_bias", True):
            return  # the bias comes in as marker records (/user/markers), if wired
        # The writer casts each column to the dtype the marker schema declares.
        self._writer.append_user(
            BIAS_MARKER_GROUP,
            photon_index=photon_index,
            sync=sync,
            t_s=np.asarray(t_s, dtype=np.float64) - self._t_start,
            bias_v=bias_v,
            current_a=current_a,
        )
