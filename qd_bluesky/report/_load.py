"""The derived run as plain arrays: one dict of numpy arrays per stream.

The figures and the summary take this form, so they work the same on a run read back from the
catalog and on documents held in memory (a run just analysed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..callbacks._streams import DERIVED_STREAMS

#: stream -> field -> array, one row per event.
DerivedData = dict[str, dict[str, np.ndarray]]


def derived_from_run(run: Any, streams: Iterable[str] = DERIVED_STREAMS) -> DerivedData:
    """Read the streams (default: every stream) of a derived run from the catalog (a Tiled
    ``BlueskyRun`` node)."""
    out: DerivedData = {}
    for stream in streams:
        try:
            node = run[stream]
        except KeyError:
            continue
        dataset = node.read()
        out[stream] = {name: np.asarray(dataset[name].values) for name in dataset.data_vars}
        if "time" in dataset.coords and "time" not in out[stream]:
            out[stream]["time"] = np.asarray(dataset["time"].values)
    return out


def derived_from_documents(documents: Iterable[tuple[str, Mapping]]) -> DerivedData:
    """Collect the events of a derived run's documents, stream by stream."""
    stream_of: dict[str, str] = {}
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for name, doc in documents:
        if name == "descriptor":
            stream_of[doc["uid"]] = doc["name"]
        elif name == "event":
            data = rows[stream_of[doc["descriptor"]]]
            for key, value in doc["data"].items():
                data[key].append(value)
        elif name == "event_page":
            data = rows[stream_of[doc["descriptor"]]]
            for key, values in doc["data"].items():
                data[key].extend(values)
    return {
        stream: {key: np.asarray(values) for key, values in fields.items()}
        for stream, fields in rows.items()
    }
