"""Status helpers: fail fast when an IOC goes away, report progress to bluesky's progress bars."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ophyd import Device, Signal
from ophyd.status import DeviceStatus, StatusBase
from ophyd.utils import InvalidState

from ._errors import IocLostError

#: Slack added to the expected duration of an operation before its status times out (s).
TIMEOUT_MARGIN_S = 5.0
#: Factor on the expected duration of an operation (a loaded machine runs slower).
TIMEOUT_FACTOR = 1.5


@contextlib.contextmanager
def lost_on_timeout(make_error: Callable[[], BaseException]) -> Iterator[None]:
    """Turn a CA timeout or disconnection inside the block into ``make_error()``.

    Reading a PV of a dead IOC waits for the connection timeout and then raises ophyd's or
    caproto's TimeoutError; callers get one clear error instead.
    """
    try:
        yield
    except IocLostError:
        raise
    except (TimeoutError, ConnectionError) as exc:
        raise make_error() from exc


def bounded_timeout(expected_s: float) -> float:
    """Timeout for an operation expected to take ``expected_s`` seconds."""
    return TIMEOUT_FACTOR * max(0.0, expected_s) + TIMEOUT_MARGIN_S


def fail_status(status: StatusBase, exc: BaseException) -> None:
    """Mark ``status`` failed with ``exc`` unless it already finished."""
    if status.done:
        return
    try:
        status.set_exception(exc)
    except InvalidState:
        pass  # finished meanwhile (another thread)


def fail_on_disconnect(
    status: StatusBase,
    signals: Iterable[Signal],
    make_error: Callable[[], BaseException],
    *,
    fail: Callable[[Any, BaseException], None] = fail_status,
) -> None:
    """Fail ``status`` with ``make_error()`` as soon as one of ``signals`` disconnects.

    A put callback never arrives from a dead IOC; the connection callback does, at once when
    the IOC's TCP circuit closes. ``fail(status, exc)`` does the failing.
    """
    signals = list(signals)
    tokens: list[tuple[Signal, int]] = []

    def on_meta(*, connected: bool = True, **kwargs: Any) -> None:
        if not connected:
            fail(status, make_error())

    for sig in signals:
        tokens.append((sig, sig.subscribe(on_meta, event_type=sig.SUB_META, run=False)))

    def cleanup(_status: StatusBase) -> None:
        for sig, token in tokens:
            sig.unsubscribe(token)

    status.add_callback(cleanup)
    if not all(sig.connected for sig in signals):
        fail(status, make_error())


def fail_on_message(
    status: StatusBase, signal: Signal, make_error: Callable[[str], BaseException]
) -> None:
    """Fail ``status`` when ``signal`` (an IOC's error text) reports a refusal of the request.

    The IOC clears the text when a request arrives and sets it when it refuses: only a text
    that follows a clearing counts, so a message still in flight from an earlier refusal
    cannot fail this request.
    """
    armed = False

    def on_value(*, value: Any, **kwargs: Any) -> None:
        nonlocal armed
        if not value:
            armed = True
        elif armed:
            fail_status(status, make_error(str(value)))

    token = signal.subscribe(on_value, run=False)
    status.add_callback(lambda _st: signal.unsubscribe(token))


def follow(
    outer: StatusBase,
    inner: StatusBase,
    translate: Callable[[BaseException], BaseException],
    *,
    before: Callable[[], None] | None = None,
    verify: Callable[[], BaseException | None] | None = None,
) -> None:
    """Finish ``outer`` when ``inner`` finishes; failures pass through ``translate``.

    When ``inner`` succeeded, ``before()`` runs first (e.g. to wait for a last monitor) and
    ``verify()`` may still turn the success into a failure by returning an exception.
    """

    def done(st: StatusBase) -> None:
        exc = st.exception()
        if isinstance(exc, type):  # ophyd keeps what it was given, a class included
            exc = exc()
        if exc is None:
            if before is not None:
                before()
            if verify is not None:
                exc = verify()
        if exc is None:
            if not outer.done:
                try:
                    outer.set_finished()
                except InvalidState:
                    pass
        else:
            fail_status(outer, translate(exc))

    inner.add_callback(done)


class ProgressStatus(DeviceStatus):
    """A status that tells watchers (bluesky's progress bars) how far an IOC-run task is.

    Parameters
    ----------
    device
        The device doing the work (its name labels the progress bar).
    progress
        Signal with the fraction done (0..1), updated by the IOC.
    duration_s
        Expected duration (s), used for ``time_remaining``.
    """

    def __init__(self, device: Device, *, progress: Signal, duration_s: float, **kwargs) -> None:
        self._progress_signal = progress
        self._duration_s = float(duration_s)
        self._start = time.monotonic()
        self._token: int | None = None
        super().__init__(device, **kwargs)
        self.add_callback(self._unsubscribe)

    def watch(self, func: Callable[..., None]) -> None:
        self._watchers.append(func)
        if self._token is None and not self.done:
            self._token = self._progress_signal.subscribe(self._notify, run=False)
        func(name=self.device.name, fraction=1.0, initial=0.0, target=self._duration_s, unit="s")

    def _notify(self, *, value: float, **kwargs: Any) -> None:
        done = min(max(float(value), 0.0), 1.0)
        elapsed = time.monotonic() - self._start
        for watcher in list(self._watchers):
            watcher(
                name=self.device.name,
                current=done * self._duration_s,
                initial=0.0,
                target=self._duration_s,
                unit="s",
                precision=1,
                fraction=1.0 - done,  # bluesky's convention: the fraction still to go
                time_elapsed=elapsed,
                time_remaining=max(0.0, (1.0 - done) * self._duration_s),
            )

    def _unsubscribe(self, _status: StatusBase) -> None:
        if self._token is not None:
            self._progress_signal.unsubscribe(self._token)
            self._token = None
