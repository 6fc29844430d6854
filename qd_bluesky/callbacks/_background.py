"""The analysis that may run behind the photons: one low-priority worker thread per run.

The 0.5 s bound of the live analyzer holds for the ``trace`` and ``flid`` streams. The per-segment
decay and g2 (reported when a segment ends) and the levels (change points) may lag, so
:class:`~._engine.RunAnalysis` hands them to a :class:`Background`: jobs run one after the
other, in the order submitted, so every result is the one the serial analysis gives. The
thread runs at a lower scheduling priority (Linux: per-thread nice), and its work is in numba
kernels that release the GIL, so it takes what the time-critical path leaves of the cores.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Nice increment of the background thread (where the platform allows per-thread niceness).
NICE = 10


class BackgroundClosed(RuntimeError):
    """Jobs were dropped by :meth:`Background.close` before they ran."""


class Background:
    """Run jobs in order in one worker thread (or inline, with ``threaded=False``).

    Parameters
    ----------
    threaded
        Run the jobs in a worker thread; else each runs inside :meth:`submit`.
    wake
        Called (from the worker) after a job, so that whoever emits the jobs' output looks.
    name
        Of the thread.
    nice
        How much lower the thread's scheduling priority is (0: as the caller's). The live
        analyzer's background yields to its trace and FLID; a replay's need not.

    Notes
    -----
    A job that raises stops the jobs after it; :meth:`check` (and :meth:`wait`) raise its
    exception in the caller's thread.
    """

    def __init__(
        self,
        *,
        threaded: bool = True,
        wake: Callable[[], None] | None = None,
        name: str = "qd-background",
        nice: int = 0,
    ) -> None:
        self._jobs: deque[tuple[Callable[..., Any], tuple]] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._closed = False
        self._error: BaseException | None = None
        self._dropped = 0
        self._wake = wake
        self._nice = nice
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Run ``job(*args)`` after the jobs submitted before it."""
        self.check()
        if self._thread is None:
            self._run(job, args)
            self.check()
            return
        with self._cond:
            self._jobs.append((job, args))
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished."""
        with self._cond:
            return len(self._jobs) + int(self._running)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job submitted so far has run (then :meth:`check`).

        Raises
        ------
        BackgroundClosed
            :meth:`close` dropped jobs that had not run.
        """
        with self._cond:
            done = self._cond.wait_for(
                lambda: (
                    (not self._jobs and not self._running)
                    or self._error is not None
                    or self._dropped
                ),
                timeout,
            )
        self.check()
        return done

    def check(self) -> None:
        """Raise the exception of a failed job, if any (or that jobs were dropped)."""
        if self._error is not None:
            raise self._error
        if self._dropped:
            raise BackgroundClosed(f"the analysis was closed with {self._dropped} jobs not run")

    def close(self) -> None:
        """Drop the jobs not started and end the thread (after the running job)."""
        with self._cond:
            self._closed = True
            self._dropped += len(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self, job: Callable[..., Any], args: tuple) -> None:
        try:
            job(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by check()
            self._error = exc

    def _loop(self) -> None:
        if self._nice:
            _lower_priority(self._nice)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed)
                if self._closed:
                    return
                job, args = self._jobs.popleft()
                self._running = True
            if self._error is None:
                self._run(job, args)
            with self._cond:
                self._running = False
                if self._error is not None:
                    self._jobs.clear()
                self._cond.notify_all()
            if self._wake is not None:
                try:
                    self._wake()
                except Exception:  # noqa: BLE001 - waking is a courtesy
                    logger.debug("waking the analyzer failed", exc_info=True)


def _lower_priority(nice: int) -> None:
    """Nice this thread only (Linux applies setpriority to a thread id)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass
