"""The live photon analyzer: a bluesky callback that turns raw qd runs into derived runs.

Threading
---------
The RunEngine calls its callbacks synchronously, and a callback that raises aborts the run. So
:meth:`LiveAnalyzer.__call__` only puts the document on a queue (a few microseconds, and it never
raises). One worker thread takes the documents off in order, keeps the bookkeeping of each run,
reads the newly announced photon rows from the file in bounded steps (``step_rows``) and emits
the derived documents to the callback it was given. The numba kernels release the GIL; between
steps the worker drains the queue, so markers and stop documents are seen promptly however far
behind the photons are.

The derived documents are emitted from the worker thread. When the same ``TiledWriter`` also
receives the raw documents from the RunEngine's thread, the two must not call it at once
(TiledWriter is not thread-safe): wrap it once in :class:`SerializedCallback` and give that
wrapper to both (:func:`subscribe_live_analysis` does exactly that).

Failures
--------
Any exception while analysing a run (a missing or corrupt file, a broken contract, a bug) is
logged and ends that run's derived run with ``exit_status="fail"`` and the reason; the raw run
and the other runs are not affected.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from event_model import DocumentRouter

from qd_bluesky.analysis import AnalysisError, QdBlueskyError

from ._background import NICE as BACKGROUND_NICE
from ._derived import DerivedRun
from ._engine import AnalysisSettings, ColumnRows, RunAnalysis
from ._streams import DERIVED_STREAMS

logger = logging.getLogger(__name__)

Callback = Callable[[str, dict], Any]

#: Rows per event page of the long at-stop streams (bounds the row dicts alive at once).
PAGE_ROWS = 10_000

_CLOSE = object()
_WAKE = object()  # the background of a run has rows to hand out


class SerializedCallback:
    """A callback behind a lock, so that several threads may call it in turn.

    Parameters
    ----------
    callback
        E.g. ``catalog.writer`` (a ``TiledWriter``, which is not thread-safe).
    lock
        The lock to hold; a new one by default.
    """

    def __init__(self, callback: Callback, lock: threading.Lock | None = None) -> None:
        self.callback = callback
        self.lock = lock if lock is not None else threading.Lock()

    def __call__(self, name: str, doc: dict) -> Any:
        with self.lock:
            return self.callback(name, doc)

    def __repr__(self) -> str:
        return f"SerializedCallback({self.callback!r})"


@dataclass
class RunOutcome:
    """How the analysis of one raw run ended.

    Attributes
    ----------
    raw_uid, derived_uid
        The raw run and the derived run written for it.
    exit_status, reason
        Of the derived run's stop document.
    photons
        Photons analysed.
    notes
        Non-fatal remarks (a fit without enough photons, ...).
    """

    raw_uid: str
    derived_uid: str
    exit_status: str
    reason: str
    photons: int
    notes: list[str] = field(default_factory=list)


def photon_file_path(uri: str) -> str:
    """The local path of a ``file://`` stream_resource URI."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise AnalysisError(f"photon stream_resource URI {uri!r} is not a local file")
    if parsed.netloc not in ("", "localhost"):
        raise AnalysisError(f"photon file {uri!r} lives on another host ({parsed.netloc})")
    return unquote(parsed.path)


class _Run(DocumentRouter):
    """The documents of one raw run, turned into calls of its :class:`RunAnalysis`."""

    def __init__(
        self,
        start: Mapping[str, Any],
        emit: Callback,
        settings: AnalysisSettings,
        replay: bool,
        *,
        nice: int = 0,
        wake: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.raw_uid = start["uid"]
        self.settings = settings
        self.emit_errors: list[str] = []
        self.descriptors: dict[str, str] = {}
        self.photon_resources: set[str] = set()
        self.stop_doc: dict | None = None
        self.done = False
        self.failure: str | None = None
        self.outcome: RunOutcome | None = None

        def guarded(name: str, doc: dict) -> None:
            # The derived run must not take the analyzer down with the writer.
            try:
                emit(name, doc)
            except Exception as exc:  # noqa: BLE001
                logger.exception("writing the derived run of %s failed", self.raw_uid)
                self.emit_errors.append(f"{type(exc).__name__}: {exc}")
                raise _EmitError from exc

        self.derived = DerivedRun(guarded, start, settings.metadata(), replay=replay)
        qd = start.get("qd")
        try:
            self.contract = _parse_contract(qd)
            self.engine = RunAnalysis(
                settings,
                continuous=self.contract["segments"] == "continuous",
                nice=nice,
                wake=wake,
                markers=_marker_program(start, self.contract),
            )
        except AnalysisError as exc:
            self.fail(str(exc))

    @property
    def busy(self) -> bool:
        if self.done:
            return False
        engine = self.engine
        return engine.has_work or engine.has_output or self.stop_doc is not None

    @property
    def behind(self) -> bool:
        """Work of the run's background (decays, g2, levels) is still to run."""
        return not self.done and self.engine.behind > 0

    def abandon_background(self) -> None:
        """Drop the background work not started (the run then fails, naming it)."""
        if not self.done:
            self.engine.abandon_background()

    # -- documents ---------------------------------------------------------------------------

    def handle(self, name: str, doc: dict) -> None:
        """Dispatch one document (a failed run only waits for its stop)."""
        if not self.done:
            self(name, doc)
        elif name == "stop":
            self.stop_doc = doc

    def descriptor(self, doc: dict) -> None:
        self.descriptors[doc["uid"]] = doc.get("name", "")

    def stream_resource(self, doc: dict) -> None:
        if doc.get("data_key") == self.contract["photon_keys"]["timestamps"]:
            self.photon_resources.add(doc["uid"])
            self.engine.set_path(photon_file_path(doc["uri"]))

    def stream_datum(self, doc: dict) -> None:
        if doc.get("stream_resource") in self.photon_resources:
            self.engine.announce(int(doc["indices"]["stop"]))

    def stop(self, doc: dict) -> None:
        self.stop_doc = doc

    def event(self, event: dict) -> None:
        # (event pages are unpacked into events by DocumentRouter)
        if self.descriptors.get(event["descriptor"]) != self.contract["marker_stream"]:
            return
        data = event["data"]
        key = self.contract["photon_index_key"]
        if key not in data:
            raise AnalysisError(
                f"marker event {event.get('seq_num')} of stream "
                f"{self.contract['marker_stream']!r} has no {key!r}"
            )
        bias_key = self.contract["bias_key"]
        bias = data.get(bias_key, math.nan) if bias_key else math.nan
        self.engine.add_marker(int(data[key]), float(bias), int(event.get("seq_num", 0)))

    # -- analysis ----------------------------------------------------------------------------

    def step(self) -> None:
        """One bounded step; at the end of the data after the raw stop, finish the run."""
        if self.done:
            return
        if self.engine.has_work or self.stop_doc is None:
            self._write(self.engine.step())
            return
        self._write(self.engine.finish(early=self._write))
        self._finish()

    def _write(self, rows: Mapping[str, Sequence]) -> None:
        for stream in DERIVED_STREAMS:
            values = rows.get(stream)
            if not values:
                continue
            if isinstance(values, ColumnRows):  # long at-stop streams: a page at a time
                for page in values.pages(PAGE_ROWS):
                    self.derived.write(stream, page)
            else:
                self.derived.write(stream, values)

    def _finish(self) -> None:
        notes = list(dict.fromkeys(self.engine.notes))
        raw_status = (self.stop_doc or {}).get("exit_status", "success")
        if raw_status != "success":
            notes.insert(
                0,
                f"the raw run ended with exit_status {raw_status!r}; "
                f"analysed the {self.engine.photons} photons it recorded",
            )
        self._close("success", "; ".join(notes))

    def fail(self, reason: str) -> None:
        """End the derived run with ``exit_status="fail"``."""
        self.failure = reason
        logger.error("analysis of run %s failed: %s", self.raw_uid, reason)
        self._close("fail", reason)

    def _close(self, exit_status: str, reason: str) -> None:
        if self.done:
            return
        self.done = True
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
        if self.emit_errors:
            exit_status = "fail"
            reason = f"writing the derived run failed: {self.emit_errors[0]}"
        if not self.derived.stopped:
            try:
                self.derived.stop(exit_status, reason)
            except _EmitError:
                exit_status = "fail"
                reason = f"writing the derived run failed: {self.emit_errors[0]}"
        self.outcome = RunOutcome(
            raw_uid=self.raw_uid,
            derived_uid=self.derived.uid,
            exit_status=exit_status,
            reason=reason,
            photons=engine.photons if engine is not None else 0,
            notes=list(engine.notes) if engine is not None else [],
        )


class _EmitError(Exception):
    """The derived-run callback raised (already logged)."""


def _parse_contract(qd: Any) -> dict[str, Any]:
    """Check the ``qd`` entry of a raw start document (see docs/run_contract)."""
    if not isinstance(qd, Mapping):
        raise AnalysisError("the raw start document has no 'qd' entry")
    if qd.get("schema") != 1:
        raise AnalysisError(f"unsupported qd schema {qd.get('schema')!r} (this analyzer: 1)")
    keys = qd.get("photon_keys")
    if not isinstance(keys, Mapping) or not keys.get("timestamps"):
        raise AnalysisError("the raw start document's qd.photon_keys names no 'timestamps' key")
    for name in ("photon_stream", "marker_stream", "photon_index_key"):
        if not isinstance(qd.get(name), str) or not qd[name]:
            raise AnalysisError(f"the raw start document's qd.{name} is missing")
    segments = qd.get("segments", "steps")
    if segments not in ("steps", "continuous"):
        raise AnalysisError(f"qd.segments must be 'steps' or 'continuous', got {segments!r}")
    return {**qd, "segments": segments, "bias_key": qd.get("bias_key") or None}


def _marker_program(start: Mapping[str, Any], qd: Mapping[str, Any]) -> dict[str, Any]:
    """What the potentiostat was told, for the card's marker records (its log: the plan's
    arguments): each segment's CV, the switching square wave, the trigger's marker input."""
    program: dict[str, Any] = {"channel": int(qd.get("trigger_channel", 1))}
    args = start.get("plan_args") or {}
    plan = start.get("plan_name")
    if plan in ("cv_scan", "bias_cycling") and isinstance(args, Mapping):
        try:
            cv = {name: float(args[name]) for name in ("start", "vertex", "end", "rate")}
            cv["cycles"] = 1 if plan == "bias_cycling" else int(args["cycles"])
        except (KeyError, TypeError, ValueError):
            return program  # not the plans' own arguments: no CV from the markers
        program["cv"] = cv
    switching = qd.get("switching")
    if isinstance(switching, Mapping):
        program["switching"] = {
            "period_s": float(switching["period_s"]),
            "bin_s": float(switching.get("bin_s", 0.0)),
        }
        program["channel"] = int(switching.get("trigger_channel", program["channel"]))
    return program


class LiveAnalyzer:
    """Analyse the photons of raw qd runs while they are acquired; emit derived runs.

    Subscribe it to a RunEngine. For every run whose start document carries the ``qd`` entry
    of the run contract it emits a derived run to ``callback``: a start document with
    ``raw_uid``; while the photons come, the ``trace`` and ``flid`` streams and, as each segment
    ends, ``decay`` and ``g2``; at the end ``bias_dependence``, ``flid_map``, ``scaling`` and (CV
    scans) ``tomography``. Other runs are ignored. Results depend on the photons and markers
    only, not on how the documents were split or ordered, so a replay gives the same numbers.

    Parameters
    ----------
    callback
        Receives the derived documents, e.g. ``catalog.writer`` wrapped in
        :class:`SerializedCallback` (see the module docstring).
    settings
        Binning, calibration, step size (:class:`AnalysisSettings`).
    threaded
        Analyse in a worker thread (default). With False every document is analysed inside
        the call, which suits a replay from the catalog but would slow a RunEngine down.
    replay
        Mark the derived runs as replays (``qd_analysis.replay`` in their start).

    Examples
    --------
    >>> analyzer = subscribe_live_analysis(RE, catalog.writer)   # doctest: +SKIP
    >>> RE(bias_steps(...))                                        # doctest: +SKIP
    >>> analyzer.wait(10)                                          # doctest: +SKIP
    """

    def __init__(
        self,
        callback: Callback,
        *,
        settings: AnalysisSettings | None = None,
        threaded: bool = True,
        replay: bool = False,
    ) -> None:
        self.callback = callback
        self.settings = settings or AnalysisSettings()
        self.replay = replay
        #: Outcome of every finished run, by raw uid.
        self.outcomes: dict[str, RunOutcome] = {}
        self._runs: dict[str, _Run] = {}
        self._by_descriptor: dict[str, str] = {}
        self._by_resource: dict[str, str] = {}
        self._latest: str | None = None
        self._cond = threading.Condition()
        self._idle = True
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._loop, name="qd-live-analyzer", daemon=True)
            self._thread.start()

    # -- the RunEngine side ------------------------------------------------------------------

    def __call__(self, name: str, doc: dict) -> None:
        """Take one document; never raises (an exception here would abort the raw run)."""
        try:
            doc = dict(doc)  # other callbacks may change the document later
            if self._queue is not None:
                self._queue.put((name, doc))
            else:
                self._handle(name, doc)
                self._work(until_idle=True)
        except Exception:  # noqa: BLE001 - must not reach the RunEngine
            logger.exception("the live analyzer could not take a %r document", name)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every document received so far is analysed; False on timeout."""
        if self._queue is None:
            return True
        with self._cond:
            return self._cond.wait_for(
                lambda: self._idle and self._queue.unfinished_tasks == 0, timeout
            )

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the queued documents and stop the worker thread.

        Runs still open (no raw stop document) end their derived run with "fail".
        """
        if self._thread is not None and self._thread.is_alive():
            self._queue.put((_CLOSE, None))
            self._thread.join(timeout)
            if self._thread.is_alive():
                # a run's background (decays, g2, levels) is still behind: drop its work
                for run in list(self._runs.values()):
                    run.abandon_background()
                self._thread.join(timeout)
        for run in list(self._runs.values()):
            run.fail("the analyzer was closed before the raw run ended")
            self._retire(run)

    def __enter__(self) -> LiveAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def derived_uids(self) -> dict[str, str]:
        """Derived run uid of every run seen (open or finished), by raw uid."""
        out = {uid: o.derived_uid for uid, o in self.outcomes.items()}
        out.update({uid: run.derived.uid for uid, run in list(self._runs.items())})
        return out

    # -- the worker --------------------------------------------------------------------------

    def _loop(self) -> None:
        q = self._queue
        while True:
            items = []
            busy = any(run.busy for run in self._runs.values())
            try:
                items.append(q.get(block=not busy))
            except queue.Empty:
                pass
            with self._cond:
                self._idle = False
            while True:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            closing = False
            for name, doc in items:
                if name is _CLOSE:
                    closing = True
                elif name is not _WAKE:
                    self._handle(name, doc)
                q.task_done()
            self._work(until_idle=closing)
            with self._cond:
                self._idle = q.empty() and not any(
                    run.busy or run.behind for run in self._runs.values()
                )
                self._cond.notify_all()
            if closing:
                return

    def _wake_worker(self) -> None:
        if self._queue is not None:
            self._queue.put((_WAKE, None))

    def _handle(self, name: str, doc: dict) -> None:
        """Route one document to its run."""
        try:
            run = self._route(name, doc)
        except Exception:  # noqa: BLE001 - a malformed document must not stop the worker
            logger.exception("the live analyzer cannot route a %r document", name)
            return
        if run is None:
            return
        try:
            run.handle(name, doc)
        except _EmitError:
            run.fail("writing the derived run failed")
        except Exception as exc:  # noqa: BLE001 - becomes the derived run's reason
            logger.debug("analysis failure", exc_info=True)
            run.fail(_reason(exc))
        if name == "stop" and run.done:
            self._retire(run)

    def _route(self, name: str, doc: dict) -> _Run | None:
        if name == "start":
            if "qd" not in doc:
                return None
            # Live, the background yields to the trace and FLID; a replay (unthreaded) uses
            # both cores alike.
            nice = BACKGROUND_NICE if self._queue is not None else 0
            run = _Run(
                doc, self.callback, self.settings, self.replay, nice=nice, wake=self._wake_worker
            )
            self._runs[run.raw_uid] = run
            self._latest = run.raw_uid
            return None
        if name == "descriptor":
            uid = doc.get("run_start")
            if uid in self._runs:
                self._by_descriptor[doc["uid"]] = uid
            return self._runs.get(uid)
        if name in ("event", "event_page"):
            return self._runs.get(self._by_descriptor.get(doc.get("descriptor")))
        if name == "stream_resource":
            uid = doc.get("run_start") or self._latest
            if uid in self._runs:
                self._by_resource[doc["uid"]] = uid
            return self._runs.get(uid)
        if name == "stream_datum":
            return self._runs.get(self._by_resource.get(doc.get("stream_resource")))
        if name == "stop":
            return self._runs.get(doc.get("run_start"))
        return None

    def _work(self, *, until_idle: bool) -> None:
        """One bounded step of every busy run (all steps with ``until_idle``)."""
        while True:
            busy = [run for run in self._runs.values() if run.busy]
            for run in busy:
                try:
                    run.step()
                except _EmitError:
                    run.fail("writing the derived run failed")
                except Exception as exc:  # noqa: BLE001 - becomes the derived run's reason
                    logger.debug("analysis failure", exc_info=True)
                    run.fail(_reason(exc))
                if run.done:
                    self._retire(run)
            if not until_idle or not busy:
                return

    def _retire(self, run: _Run) -> None:
        """Forget a finished run once its raw stop came (its outcome stays)."""
        if run.outcome is not None:
            self.outcomes[run.raw_uid] = run.outcome
        if run.stop_doc is None:
            return  # keep routing its documents until the raw stop
        self._runs.pop(run.raw_uid, None)
        self._by_descriptor = {k: v for k, v in self._by_descriptor.items() if v != run.raw_uid}
        self._by_resource = {k: v for k, v in self._by_resource.items() if v != run.raw_uid}


def _reason(exc: BaseException) -> str:
    """One line naming the problem."""
    text = " ".join(str(exc).split())
    if isinstance(exc, QdBlueskyError | OSError | ValueError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def subscribe_live_analysis(
    RE: Any,  # noqa: N803 - the conventional name of a RunEngine
    writer: Callback,
    *,
    settings: AnalysisSettings | None = None,
) -> LiveAnalyzer:
    """Subscribe ``writer`` and a :class:`LiveAnalyzer` writing into it to ``RE``.

    The writer (e.g. ``catalog.writer``) is wrapped in one :class:`SerializedCallback`, used
    for the raw documents (RunEngine thread) and the derived ones (analyzer thread). Do not
    also subscribe ``writer`` directly.

    Returns
    -------
    LiveAnalyzer
        With ``tokens``: the two subscription tokens, for ``RE.unsubscribe``.
    """
    serialized = writer if isinstance(writer, SerializedCallback) else SerializedCallback(writer)
    analyzer = LiveAnalyzer(serialized, settings=settings)
    analyzer.tokens = [RE.subscribe(serialized), RE.subscribe(analyzer)]
    return analyzer
