"""Replay: run the live analyzer again over a stored raw run and compare with the live result."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ._derived import PLAN_NAME
from ._engine import AnalysisSettings
from ._live import LiveAnalyzer
from ._streams import REPLAY_COMPARED

if TYPE_CHECKING:
    from qd_bluesky.catalog import Catalog

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """The outcome of :func:`replay`.

    Attributes
    ----------
    raw_uid
        The raw run replayed.
    derived_uid
        The derived run the replay wrote (None with ``write=False``).
    live_uid
        The derived run written live (the first one that is not a replay), or None.
    matches_live
        True when the FLID, the decay histograms and the g2 counts of the replay equal those
        of the live derived run exactly; None when there is no live derived run to compare.
    exit_status, reason
        Of the replayed derived run.
    photons
        Photons analysed.
    differences
        What differs, one line each (empty when ``matches_live``).
    seconds
        Wall time of the replay (documents read, analysed, written, compared).
    """

    raw_uid: str
    derived_uid: str | None
    live_uid: str | None
    matches_live: bool | None
    exit_status: str
    reason: str
    photons: int
    differences: list[str] = field(default_factory=list)
    seconds: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``qd-bluesky replay --json``)."""
        out = asdict(self)
        out["seconds"] = None if not math.isfinite(self.seconds) else self.seconds
        return out


class _Tee:
    """Pass derived documents on, keeping the compared fields of every event page."""

    def __init__(self, callback) -> None:
        self.callback = callback
        self.streams: dict[str, str] = {}
        self.data: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self.streams[doc["uid"]] = doc["name"]
        elif name == "event_page":
            stream = self.streams.get(doc["descriptor"])
            if stream in REPLAY_COMPARED:
                for key, values in doc["data"].items():
                    self.data[stream][key].extend(values)
        if self.callback is not None:
            self.callback(name, doc)


def _derived_writer(catalog: Catalog) -> Any:
    """The catalog's writer for derived runs (without the normalizer), else its writer."""
    return getattr(catalog, "derived_writer", None) or catalog.writer


def find_live_derived(catalog: Catalog | Any, raw_uid: str) -> Any | None:
    """The derived run written live for ``raw_uid`` (the first that is not a replay), or None."""
    from tiled.queries import Eq

    client = getattr(catalog, "client", catalog)
    found = []
    for _, node in client.search(Eq("start.raw_uid", raw_uid)).items():
        start = node.metadata.get("start") or {}
        analysis = start.get("qd_analysis") or {}
        if start.get("plan_name") == PLAN_NAME and not analysis.get("replay"):
            found.append((start.get("time") or 0.0, node))
    found.sort(key=lambda pair: pair[0])
    return found[0][1] if found else None


def _settings_of(derived: Any | None) -> AnalysisSettings:
    """The settings the live analysis used (so that the replay repeats it), else defaults."""
    if derived is None:
        return AnalysisSettings()
    stored = ((derived.metadata.get("start") or {}).get("qd_analysis") or {}).get("settings")
    if not isinstance(stored, Mapping):
        return AnalysisSettings()
    known = {f.name for f in fields(AnalysisSettings)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    return AnalysisSettings(**kwargs)


def _values(stream_data: Mapping[str, Any], key: str) -> np.ndarray | None:
    if key not in stream_data:
        return None
    return np.asarray(stream_data[key])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_derived_runs(live: Any, replayed: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Differences between a stored derived run and replayed stream data.

    Parameters
    ----------
    live
        The stored derived run (a Tiled ``BlueskyRun`` client).
    replayed
        ``{stream: {field: values}}`` of the replay.

    Returns
    -------
    list of str
        One line per stream or field that differs; empty when the FLID, decay histograms and
        g2 counts are identical.
    """
    problems = []
    stop = live.metadata.get("stop") or {}
    if stop.get("exit_status") != "success":
        problems.append(
            f"the live derived run ended with exit_status {stop.get('exit_status')!r} "
            f"({stop.get('reason') or 'no reason'})"
        )
    for stream, keys in REPLAY_COMPARED.items():
        mine = replayed.get(stream, {})
        if stream not in live:
            if mine:
                problems.append(f"{stream}: only the replay has this stream")
            continue
        node = live[stream]
        available = set(node)
        names = list(keys)
        # Only the compared fields: every array is a request of its own.
        dataset = node.read(variables=[k for k in names if k in available])
        stored = {k: dataset[k].values for k in dataset.data_vars}
        for key in names:
            a, b = _values(stored, key), _values(mine, key)
            if a is None or b is None:
                where = "live" if a is None else "replayed"
                problems.append(f"{stream}.{key}: missing in the {where} run")
            elif not _same(a, b):
                if a.shape != b.shape:
                    problems.append(f"{stream}.{key}: shape {a.shape} live, {b.shape} replayed")
                else:
                    n = int(np.count_nonzero(~_equal_mask(a, b)))
                    problems.append(f"{stream}.{key}: {n} of {a.size} values differ")
    return problems


def _equal_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a == b) | (np.isnan(a) & np.isnan(b))


def replay(
    catalog: Catalog,
    uid: str,
    *,
    settings: AnalysisSettings | None = None,
    compare: bool = True,
    write: bool = True,
) -> ReplayResult:
    """Analyse a stored raw run again, write a new derived run, compare it with the live one.

    The documents come from the catalog (:func:`qd_bluesky.catalog.iter_documents`: rebuilt by
    Tiled, ordered and split differently from the live stream) and go through the same
    :class:`LiveAnalyzer`, in this thread; the new derived run is marked
    ``qd_analysis.replay = True`` in its start document and written with
    ``catalog.derived_writer``.

    Parameters
    ----------
    catalog
        An open :class:`~qd_bluesky.catalog.Catalog`.
    uid
        The raw run's uid or a unique prefix.
    settings
        Analysis settings; default: those of the live derived run (so that the replay repeats
        it), else the defaults.
    compare
        Compare with the live derived run (FLID, decay histograms, g2 counts).
    write
        Write the new derived run to the catalog. Without, the replay only compares (most of
        a replay's time goes into writing the derived run through ``TiledWriter``).

    Returns
    -------
    ReplayResult

    Raises
    ------
    CatalogError
        Unknown run.
    ValueError
        The run is a derived run, or not a qd photon run.
    """
    from qd_bluesky.catalog import get_run, iter_documents

    t0 = time.perf_counter()
    run = get_run(catalog, uid)
    start = run.metadata.get("start") or {}
    raw_uid = start.get("uid", uid)
    if start.get("raw_uid"):
        raise ValueError(
            f"run {raw_uid} is a derived run (of raw run {start['raw_uid']}); replay the raw run"
        )
    if "qd" not in start:
        raise ValueError(
            f"run {raw_uid} ({start.get('plan_name')}) records no photons for the analyzer "
            "(no 'qd' entry in its start document)"
        )
    live = find_live_derived(catalog, raw_uid)
    tee = _Tee(_derived_writer(catalog) if write else None)
    analyzer = LiveAnalyzer(
        tee, settings=settings or _settings_of(live), threaded=False, replay=True
    )
    stopped = False
    for name, doc in iter_documents(catalog, run):
        stopped = stopped or name == "stop"
        analyzer(name, doc)
    if not stopped:
        # A run whose process died has no stop document: analyse what it recorded.
        stop = {
            "run_start": raw_uid,
            "uid": f"{raw_uid}-replay-stop",
            "time": time.time(),
            "exit_status": "unknown",
            "reason": "no stop document stored",
        }
        analyzer("stop", stop)
    outcome = analyzer.outcomes.get(raw_uid)
    if outcome is None:  # the derived run could not even start (logged)
        raise RuntimeError(f"the replay of {raw_uid} wrote no derived run (see the log)")
    differences: list[str] = []
    matches: bool | None = None
    if compare and live is not None:
        if outcome.exit_status != "success":
            differences.append(f"the replay failed: {outcome.reason}")
        differences += compare_derived_runs(live, tee.data)
        matches = not differences
    return ReplayResult(
        raw_uid=raw_uid,
        derived_uid=outcome.derived_uid if write else None,
        live_uid=None if live is None else live.metadata["start"]["uid"],
        matches_live=matches,
        exit_status=outcome.exit_status,
        reason=outcome.reason,
        photons=outcome.photons,
        differences=differences,
        seconds=time.perf_counter() - t0,
    )
