"""Photon files with the card's marker records (``/user/markers``), from the simulator.

* :func:`write_switching`: a bias square wave (the potentiostat's switching mode) on a dot whose
  charge follows the bias within ~50 ns (electron exchange at 20 MHz), so the response seen in
  the photons is the cell's (``rise_time_s``); one marker record per edge, as the simulated card
  files it (the sync period of the edge, photons of that period before the edge first).
* :func:`write_cv`: a CV as the potentiostat IOC runs it (a bias step every 20 ms along the
  sweep), written twice: with ``/user/bias`` (the simulated card that sees the bias) and
  without (a real card: only the trigger's marker records at the sweep's corners).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qd_bluesky.analysis import PhotonHdf5Writer
from qd_bluesky.analysis._photon_hdf5 import CARD_MARKER_COLUMNS, CARD_MARKER_GROUP
from qd_bluesky.sim import SingleDot, resolve_preset

#: qd1 with electron exchange fast enough (50 ns) to follow a microsecond bias step.
FAST_DOT = resolve_preset("qd1").with_(
    name="qd1-fast-exchange",
    exchange_rate_hz=2e7,
    exchange_rate_min_hz=2e7,
    exchange_rate_max_hz=2e7,
)
TICK_S = 0.05


@dataclass
class MarkerRun:
    path: Path
    rows: int
    segment_rows: list[int]


def _writer(path: Path, dot: SingleDot, *, bias: bool) -> PhotonHdf5Writer:
    columns = {CARD_MARKER_GROUP: CARD_MARKER_COLUMNS}
    if bias:
        columns["bias"] = {"photon_index": np.int64, "bias_v": np.float64}
    return PhotonHdf5Writer(
        path,
        macrotime_unit_s=1 / dot.rep_rate_hz,
        microtime_unit_s=dot.microtime_unit_s,
        microtime_bins=dot.microtime_bins,
        rep_rate_hz=dot.rep_rate_hz,
        swmr=False,
        user_columns=columns,
    )


def _marker_rows(chunk, sync, offset_s, rows_before: int) -> np.ndarray:
    """Photon rows before each marker (as the simulated card counts them)."""
    pb = round(1.0 / (chunk.rep_rate_hz * chunk.microtime_unit_s))
    key = chunk.macrotime * pb + chunk.microtime.astype(np.int64)
    mkey = sync * pb + np.floor(offset_s / chunk.microtime_unit_s).astype(np.int64)
    return rows_before + np.searchsorted(key, mkey, side="right")


def _write_chunk(writer, dot, chunk, trigger_times, channel: int) -> None:
    rows_before = writer.rows_written
    writer.append(chunk.macrotime, chunk.microtime, chunk.channel)
    times = np.asarray(trigger_times, dtype=float)
    if len(times):
        sync, offset = dot.sync_before(times)
        writer.append_user(
            CARD_MARKER_GROUP,
            timestamp=sync,
            channel=np.full(len(sync), channel, dtype=np.uint8),
            photon_index=_marker_rows(chunk, sync, offset, rows_before),
        )


def write_switching(
    path: Path,
    *,
    rise_time_s: float,
    low_v: float = -1.8,
    high_v: float = 0.0,
    period_s: float = 200e-6,
    seconds: float = 2.0,
    seed: int = 2,
    power_w: float = 100e-9,
    channel: int = 1,
) -> MarkerRun:
    """A ``bias_switching`` run's photon file (wave from 0.1 s, a marker per edge)."""
    dot = SingleDot(FAST_DOT, seed=seed, bias_v=low_v, power_w=power_w, rise_time_s=rise_time_s)
    writer = _writer(path, dot, bias=False)
    t0 = 0.1
    _write_chunk(writer, dot, dot.advance(t0), [], channel)
    segment_row = writer.rows_written
    wave = dot.set_switching(low_v, high_v, period_s, round(seconds / period_s), t0)
    edges = wave.edge_time(np.arange(wave.n_edges))
    t = t0
    while t < wave.end_s + TICK_S:
        t_next = t + TICK_S
        chunk = dot.advance(t_next)
        _write_chunk(writer, dot, chunk, edges[(edges >= t) & (edges < t_next)], channel)
        t = t_next
    rows = writer.rows_written
    writer.close()
    return MarkerRun(path, rows, [segment_row])


def write_cv(
    path: Path,
    *,
    with_bias: bool,
    start: float = 0.0,
    vertex: float = -2.0,
    end: float = 0.0,
    rate: float = 1.0,
    cycles: int = 1,
    seed: int = 5,
    channel: int = 1,
    step_s: float = 0.02,
) -> MarkerRun:
    """A ``cv_scan`` photon file: 0.2 s at ``start``, the sweep as 20 ms bias steps, 0.2 s at
    ``end``; trigger markers at the sweep's start, each vertex and the end (always), bias
    markers at every step (``with_bias``). The same seed gives the same photons either way."""
    dot = SingleDot("qd1", seed=seed, bias_v=start)
    writer = _writer(path, dot, bias=with_bias)
    corners = np.array([start] + [vertex, end] * cycles)
    legs = np.abs(np.diff(corners)) / rate
    t_corner = 0.2 + np.concatenate(([0.0], np.cumsum(legs)))
    t_stop = t_corner[-1] + 0.2
    chunk = dot.advance(0.2)
    _write_chunk(writer, dot, chunk, [], channel)
    if with_bias:
        writer.append_user("bias", photon_index=[0], bias_v=[start])
    segment_row = writer.rows_written
    # The IOC's ramp: a bias every step_s along the legs, the corner itself at each end.
    steps_t = np.arange(0.2, t_corner[-1], step_s)
    times = np.unique(np.concatenate((steps_t, t_corner)))
    biases = np.interp(times, t_corner, corners)
    k = 0
    t = 0.2
    while t < t_stop - 1e-9:
        t_next = min(t + TICK_S, t_stop)
        marks = []
        while k < len(times) and times[k] < t_next:
            dot.set_bias(float(biases[k]), float(times[k]))
            marks.append((float(times[k]), float(biases[k])))
            k += 1
        chunk = dot.advance(t_next)
        rows_before = writer.rows_written
        corner_times = t_corner[(t_corner >= t) & (t_corner < t_next)]
        _write_chunk(writer, dot, chunk, corner_times, channel)
        if with_bias and marks:
            sync = np.array([dot.sync_before(np.array([m[0]]))[0][0] + 1 for m in marks])
            rows = rows_before + np.searchsorted(chunk.macrotime, sync, side="left")
            writer.append_user("bias", photon_index=rows, bias_v=[m[1] for m in marks])
        t = t_next
    rows = writer.rows_written
    writer.close()
    return MarkerRun(path, rows, [segment_row])


def analyse(run: MarkerRun, bias_v: float, cuts: list[int], **engine_kwargs) -> dict[str, list]:
    """The document-free engine over ``run``'s rows, announced at ``cuts``; every stream's rows."""
    from qd_bluesky.callbacks import AnalysisSettings
    from qd_bluesky.callbacks._engine import ColumnRows, RunAnalysis

    engine = RunAnalysis(
        AnalysisSettings(calibration_photons=5_000, window_s=1.0), threaded=False, **engine_kwargs
    )
    engine.set_path(run.path)
    for k, row in enumerate(run.segment_rows):
        engine.add_marker(row, bias_v, k + 1)
    out: dict[str, list] = {}

    def collect(rows):
        for stream, new in rows.items():
            if isinstance(new, ColumnRows):
                new = [r for page in new.pages(1000) for r in page]
            out.setdefault(stream, []).extend(new)

    for stop in cuts:
        engine.announce(stop)
        while engine.has_work:
            collect(engine.step())
    collect(engine.finish())
    engine.close()
    return out
