"""Plan stubs of the qd plans: building blocks that never open or close a run."""

import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Flyable, Movable, Readable, Reading, Status, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, short_uid

from . import _validate as check
from ._md import MARKER_STREAM, PHOTON_STREAM

logger = logging.getLogger(__name__)

#: Poll period while waiting for a stopped CV scan to end (s).
STOP_POLL_S = 0.02


@check.checks_at_call
def set_bias(potentiostat: Movable, bias: float) -> MsgGenerator[tuple[Status, ...]]:
    """Move the potentiostat to ``bias`` (V) and wait until the bias has settled.

    The bias is checked against the client-side safe window when the stub is called; the
    potentiostat itself refuses a bias outside the IOC's limits before anything is put. Its
    put completes only once the ramp is over and the settle time has passed.

    Parameters
    ----------
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`).
    bias : float
        Bias in V vs the quasi-reference electrode.

    Raises
    ------
    UnsafeBiasError
        ``bias`` outside the client-side safe window, at the call.
    """
    check.potentiostat(potentiostat, "set_bias")
    bias = check.bias(potentiostat, bias, "bias", "set_bias")
    return bps.mv(potentiostat, bias)


def mark_segment(
    tcspc: Flyable,
    potentiostat: Readable | None = None,
    readables: Sequence[Readable] = (),
    *,
    name: str = MARKER_STREAM,
) -> MsgGenerator[dict[str, Reading]]:
    """Record a segment marker: the photon index now, the bias and the rate meters.

    One event in ``name`` (``primary``) with ``tcspc.rates`` (``tcspc_num_photons`` is the
    number of photons in the file so far, i.e. the first row of the new segment), the
    potentiostat's readback and current, and ``readables``. The rate meters are read, not
    triggered: a trigger waits for a fresh 0.5 s gate, which would put the photon index
    up to a second after the bias settled. ``readables`` that can be triggered are triggered
    first (a slow one delays the photon index by its trigger time).

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (its ``rates`` are read).
    potentiostat : Readable, optional
        The potentiostat, if the marker carries a bias.
    readables : sequence of Readable
        Anything else to read in the marker.
    name : str
        The event stream (``primary`` in the qd run contract).

    Returns
    -------
    dict
        The readings of the event (empty when not run by a RunEngine).
    """
    triggerable = [r for r in readables if isinstance(r, Triggerable)]
    if triggerable:
        group = short_uid("marker")
        for dev in triggerable:
            yield from bps.trigger(dev, group=group)
        yield from bps.wait(group=group)
    readings: dict[str, Reading] = {}
    yield from bps.create(name)
    # The photon index first: it is the one that must be taken right now.
    for dev in (tcspc.rates, potentiostat, *readables):
        if dev is not None:
            reading: dict[str, Reading] | None = yield from bps.read(dev)  # type: ignore[assignment]
            readings.update(reading or {})
    yield from bps.save()
    return readings


def start_photons(tcspc: Flyable, *, stream: str = PHOTON_STREAM) -> MsgGenerator[None]:
    """Declare the photon stream and start the acquisition (a new photon file).

    Must run inside an open run. Returns once the IOC has opened the file.
    """
    yield from bps.declare_stream(tcspc, name=stream, collect=True)
    yield from bps.kickoff(tcspc, wait=True)


def finish_photons(tcspc: Flyable, *, stream: str = PHOTON_STREAM) -> MsgGenerator[None]:
    """Stop the acquisition, wait until the file is closed, and announce its last rows.

    When the card itself ended the acquisition with an error (e.g. its FIFO filled up), the
    rows it wrote are still announced, then the card's own one-line error is raised: it is
    the ``reason`` of the run's stop document.
    """
    try:
        yield from bps.complete(tcspc, wait=True)
    except FailedStatus as exc:
        cause = exc.__cause__
        if cause is None:
            raise
        yield from quietly(
            bps.collect(tcspc, name=stream, return_payload=False), "announcing the last rows"
        )
        raise cause from None
    yield from bps.collect(tcspc, name=stream, return_payload=False)


@check.checks_at_call
def acquire_photons(
    tcspc: Flyable,
    duration: float,
    collect_period: float = 0.5,
    *,
    stream: str = PHOTON_STREAM,
) -> MsgGenerator[None]:
    """Let photons come in for ``duration`` seconds, announcing new rows every ``collect_period``.

    The acquisition must be running (:func:`start_photons`). Each period starts with a
    ``collect`` (the first one announces the rows up to now, e.g. those before a marker) and
    the stub ends with a sleep exactly ``duration`` s after it started on the monotonic
    clock, so the time collecting takes (documents go to every subscriber, e.g. a catalog
    writer) is not added to the dwell. A simulator does not sleep: there the sleeps asked
    for stand in for the clock and add up to ``duration``.

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card, kicked off.
    duration : float
        Seconds.
    collect_period : float
        Seconds between ``collect`` messages (the live analyzer's latency).
    stream : str
        The declared photon stream.

    Raises
    ------
    ValueError
        ``duration`` or ``collect_period`` <= 0, at the call.
    """
    duration = check.positive(duration, "duration", "acquire_photons", "s")
    collect_period = check.positive(collect_period, "collect_period", "acquire_photons", "s")
    return _acquire_photons(tcspc, duration, collect_period, stream)


def _acquire_photons(
    tcspc: Flyable, duration: float, collect_period: float, stream: str
) -> MsgGenerator[None]:
    start = time.monotonic()
    slept = 0.0  # a simulator does not sleep: its clock is the sleeps asked for
    for _ in range(math.ceil(duration / collect_period) + 1):
        yield from bps.collect(tcspc, name=stream, return_payload=False)
        remaining = duration - max(time.monotonic() - start, slept)
        if remaining <= 0:
            break
        if remaining < 1.5 * collect_period:
            # The last period sleeps to the deadline: no collect left to overrun it.
            yield from bps.sleep(remaining)
            break
        yield from bps.sleep(collect_period)
        slept += collect_period


def collect_until_done(
    tcspc: Flyable,
    group: Hashable,
    collect_period: float = 0.5,
    *,
    stream: str = PHOTON_STREAM,
) -> MsgGenerator[None]:
    """Wait for the statuses of ``group``, announcing new photon rows every ``collect_period``.

    Like :func:`bluesky.plan_stubs.collect_while_completing`, for any group (e.g. a CV scan
    triggered with ``wait=False``). A failed status raises here.
    """
    while True:
        done = yield from bps.wait(group=group, timeout=collect_period, error_on_timeout=False)
        yield from bps.collect(tcspc, name=stream, return_payload=False)
        if done or done is None:  # None: a simulator, not a RunEngine
            return


@check.checks_at_call
def run_cv(
    potentiostat: Movable,
    start: float,
    vertex: float,
    end: float,
    rate: float,
    cycles: int = 1,
    *,
    group: Hashable | None = None,
    wait: bool = True,
) -> MsgGenerator[Status | None]:
    """Configure the potentiostat's CV waveform and run it (the IOC sweeps the bias).

    Parameters
    ----------
    potentiostat : Movable
        The potentiostat; its ``cv`` device runs the waveform.
    start, vertex, end : float
        Biases (V): the sweep goes start -> vertex -> end, ``cycles`` times.
    rate : float
        Sweep rate (V/s).
    cycles : int
        Number of cycles.
    group : hashable, optional
        Status group of the trigger (with ``wait=False``, wait on it later).
    wait : bool
        Wait until the waveform is over.

    Returns
    -------
    Status or None
        The trigger's status (None when not run by a RunEngine).

    Raises
    ------
    UnsafeBiasError
        A bias outside the client-side safe window, at the call.
    ValueError
        ``rate`` <= 0 or ``cycles`` < 1, at the call.
    """
    plan = "run_cv"
    check.potentiostat(potentiostat, plan, cv=True)
    for name, value in (("start", start), ("vertex", vertex), ("end", end)):
        check.bias(potentiostat, value, f"CV {name}", plan)
    rate = check.positive(rate, "rate", plan, "V/s")
    cycles = check.whole(cycles, "cycles", plan)
    return _run_cv(potentiostat, (start, vertex, end, rate, cycles), group, wait)


def _run_cv(
    potentiostat: Movable,
    waveform: tuple[float, float, float, float, int],
    group: Hashable | None,
    wait: bool,
) -> MsgGenerator[Status | None]:
    start, vertex, end, rate, cycles = waveform
    cv = potentiostat.cv
    yield from bps.mv(
        cv.start, start, cv.vertex, vertex, cv.end, end, cv.rate, rate, cv.cycles, cycles
    )
    group = group if group is not None else short_uid("cv")
    status = yield from bps.trigger(cv, group=group)
    if wait:
        yield from bps.wait(group=group)
    return status


def stop_cv(
    potentiostat: Movable, status: Status | None = None, *, timeout: float = 10.0
) -> MsgGenerator[None]:
    """Stop a running CV scan (abort) and wait until the potentiostat has let go of it.

    Parameters
    ----------
    potentiostat : Movable
        The potentiostat running the scan.
    status : Status, optional
        The scan's status (returned by :func:`run_cv`). If given, the stub waits until the
        scan is over (at most ``timeout`` s) and absorbs its expected failure: the RunEngine
        throws a failed status into the plan at the next message, and a stopped scan's
        status fails with a ``StoppedError`` by design. The scan's state is read with
        ``bps.rd`` (its ``progress``: a scan that reached 1 had finished, and its status
        does not fail); the status itself is only compared with the failed one.
    timeout : float
        Seconds to wait for the scan to end.
    """
    return stop_operation(potentiostat, potentiostat.cv.progress, status, timeout=timeout)


def stop_operation(
    potentiostat: Movable, progress: Any, status: Status | None, *, timeout: float = 10.0
) -> MsgGenerator[None]:
    """:func:`stop_cv` for any operation the IOC runs (a CV, a square wave): abort, then
    poll its ``progress`` until it is over; absorb the failure of its own ``status``."""
    try:
        yield from bps.stop(potentiostat)
        if status is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = yield from bps.rd(progress, default_value=1.0)
            if done >= 1.0:
                return
            yield from bps.sleep(STOP_POLL_S)
    except FailedStatus as exc:
        if status is None or not (exc.args and exc.args[0] is status):
            raise


# -- clean-up wrappers (private) ---------------------------------------------------------------


def quietly(plan: MsgGenerator[Any], what: str) -> MsgGenerator[Any]:
    """Run a clean-up plan; log (do not raise) its failure, so the original error is kept."""

    def log(exc: Exception) -> MsgGenerator[None]:
        logger.warning("%s failed during clean-up: %s", what, exc)
        yield from ()

    return (yield from bpp.contingency_wrapper(plan, except_plan=log, auto_raise=False))


def always(
    plan: MsgGenerator[Any], cleanup: Callable[[], MsgGenerator[Any]], what: str
) -> MsgGenerator[Any]:
    """Run ``plan``, then ``cleanup()`` whether ``plan`` succeeded, failed or was aborted.

    After a success a failing clean-up raises; after a failure it is only logged and the
    original exception propagates. (A closed generator, e.g. ``RE.halt()``, cannot yield
    any more messages: nothing is cleaned up then, as with ``bluesky.preprocessors``.)
    """
    return (
        yield from bpp.contingency_wrapper(
            plan, except_plan=lambda exc: quietly(cleanup(), what), else_plan=cleanup
        )
    )


def restoring_bias(potentiostat: Movable, plan: MsgGenerator[Any]) -> MsgGenerator[Any]:
    """Run ``plan`` and move the potentiostat back to the bias it had before, whatever happens."""
    before = yield from bps.rd(potentiostat)
    return (
        yield from always(
            plan,
            lambda: bps.mv(potentiostat, before),
            f"returning {getattr(potentiostat, 'name', 'the potentiostat')} to {before} V",
        )
    )
