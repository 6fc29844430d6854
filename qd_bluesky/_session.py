"""One session factory for every entry point: IPython, queueserver, ``qd-bluesky run``, demo.

:func:`open_session` assembles the RunEngine (``RE.md`` persisted in the data directory, with a
``scan_id`` that keeps increasing across sessions and processes), the catalog (embedded or a
Tiled server), the live analysis writing derived runs, the devices, the laser-interlock
suspender and, for a person at a terminal, the BestEffortCallback, progress bars and live
plots. Inside a bluesky-queueserver worker the interactive parts stay off.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import QdBlueskyError

if TYPE_CHECKING:
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.suspenders import SuspendWhenChanged

    from .callbacks import LiveAnalyzer, LivePhotonPlots, PhotonProbe
    from .catalog import Catalog
    from .devices import Instrument

logger = logging.getLogger(__name__)

#: Environment variables read by the session (the command-line options of the same meaning win).
ENV_PREFIX = "QD_BLUESKY_PREFIX"
ENV_CATALOG = "QD_BLUESKY_CATALOG"
ENV_PORT = "QD_BLUESKY_CA_PORT"
#: The stage's three motor records (x y z, e.g. ``PI:m1 PI:m2 PI:m3``) if not ``{prefix}stage:x``.
ENV_STAGE_MOTORS = "QD_BLUESKY_STAGE_MOTORS"
#: The PV prefix when neither an option nor ``$QD_BLUESKY_PREFIX`` gives one.
DEFAULT_PREFIX = "qd:"
#: Seconds to wait for the IOCs when the session starts.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a closing session waits for the live analysis to write its derived runs.
CLOSE_TIMEOUT_S = 60.0
#: Name of the session's PhotonProbe (the detector of ``adaptive_bias_map``).
DOT_PROBE_NAME = "dot_probe"
#: File of ``RE.md`` inside the data directory.
METADATA_FILE = "RE_md.json"


class JsonMetadata(MutableMapping):
    """``RE.md`` kept in one JSON file, rewritten atomically on every change.

    Several processes may share the file (an IPython session, ``qd-bluesky run``, a queueserver
    worker): every read sees the file's latest content, and :meth:`next_scan_id` increments
    ``scan_id`` under an exclusive file lock, so scan ids never repeat in a shared data
    directory. A deep copy (the RunEngine makes one at every ``open_run``) is a plain dict.

    Values must be JSON-serialisable, as every start-document value must be anyway.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, Any] = {}
        self._stamp: tuple[int, int] | None = None
        self._refresh()

    # ---- the file --------------------------------------------------------------------------

    def _refresh(self) -> dict[str, Any]:
        """The content, re-read only when the file changed since the last read."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._data
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._data = json.loads(self.path.read_text() or "{}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: RE.md file is not valid JSON ({exc})") from None
            self._stamp = stamp
        return self._data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Exclusive access across processes: read the newest content, then write it back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._refresh()
                yield data
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)
                stat = self.path.stat()
                self._stamp = (stat.st_mtime_ns, stat.st_size)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def next_scan_id(self, md: Any = None) -> int:
        """Increment and return ``scan_id``: the RunEngine's ``scan_id_source``."""
        with self._locked() as data:
            data["scan_id"] = int(data.get("scan_id", 0)) + 1
            return data["scan_id"]

    # ---- the mapping -----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._refresh()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        json.dumps(value)  # refuse what could not be stored, before changing anything
        with self._locked() as data:
            data[key] = value

    def __delitem__(self, key: str) -> None:
        with self._locked() as data:
            del data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._refresh()))

    def __len__(self) -> int:
        return len(self._refresh())

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self._refresh()), memo)

    def __repr__(self) -> str:
        return f"JsonMetadata({str(self.path)!r}, {self._refresh()!r})"


class _Both:
    """Documents to the catalog writer, then to the live plots."""

    def __init__(self, writer: Callable[[str, dict], Any], plots: Callable[[str, dict], Any]):
        self.writer, self.plots = writer, plots

    def __call__(self, name: str, doc: dict) -> None:
        self.writer(name, doc)
        self.plots(name, doc)


def plan_namespace() -> dict[str, Any]:
    """``bp``, ``bps`` and every name of :mod:`qd_bluesky.plans` (plans, stubs, helpers)."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp

    from . import plans as qd_plans

    return {"bp": bp, "bps": bps, **{name: getattr(qd_plans, name) for name in qd_plans.__all__}}


def wait_for_analysis_after(
    analyzer: LiveAnalyzer, timeout: float = CLOSE_TIMEOUT_S
) -> Callable[[Any], Any]:
    """A RunEngine preprocessor: each plan ends once its derived runs are written.

    For the queueserver worker, which may close the environment (and the embedded catalog
    with it) right after the last plan. The wait runs in an executor, so the RunEngine stays
    responsive; an analysis that does not finish within ``timeout`` is logged by the analyzer
    and the plan ends all the same.
    """
    import asyncio

    import bluesky.plan_stubs as bps
    from bluesky.preprocessors import finalize_wrapper

    def drained() -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(None, analyzer.wait, timeout)

    def preprocessor(plan: Any) -> Any:
        return finalize_wrapper(plan, bps.wait_for([drained]))

    return preprocessor


@contextlib.contextmanager
def ctrl_c_pauses(RE: Any) -> Iterator[threading.Event]:  # noqa: N803 - bluesky's name
    """Within the block, Ctrl-C sets the yielded event and pauses ``RE`` at once.

    The plan then returns (``RunEngineInterrupted``) instead of Python raising
    ``KeyboardInterrupt`` mid-statement; the caller ends what was recorded. The previous
    SIGINT handler comes back on leaving the block.
    """
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        RE.request_pause(defer=False)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def ca_client_environment(port: int) -> dict[str, str]:
    """Channel Access client settings that find IOCs serving on 127.0.0.1:``port`` only."""
    if not 1 <= port <= 65535:
        raise ValueError(f"CA port must be in 1..65535, not {port}")
    return {"EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}", "EPICS_CA_AUTO_ADDR_LIST": "NO"}


def in_queueserver_worker() -> bool:
    """True inside a bluesky-queueserver RE Worker."""
    try:
        from bluesky_queueserver import is_re_worker_active
    except ImportError:
        return False
    return bool(is_re_worker_active())


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


@dataclass
class Session:
    """What :func:`open_session` assembled. Close it (or use ``with``) when done.

    Attributes
    ----------
    RE : bluesky.RunEngine
        Subscribed to the catalog writer and the live analysis.
    catalog : qd_bluesky.catalog.Catalog
        Where raw and derived runs go.
    analyzer : qd_bluesky.callbacks.LiveAnalyzer
        The live photon analysis; ``analyzer.outcomes[raw_uid]`` names each derived run.
    instrument : qd_bluesky.devices.Instrument
        ``pot``, ``tcspc``, ``laser``, ``stage``.
    interlock_suspender : bluesky.suspenders.SuspendWhenChanged
        Pauses plans while the laser interlock is open.
    bec : BestEffortCallback or None
        The live table (and plots, with a display); None for commands.
    live_plots : LivePhotonPlots or None
        Live trace, FLID and decay; only with a display.
    dot_probe : PhotonProbe or None
        The dot's intensity and lifetime since the last segment marker, a detector for
        :func:`qd_bluesky.plans.adaptive_bias_map` (subscribed to ``RE``).
    """

    RE: RunEngine
    catalog: Catalog
    analyzer: LiveAnalyzer
    instrument: Instrument
    interlock_suspender: SuspendWhenChanged
    bec: BestEffortCallback | None = None
    live_plots: LivePhotonPlots | None = None
    dot_probe: PhotonProbe | None = None
    _closed: bool = field(default=False, repr=False)

    def namespace(self) -> dict[str, Any]:
        """The names of an interactive or queueserver session: ``RE``, ``catalog``, the
        devices, ``bp``, ``bps`` and the qd plans and plan stubs."""
        return {
            **plan_namespace(),
            "session": self,
            "RE": self.RE,
            "bec": self.bec,
            "catalog": self.catalog,
            "analyzer": self.analyzer,
            "live_plots": self.live_plots,
            "instrument": self.instrument,
            "interlock_suspender": self.interlock_suspender,
            DOT_PROBE_NAME: self.dot_probe,
            **self.instrument.as_dict(),
        }

    def wait_for_analysis(self, timeout: float | None = CLOSE_TIMEOUT_S) -> bool:
        """Block until the live analysis has written everything recorded so far."""
        return self.analyzer.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Let the derived runs reach the catalog, disconnect the devices, close the catalog.

        Idempotent; also run when the interpreter exits.
        """
        if self._closed:
            return
        self._closed = True
        if not self.analyzer.wait(timeout):
            logger.warning("the live analysis did not finish within %g s", timeout)
        self.analyzer.close(timeout)
        for device in self.instrument:
            device.destroy()
        self.catalog.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(
    *,
    prefix: str | None = None,
    port: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    catalog_uri: str | None = None,
    api_key: str | None = None,
    require_instrument: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    interactive: bool | None = None,
    progress: bool | None = None,
    handle_sigint: bool = True,
) -> Session:
    """Open the RunEngine, catalog, live analysis and devices of a qd session.

    Parameters
    ----------
    prefix
        PV prefix of the instrument (default ``$QD_BLUESKY_PREFIX``, else ``"qd:"``). The
        stage's motor records are ``{prefix}stage:x`` ... unless ``$QD_BLUESKY_STAGE_MOTORS``
        names three (x y z).
    port
        Find the IOCs on 127.0.0.1 at this Channel Access port (``qd-bluesky sim --port``)
        instead of by ``EPICS_CA_ADDR_LIST`` (default ``$QD_BLUESKY_CA_PORT``). Takes effect
        for the first session of a process only: Channel Access reads its settings once.
    data_dir
        The data directory (``--data-dir``, else ``$QD_BLUESKY_DATA``, else the per-user one):
        photon files, ``RE.md`` and, without ``catalog_uri``, the embedded catalog.
    catalog_uri
        A Tiled server instead of the embedded catalog (default ``$QD_BLUESKY_CATALOG``).
    api_key
        The Tiled server's API key (default ``$TILED_API_KEY``).
    require_instrument
        True: an IOC that does not answer within ``connect_timeout`` is an error (commands).
        False: a warning, so that a session opens before the hardware is switched on.
    connect_timeout
        Seconds to wait for the IOCs.
    interactive
        A person at an IPython prompt: the BestEffortCallback's table (and plots and live
        photon plots with a display) and progress bars. Default: in IPython, outside a
        queueserver worker. A queueserver worker gets the table without plots.
    progress
        Progress bars of moves and ramps on stderr; default: ``interactive``.
    handle_sigint
        Let the RunEngine handle Ctrl-C (pause at the next checkpoint). False for a caller
        that handles SIGINT itself.

    Returns
    -------
    Session

    Raises
    ------
    CatalogError
        The catalog cannot be opened (a missing server, a foreign database).
    InstrumentNotConnectedError
        ``require_instrument`` and an IOC does not answer; one line naming it.
    ValueError
        ``connect_timeout`` <= 0, a port outside 1..65535, or ``$QD_BLUESKY_STAGE_MOTORS`` not
        three record names.
    """
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.suspenders import SuspendWhenChanged
    from bluesky.utils import ProgressBarManager

    from .callbacks import LivePhotonPlots, PhotonProbe, subscribe_live_analysis
    from .catalog import open_catalog
    from .devices import InstrumentNotConnectedError, connect_instrument, make_instrument

    if connect_timeout <= 0:
        raise ValueError(f"connect_timeout must be > 0 s, not {connect_timeout}")
    if port is None and os.environ.get(ENV_PORT):
        try:
            port = int(os.environ[ENV_PORT])
        except ValueError:
            value = os.environ[ENV_PORT]
            raise ValueError(f"${ENV_PORT} must be a port number, not {value!r}") from None
    if port is not None:
        os.environ.update(ca_client_environment(port))
    worker = in_queueserver_worker()
    if interactive is None:
        interactive = _in_ipython() and not worker
    if progress is None:
        progress = interactive
    display = interactive and _has_display()
    prefix = prefix or os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX
    stage_motors = os.environ.get(ENV_STAGE_MOTORS, "").replace(",", " ").split() or None

    _install_one_line_log_filter()
    catalog = open_catalog(
        data_dir, uri=catalog_uri or os.environ.get(ENV_CATALOG) or None, api_key=api_key
    )
    try:
        md = JsonMetadata(catalog.data_dir / METADATA_FILE)
        RE = RunEngine(  # noqa: N806 - the conventional name
            md,  # pyright: ignore[reportArgumentType] - any MutableMapping persists RE.md
            scan_id_source=md.next_scan_id,
            context_managers=None if handle_sigint else [],
        )
        bec = None
        if interactive or worker:
            bec = BestEffortCallback()
            if not display:
                bec.disable_plots()
            RE.subscribe(bec)
        if progress:
            RE.waiting_hook = ProgressBarManager()  # pyright: ignore[reportAttributeAccessIssue]
            # ophyd's move progress divides by |initial - target|: 0 for a move in place.
            warnings.filterwarnings(
                "ignore", "invalid value encountered", RuntimeWarning, "ophyd.status"
            )

        live_plots = LivePhotonPlots() if display else None
        analyzer = subscribe_live_analysis(
            RE, catalog.writer if live_plots is None else _Both(catalog.writer, live_plots)
        )
        dot_probe = PhotonProbe(DOT_PROBE_NAME)
        RE.subscribe(dot_probe)
        if worker:
            RE.preprocessors.append(wait_for_analysis_after(analyzer))
        if live_plots is not None:
            live_plots.show()

        try:
            instrument = connect_instrument(
                prefix, timeout=connect_timeout, stage_motors=stage_motors
            )
        except InstrumentNotConnectedError as exc:
            if require_instrument:
                analyzer.close(0)
                raise
            logger.warning("%s", exc)
            instrument = make_instrument(prefix, stage_motors=stage_motors)
    except BaseException:
        catalog.close()
        raise

    # Pause (and resume) plans while the laser interlock is open.
    interlock_suspender = SuspendWhenChanged(
        instrument.laser.interlock, expected_value="closed", allow_resume=True, sleep=1
    )
    RE.install_suspender(interlock_suspender)
    session = Session(
        RE=RE,
        catalog=catalog,
        analyzer=analyzer,
        instrument=instrument,
        interlock_suspender=interlock_suspender,
        bec=bec,
        live_plots=live_plots,
        dot_probe=dot_probe,
    )
    # Close before the interpreter joins its threads: the embedded catalog's in-process Tiled
    # app registers its own shutdown there (threading's exit hooks run last-registered first),
    # and it hangs if the catalog is still open; ``atexit`` would run too late.
    threading._register_atexit(_close_at_exit, session, worker)  # type: ignore[attr-defined]
    return session


def _close_at_exit(session: Session, worker: bool) -> None:
    """Close the session, then Channel Access (the process ends: no device will follow).

    A queueserver worker leaves Channel Access to the process's end: its manager gives it 0.5 s
    to exit once it has confirmed (bluesky-queueserver's ``_confirm_re_worker_exit``), and
    closing every circuit takes about a second.
    """
    from .devices import disconnect_channel_access

    session.close()
    if not worker:
        disconnect_channel_access()


class _OneLineUserErrors(logging.Filter):
    """Log the RunEngine's "Run aborted" for a user error as one line, without a traceback.

    The error's message already names the problem; the traceback goes through the RunEngine's
    internals and buries it. Other exceptions keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, QdBlueskyError):
            record.msg = (
                f"{record.getMessage()}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            )
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _install_one_line_log_filter() -> None:
    bluesky_logger = logging.getLogger("bluesky")
    if not any(isinstance(f, _OneLineUserErrors) for f in bluesky_logger.filters):
        bluesky_logger.addFilter(_OneLineUserErrors())


def one_line_errors_in_ipython() -> None:
    """Show the project's user errors in IPython as one line, as the command line does.

    A :class:`~qd_bluesky.QdBlueskyError` (an unsafe bias, a missing IOC, a bad file) names its
    problem in its message; the traceback through the RunEngine only hides it.
    ``%xmode``-style full tracebacks stay available with ``%tb``.
    """
    if not _in_ipython():
        return
    from IPython import get_ipython

    def show(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
        print(f"{etype.__name__}: {' '.join(str(value).split())}", file=sys.stderr)

    get_ipython().set_custom_exc((QdBlueskyError,), show)
