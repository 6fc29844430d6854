"""Helpers of the plans tests: document checks and the photon file a run announced."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import event_model
import numpy as np

Docs = list[tuple[str, dict]]


def validate(docs: Docs) -> None:
    """Every document passes event-model's schema; the run starts and stops once, in order."""
    names = [name for name, _ in docs]
    assert names[0] == "start" and names.count("start") == 1
    assert names[-1] == "stop" and names.count("stop") == 1
    for name, doc in docs:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)


def by_name(docs: Docs, name: str) -> list[dict]:
    return [doc for n, doc in docs if n == name]


def start_doc(docs: Docs) -> dict:
    return docs[0][1]


def stop_doc(docs: Docs) -> dict:
    (stop,) = by_name(docs, "stop")
    return stop


def descriptor(docs: Docs, stream: str) -> dict:
    (desc,) = [d for d in by_name(docs, "descriptor") if d["name"] == stream]
    return desc


def stream_events(docs: Docs, stream: str) -> list[dict]:
    uid = descriptor(docs, stream)["uid"]
    return [e for e in by_name(docs, "event") if e["descriptor"] == uid]


def column(docs: Docs, stream: str, key: str) -> np.ndarray:
    return np.array([e["data"][key] for e in stream_events(docs, stream)])


def photon_ranges(docs: Docs) -> dict[str, list[tuple[int, int]]]:
    """data key -> the (start, stop) row ranges of its stream datums, in document order."""
    resources = {d["uid"]: d for d in by_name(docs, "stream_resource")}
    ranges: dict[str, list[tuple[int, int]]] = {r["data_key"]: [] for r in resources.values()}
    for datum in by_name(docs, "stream_datum"):
        key = resources[datum["stream_resource"]]["data_key"]
        ranges[key].append((datum["indices"]["start"], datum["indices"]["stop"]))
    return ranges


def photon_file(docs: Docs) -> Path:
    """The photon file every stream resource of the run points to."""
    (uri,) = {d["uri"] for d in by_name(docs, "stream_resource")}
    return Path(urlparse(uri).path)


def file_bias_of_rows(markers: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Bias (V) each photon row saw: the last ``/user/bias`` marker with photon_index <= row."""
    at = np.searchsorted(markers["photon_index"], rows, side="right") - 1
    return markers["bias_v"][at]
