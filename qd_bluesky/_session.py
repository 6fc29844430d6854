"""Everything an interactive or queueserver session needs, built in one call.

``qd_bluesky.startup`` puts the result into the user's namespace; tests and scripts call
:func:`build_session` directly. Nothing here waits for user input or needs a display.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variables read by the session (the CLI options of the same meaning win).
ENV_PREFIX = "QD_BLUESKY_PREFIX"
ENV_CATALOG = "QD_BLUESKY_CATALOG"
#: Seconds to wait for the IOCs when the session starts; a missing IOC is a warning, not an
#: error, so that a session opens before the hardware is switched on.
CONNECT_TIMEOUT_S = 5.0


class JsonMetadata(MutableMapping):
    """``RE.md`` kept in one JSON file, rewritten atomically on every change.

    Values must be JSON-serialisable, as every start-document value must be anyway.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        if self.path.exists():
            try:
                self._data = json.loads(self.path.read_text() or "{}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: RE.md file is not valid JSON ({exc})") from None

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        json.dumps(value)  # refuse what could not be stored, before changing anything
        with self._lock:
            self._data[key] = value
            self._save()

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._data[key]
            self._save()

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"JsonMetadata({str(self.path)!r}, {self._data!r})"


def interactive_display() -> bool:
    """True in an IPython session that can show figures."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or (os.name == "nt")


def build_session(
    *,
    prefix: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    catalog_uri: str | None = None,
    interactive: bool | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> dict[str, Any]:
    """Build the RunEngine, catalog, live analysis, devices and plans of a session.

    Parameters
    ----------
    prefix
        PV prefix of the instrument (``$QD_BLUESKY_PREFIX``, default ``"qd:"``).
    data_dir
        Data directory of the embedded catalog (``--data-dir`` / ``$QD_BLUESKY_DATA`` / a
        per-user default).
    catalog_uri
        A Tiled server instead of the embedded catalog (``$QD_BLUESKY_CATALOG``).
    interactive
        Progress bars, BestEffortCallback plots and live photon plots; default: only in an
        IPython session with a display.
    connect_timeout
        Seconds to wait for the IOCs; devices that do not answer are reported, not fatal.

    Returns
    -------
    dict
        The namespace: ``RE``, ``bec``, ``catalog``, ``analyzer``, ``live_plots``, ``pot``,
        ``tcspc``, ``laser``, ``stage``, ``instrument``, ``bp``, ``bps``, the qd plans, and
        ``interlock_suspender``.
    """
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.suspenders import SuspendWhenChanged
    from bluesky.utils import ProgressBarManager

    from . import plans as qd_plans
    from .callbacks import LivePhotonPlots, subscribe_live_analysis
    from .catalog import open_catalog
    from .devices import InstrumentNotConnectedError, connect_instrument, make_instrument

    if interactive is None:
        interactive = interactive_display()
    prefix = prefix or os.environ.get(ENV_PREFIX, "qd:")
    catalog = open_catalog(data_dir, uri=catalog_uri or os.environ.get(ENV_CATALOG) or None)

    RE = RunEngine(JsonMetadata(catalog.data_dir / "RE_md.json"))  # noqa: N806
    bec = BestEffortCallback()
    if not interactive:
        bec.disable_plots()
    RE.subscribe(bec)
    if interactive:
        RE.waiting_hook = ProgressBarManager()

    live_plots = LivePhotonPlots()

    def writer(name: str, doc: dict) -> None:
        catalog.writer(name, doc)
        live_plots(name, doc)

    analyzer = subscribe_live_analysis(RE, writer)
    if interactive:
        live_plots.show()

    try:
        instrument = connect_instrument(prefix, timeout=connect_timeout)
    except InstrumentNotConnectedError as exc:
        logger.warning("%s", exc)
        instrument = make_instrument(prefix)

    # Pause (and resume) plans while the laser interlock is open.
    interlock_suspender = SuspendWhenChanged(
        instrument.laser.interlock, expected_value="closed", allow_resume=True, sleep=1.0
    )
    RE.install_suspender(interlock_suspender)

    namespace: dict[str, Any] = {
        "RE": RE,
        "bec": bec,
        "catalog": catalog,
        "analyzer": analyzer,
        "live_plots": live_plots,
        "instrument": instrument,
        "interlock_suspender": interlock_suspender,
        "bp": bp,
        "bps": bps,
        **instrument.as_dict(),
    }
    namespace.update({name: getattr(qd_plans, name) for name in qd_plans.__all__})
    return namespace
