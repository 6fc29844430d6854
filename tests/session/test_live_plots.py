"""Live plots: documents from any thread are filed away; drawing happens on refresh()."""

from __future__ import annotations

import threading

import numpy as np

from qd_bluesky.callbacks import LivePhotonPlots


def derived_documents(n_flid: int):
    yield "start", {"uid": "raw", "time": 0}  # a raw run: ignored
    yield "start", {"uid": "d", "raw_uid": "raw", "time": 0}
    yield "descriptor", {"uid": "t", "name": "trace", "run_start": "d"}
    yield "descriptor", {"uid": "f", "name": "flid", "run_start": "d"}
    yield "descriptor", {"uid": "c", "name": "decay", "run_start": "d"}
    for k in range(12):
        yield "event", {"descriptor": "t", "data": {"time_s": float(k), "counts": [30] * 1000}}
    yield (
        "event_page",
        {
            "descriptor": "f",
            "seq_num": list(range(n_flid)),
            "data": {
                "intensity_cps": list(np.linspace(5e3, 35e3, n_flid)),
                "lifetime_ns": list(np.linspace(1, 125, n_flid)),
            },
        },
    )
    counts = np.exp(-np.arange(16000) * 0.025 / 125) * 100
    yield (
        "event",
        {
            "descriptor": "c",
            "data": {"bias_v": 0.0, "counts": counts.tolist(), "microtime_unit_ns": 0.025},
        },
    )


def test_documents_from_a_worker_thread_then_one_redraw():
    plots = LivePhotonPlots(trace_window_s=10)
    worker = threading.Thread(target=lambda: [plots(n, d) for n, d in derived_documents(50)])
    worker.start()
    worker.join()
    intensity, lifetime = plots.flid_points
    assert len(intensity) == 50 and lifetime[-1] == 125
    assert plots.trace_seconds == 10  # the window keeps the last 10 s of 12
    assert plots.refresh() is True  # new data: drawn
    assert plots.refresh() is False  # nothing new: no redraw
    axes = plots.figure.axes
    assert [a.get_title() for a in axes[:3]] == [
        "intensity trace (1 ms)",
        "FLID (20 ms)",
        "decay at +0.00 V",
    ]
    (line,) = axes[0].get_lines()
    assert len(line.get_xdata()) == 10 * 1000


def test_a_new_derived_run_clears_the_plots():
    plots = LivePhotonPlots()
    for name, doc in derived_documents(20):
        plots(name, doc)
    plots("start", {"uid": "d2", "raw_uid": "raw2", "time": 1})
    assert len(plots.flid_points[0]) == 0 and plots.trace_seconds == 0
