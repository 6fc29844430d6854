"""The TCSPC card as a bluesky flyer that announces photon datasets written by the IOC."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from bluesky.protocols import StreamAsset
from event_model import ComposeStreamResource, ComposeStreamResourceBundle, StreamRange
from ophyd import Component as Cpt
from ophyd import Device, Kind
from ophyd.status import DeviceStatus, StatusBase
from ophyd.utils import InvalidState

from ._errors import InstrumentBusyError, InstrumentError, IocLostError
from ._photon_file import rows_on_disk
from ._signals import enum, ro, rw, text
from ._status import (
    bounded_timeout,
    fail_on_disconnect,
    fail_on_message,
    fail_status,
    follow,
    lost_on_timeout,
)

if TYPE_CHECKING:
    from ._laser import Laser

logger = logging.getLogger(__name__)

#: The photon datasets of a Photon-HDF5 file: (field, dataset, numpy dtype).
PHOTON_FIELDS = (
    ("timestamps", "/photon_data/timestamps", "<i8"),
    ("nanotimes", "/photon_data/nanotimes", "<u2"),
    ("detectors", "/photon_data/detectors", "|u1"),
)
HDF5_MIMETYPE = "application/x-hdf5"
#: Time the IOC may take to open or close a photon file (s).
FILE_TIMEOUT_S = 10.0
#: Period of the checks whether a timed acquisition is over (s).
POLL_S = 0.05
#: The rate meters update every 0.5 s; a trigger waits for up to two updates.
RATE_TRIGGER_TIMEOUT_S = 4.0


class TcspcRates(Device):
    """The card's rate meters and counters: the readable side of the TCSPC card.

    Read it in step streams (``bps.trigger_and_read([pot, tcspc.rates])``): the count rates
    of both channels, the sync rate, ``num_photons`` (photons written so far: the photon
    index of the event) and ``overflow``. ``trigger()`` waits for a rate-meter gate measured
    entirely after the call. Data keys are the card's: ``tcspc_count_rate0``, ...
    """

    sync_rate = ro("sync_rate", kind=Kind.normal)
    count_rate0 = ro("count_rate0", kind=Kind.hinted)
    count_rate1 = ro("count_rate1", kind=Kind.hinted)
    num_photons = ro("num_photons", kind=Kind.normal)
    overflow = ro("overflow", kind=Kind.normal)
    rate_gate = ro("rate_gate", kind=Kind.omitted)
    #: Gate of the rate meters (s): shorter gates make faster rasters, noisier rates.
    rate_period = rw("rate_period", kind=Kind.config)

    def trigger(self) -> StatusBase:
        """Finish once the rate meters hold a gate measured entirely after this call.

        The card's meters count in gates of ``rate_period`` (0.5 s at start) and number them
        (``rate_gate``): the gate after the one running now is the first that started after
        the call, so a trigger takes one to two gates.
        """
        card = cast(TcspcCard, self.parent)
        status = DeviceStatus(self, timeout=RATE_TRIGGER_TIMEOUT_S)
        fail_on_disconnect(status, (self.rate_gate,), lambda: card.lost("a trigger"))
        if status.done:
            return status
        target = int(card.read_fresh(self.rate_gate, "a trigger")) + 2

        def updated(*, value: int, **kwargs: Any) -> None:
            if value >= target and not status.done:
                try:
                    status.set_finished()
                except Exception:  # noqa: BLE001 - finished meanwhile
                    pass

        token = self.rate_gate.subscribe(updated, run=True)
        status.add_callback(lambda st: self.rate_gate.unsubscribe(token))
        return status


class TcspcCard(Device):
    """A two-channel TCSPC card whose IOC writes photons to a Photon-HDF5 file.

    The card is a flyer (``kickoff`` / ``complete`` / ``describe_collect`` /
    ``collect_asset_docs`` / ``get_index``): it announces the photon datasets of the file the
    IOC writes with StreamResource and StreamDatum documents, one row per photon, in a stream
    of its own (``bps.declare_stream(tcspc, name="photons", collect=True)``). Photons never
    travel over Channel Access: the documents name the file and the rows, readers open it.

    Its rate meters are ordinary signals (``tcspc.count_rate0``, ``tcspc.count_rate1``,
    ``tcspc.sync_rate``, ``tcspc.num_photons``), grouped in the readable
    :class:`TcspcRates` ``tcspc.rates`` for step streams. The card itself is not read in
    step streams (bluesky would try to put photon documents into them): its ``read()`` and
    ``describe()`` say so.

    Parameters
    ----------
    prefix
        PV prefix, e.g. ``"qd:tcspc:"``.
    name
        Device name; the photon data keys are ``{name}_timestamps``, ``{name}_nanotimes``
        (T3 only) and ``{name}_detectors``.
    laser
        The laser whose interlock must be closed for an acquisition to start.
    """

    mode = enum("mode", kind=Kind.config)
    resolution = rw("resolution", kind=Kind.config)
    acquire_time = rw("acquire_time", kind=Kind.config)
    data_dir = text("data_dir", kind=Kind.config, write=True)
    rates = Cpt(TcspcRates, "", kind=Kind.omitted)
    acquire = rw("acquire", kind=Kind.omitted, put_complete=True)
    acquiring = ro("acquiring", kind=Kind.omitted)
    elapsed = ro("elapsed", kind=Kind.omitted)
    file_path = text("file_path", kind=Kind.omitted)
    chunk_rows = ro("chunk_rows", kind=Kind.omitted)
    error = text("error", kind=Kind.omitted)
    fifo_full = ro("fifo_full", kind=Kind.omitted)

    def __init__(self, prefix: str = "", *, name: str, laser: Laser | None = None, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        # The meters' data keys are the card's (tcspc_count_rate0, not tcspc_rates_...).
        for attr in self.rates.component_names:
            getattr(self.rates, attr).name = f"{self.name}_{attr}"
        self.laser = laser
        self._lock = threading.Lock()
        self._kicked_off = False
        self._active = False  # between kickoff and a finished complete
        self._fields: tuple[tuple[str, str, str], ...] = PHOTON_FIELDS
        self._bundles: dict[str, ComposeStreamResourceBundle] = {}
        self._emitted = 0
        self._path = ""

    # -- helpers --------------------------------------------------------------------------

    def lost(self, during: str) -> IocLostError:
        """The one-line error for this IOC lost during ``during`` (naming the photon file)."""
        return IocLostError(
            f"{self.name}: the TCSPC IOC ({self.prefix}) was lost during {during}; photons "
            f"written so far stay in {self._file or 'the photon file'}"
        )

    @property
    def _file(self) -> str:
        """The photon file of the current acquisition, as far as known."""
        if self._path:
            return self._path
        return self.file_path.get() if self.file_path.connected else ""

    def _require_connection(self, action: str) -> None:
        if not (self.acquire.connected and self.num_photons.connected):
            if self._kicked_off:
                raise self.lost(f"the acquisition (before {action})")
            raise IocLostError(
                f"{self.name}: the TCSPC IOC ({self.prefix}) is not connected; {action} "
                "was not sent"
            )

    def read_fresh(self, signal, what: str):
        """A fresh value from the IOC, or :class:`IocLostError` naming ``what`` failed."""
        if not signal.connected:
            raise self.lost(what)
        try:
            return signal.get(use_monitor=False, timeout=2.0, connection_timeout=1.0)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            raise self.lost(what) from exc

    @property
    def data_keys(self) -> dict[str, str]:
        """Photon field (``timestamps``, ...) -> data key in the photon stream."""
        return {field: f"{self.name}_{field}" for field, _, _ in self._fields}

    # -- the readable side ------------------------------------------------------------------

    @property
    def count_rate0(self):
        """Rate meter of channel 0 (cps), updated every 0.5 s."""
        return self.rates.count_rate0

    @property
    def count_rate1(self):
        """Rate meter of channel 1 (cps), updated every 0.5 s."""
        return self.rates.count_rate1

    @property
    def sync_rate(self):
        """Measured laser sync rate (Hz)."""
        return self.rates.sync_rate

    @property
    def num_photons(self):
        """Photons written and flushed to the current file."""
        return self.rates.num_photons

    @property
    def overflow(self):
        """1 when photons were lost to a FIFO overrun."""
        return self.rates.overflow

    @property
    def rate_gate(self):
        """Number of rate-meter gates so far."""
        return self.rates.rate_gate

    def trigger(self) -> StatusBase:
        """Wait for a fresh rate-meter gate (see :meth:`TcspcRates.trigger`)."""
        return self.rates.trigger()

    def _not_readable(self) -> TypeError:
        return TypeError(
            f"{self.name} is a flyer: its photons go through kickoff/collect/complete; in step "
            f"streams read {self.name}.rates (count rates, photon index) instead"
        )

    def read(self) -> dict[str, Any]:
        raise self._not_readable()

    def describe(self) -> dict[str, Any]:
        raise self._not_readable()

    # -- Flyable ----------------------------------------------------------------------------

    def kickoff(self) -> StatusBase:
        """Open a new photon file on the IOC and start writing photons into it.

        Raises :class:`InterlockOpenError` (before anything is put) when the laser interlock
        is open, :class:`InstrumentBusyError` when the card already acquires.
        """
        self._require_connection("the kickoff")
        laser = self.laser
        if laser is not None:
            with lost_on_timeout(
                lambda: IocLostError(
                    f"{self.name}: the laser IOC ({laser.prefix}) does not answer; the "
                    "interlock cannot be checked, so the acquisition does not start"
                )
            ):
                laser.check_interlock("the photon acquisition")
        if self.read_fresh(self.acquiring, "the kickoff"):
            raise InstrumentBusyError(
                f"{self.name}: the TCSPC card is already acquiring into {self._file}"
            )
        with self._lock:
            self._fields = self._fields_for_mode()
            self._bundles = {}
            self._emitted = 0
            self._path = ""
            self._kicked_off = True
            self._active = True
        status = DeviceStatus(self, timeout=FILE_TIMEOUT_S)
        fail_on_disconnect(status, (self.acquire, self.num_photons), lambda: self.lost("kickoff"))
        # The IOC refuses by failing the put (which CA never answers) and says why in
        # `error`: fail the kickoff with that reason at once.
        fail_on_message(
            status,
            self.error,
            lambda reason: InstrumentError(
                f"{self.name}: the TCSPC card refused to start: {reason}"
            ),
        )
        if not status.done:
            follow(status, self.acquire.set(1, timeout=None), lambda exc: exc)
        return status

    def complete(self) -> StatusBase:
        """Finish when the acquisition is over and the photon file is closed.

        With ``acquire_time`` = 0 this stops the acquisition; otherwise it waits for the card
        to stop by itself.
        """
        if not self._kicked_off:
            raise RuntimeError(f"{self.name}: complete() without kickoff()")
        self._require_connection("the stop request")
        acquire_time = float(self.read_fresh(self.acquire_time, "the stop request"))
        elapsed = float(self.read_fresh(self.elapsed, "the stop request"))
        remaining = max(0.0, acquire_time - elapsed)
        status = DeviceStatus(self, timeout=bounded_timeout(remaining) + FILE_TIMEOUT_S)
        fail_on_disconnect(
            status, (self.acquire, self.num_photons), lambda: self.lost("the acquisition")
        )
        if status.done:
            return status
        status.add_callback(self._completed)
        if acquire_time > 0:
            # Ask the IOC, not the monitor cache: a cached 0 may predate this acquisition.
            threading.Thread(
                target=self._wait_until_stopped,
                args=(status,),
                name=f"{self.name}-complete",
                daemon=True,
            ).start()
        else:
            follow(status, self.acquire.set(0, timeout=None), lambda exc: exc, verify=self._verdict)
        return status

    def _verdict(self) -> BaseException | None:
        """A full FIFO that ended the acquisition fails the completion (the file is intact)."""
        try:
            full = self.read_fresh(self.fifo_full, "the acquisition")
        except IocLostError as exc:
            return exc
        if not full:
            return None
        reason = self.read_fresh(self.error, "the acquisition") or "FIFO full"
        return InstrumentError(f"{self.name}: {reason} ({self._file})")

    def _wait_until_stopped(self, status: StatusBase) -> None:
        """Poll ``acquiring`` until the timed acquisition is over (or ``status`` ends)."""
        while not status.done:
            try:
                running = self.read_fresh(self.acquiring, "the acquisition")
            except IocLostError as exc:
                fail_status(status, exc)
                return
            if not running:
                failure = self._verdict()
                if failure is not None:
                    fail_status(status, failure)
                    return
                try:
                    status.set_finished()
                except InvalidState:
                    pass  # failed or timed out meanwhile
                return
            time.sleep(POLL_S)

    def _completed(self, status: StatusBase) -> None:
        if status.success:
            self._active = False

    def stop(self, *, success: bool = False) -> None:
        """Stop an acquisition (e.g. when a plan is aborted)."""
        if self.acquire.connected:
            self.acquire.put(0, wait=False)

    # -- WritesStreamAssets -----------------------------------------------------------------

    def _fields_for_mode(self) -> tuple[tuple[str, str, str], ...]:
        """The photon datasets the card writes in its present mode (T2: no nanotimes)."""
        t3 = self.read_fresh(self.mode, "reading the mode") == "T3"
        return tuple(f for f in PHOTON_FIELDS if t3 or f[0] != "nanotimes")

    def describe_collect(self) -> dict[str, dict[str, Any]]:
        """One data key per photon dataset, each a scalar per photon (row) in an HDF5 file.

        Before a kickoff (``declare_stream``) the datasets follow the present ``mode``.
        """
        source = f"PV:{self.file_path.pvname}"
        fields = self._fields if self._active else self._fields_for_mode()
        return {
            f"{self.name}_{field}": {
                "source": source,
                "shape": [],
                "dtype": "integer",
                "dtype_numpy": dtype,
                "external": "STREAM:",
            }
            for field, _, dtype in fields
        }

    def get_index(self) -> int:
        """Photons written and flushed so far (rows safe to read)."""
        return int(self.read_fresh(self.num_photons, "get_index"))

    def _rows_written(self) -> int:
        """Photons written and flushed: from the IOC, or from the file if the IOC is gone.

        A lost IOC leaves rows in the file after the last collect; the run's final collect
        announces them from the file, so nothing recorded is missing from the catalog.
        """
        try:
            return int(self.read_fresh(self.num_photons, "collect"))
        except IocLostError as lost:
            if not self._bundles:  # no file announced yet: nothing to read back
                raise
            datasets = [dataset for _, dataset, _ in self._fields]
            try:
                rows = rows_on_disk(self._path, datasets)
            except (OSError, KeyError) as exc:
                raise IocLostError(f"{lost}; the file cannot be read either ({exc})") from exc
            if rows <= self._emitted:
                raise
            logger.warning(
                "%s: %d photon rows written after the last collect, announced from %s",
                self.name,
                rows - self._emitted,
                self._path,
            )
            return rows

    def collect_asset_docs(self, index: int | None = None) -> Iterator[StreamAsset]:
        """StreamResource (once per file) and StreamDatum documents for the new photon rows.

        Parameters
        ----------
        index
            Announce rows up to this index at most (default: all written so far).
        """
        if not self._kicked_off:
            return
        written = self._rows_written()
        stop = written if index is None else min(written, int(index))
        docs: list[StreamAsset] = []
        with self._lock:  # build the documents under the lock, hand them out after it
            if not self._bundles:
                path = self.read_fresh(self.file_path, "collect")
                if not path:
                    return
                self._path = path
                uri = f"file://localhost{PurePosixPath(path)}"
                chunk_rows = int(self.read_fresh(self.chunk_rows, "collect"))
                compose = ComposeStreamResource()
                for field, dataset, _ in self._fields:
                    bundle = compose(
                        mimetype=HDF5_MIMETYPE,
                        uri=uri,
                        data_key=f"{self.name}_{field}",
                        parameters={
                            "dataset": dataset,
                            "chunk_shape": (chunk_rows,),
                            "swmr": True,
                        },
                    )
                    self._bundles[field] = bundle
                    docs.append(("stream_resource", bundle.stream_resource_doc))
            start = self._emitted
            if stop > start:
                for field, _, _ in self._fields:
                    datum = self._bundles[field].compose_stream_datum(
                        indices=StreamRange(start=start, stop=stop)
                    )
                    docs.append(("stream_datum", datum))
                self._emitted = stop
        yield from docs
