"""Composing the derived run's documents with ``event_model.compose_run``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np
from event_model import compose_run

logger = logging.getLogger(__name__)

#: ``plan_name`` of every derived run.
PLAN_NAME = "qd_analysis"

Emit = Callable[[str, dict], None]


def _version() -> str:
    try:
        return metadata.version("qd-bluesky")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def _data_key(value: Any) -> dict[str, Any]:
    """The descriptor's data key for one field, from its first value.

    Complete in the current event-model schema (every key has its ``dtype_numpy``, as
    TiledWriter's normalizer would add), so that the catalog's ``derived_writer`` may skip it.
    """
    key: dict[str, Any] = {"source": PLAN_NAME}
    if isinstance(value, str):
        key.update(dtype="string", shape=[], dtype_numpy="<U0")
    elif isinstance(value, np.ndarray):
        key.update(dtype="array", shape=list(value.shape), dtype_numpy=value.dtype.str)
    elif isinstance(value, bool):
        key.update(dtype="boolean", shape=[], dtype_numpy="|b1")
    elif isinstance(value, int | np.integer):
        key.update(dtype="integer", shape=[], dtype_numpy="<i8")
    else:
        key.update(dtype="number", shape=[], dtype_numpy="<f8")
    return key


class DerivedRun:
    """The documents of one derived run, emitted as they are composed.

    Streams are declared when their first rows come, each row a dict of one value per field
    (arrays of a fixed shape per stream).

    Parameters
    ----------
    emit
        Receives ``(name, doc)`` for every document (e.g. a ``TiledWriter``).
    raw_start
        The raw run's start document.
    analysis
        The ``qd_analysis`` entry of the start document (the settings of the analysis).
    replay
        True when the run is made by :func:`~qd_bluesky.callbacks.replay`.
    """

    def __init__(
        self,
        emit: Emit,
        raw_start: Mapping[str, Any],
        analysis: Mapping[str, Any],
        *,
        replay: bool = False,
    ) -> None:
        self._emit = emit
        md = {
            "plan_name": PLAN_NAME,
            "raw_uid": raw_start["uid"],
            "raw_plan_name": raw_start.get("plan_name"),
            "qd_analysis": {**analysis, "version": _version(), "replay": bool(replay)},
        }
        if raw_start.get("scan_id") is not None:
            md["raw_scan_id"] = raw_start["scan_id"]
        self._bundle = compose_run(metadata=md)
        self._streams: dict[str, Any] = {}
        self.stopped = False
        emit("start", self._bundle.start_doc)

    @property
    def uid(self) -> str:
        return self._bundle.start_doc["uid"]

    @property
    def start_doc(self) -> dict:
        return self._bundle.start_doc

    def write(self, stream: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Emit ``rows`` as one event page of ``stream`` (declared on first use)."""
        if not rows:
            return
        bundle = self._streams.get(stream)
        if bundle is None:
            data_keys = {k: _data_key(v) for k, v in rows[0].items()}
            bundle = self._bundle.compose_descriptor(name=stream, data_keys=data_keys)
            self._streams[stream] = bundle
            self._emit("descriptor", bundle.descriptor_doc)
        now = time.time()
        n = len(rows)
        data = {k: [row[k] for row in rows] for k in rows[0]}
        page = bundle.compose_event_page(
            data=data,
            timestamps={k: [now] * n for k in data},
            time=[now] * n,
            validate=False,  # fields and shapes come from one table in _engine
        )
        self._emit("event_page", page)

    def stop(self, exit_status: str = "success", reason: str = "") -> dict:
        """Emit the stop document (once)."""
        doc = self._bundle.compose_stop(exit_status=exit_status, reason=reason)
        self.stopped = True
        self._emit("stop", doc)
        return doc
