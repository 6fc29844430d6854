"""Stage rasters on the count rate and find_dot against the simulated instrument.

The confocal spot of the simulator is a Gaussian of sigma 0.11 um, so a 0.1 um step samples
it; each raster point is one 0.5 s rate-meter gate (Poisson: sigma = sqrt(rate * 0.5) / 0.5).
The dot blinks at this fluence, so a single gate on the dot can be several times dimmer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.plans import find_dot, raster_scan

sys.path.insert(0, str(Path(__file__).parent))
from plan_docs import column, start_doc, stop_doc, stream_events, validate  # noqa: E402

GATE_S = 0.5
RATE_KEYS = ("tcspc_count_rate0", "tcspc_count_rate1")


def _rates(docs, stream="primary"):
    return sum(column(docs, stream, key) for key in RATE_KEYS)


def test_raster_scan_reads_the_count_rate_on_a_grid(bench):
    bench.park(0.0)
    hx, hy, _ = bench.home_um
    step = 0.3
    x_range, y_range = (hx - step, hx), (hy, hy + step)
    uid, docs = bench.run(
        raster_scan(bench.inst.stage, bench.inst.tcspc, x_range=x_range, y_range=y_range, step=step)
    )
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "raster_scan"
    assert start["shape"] == [2, 2] and start["snaking"] == [False, True]
    assert start["extents"] == [list(y_range), list(x_range)]
    assert start["hints"]["dimensions"] == [[["stage_y"], "primary"], [["stage_x"], "primary"]]
    assert "qd" not in start  # no photons recorded
    assert stop_doc(docs)["exit_status"] == "success"

    # y is the slow axis, x snakes: (x0, y0), (x1, y0), (x1, y1), (x0, y1).
    xs = column(docs, "primary", "stage_x")
    ys = column(docs, "primary", "stage_y")
    np.testing.assert_allclose(xs, [hx - step, hx, hx, hx - step], atol=1e-9)
    np.testing.assert_allclose(ys, [hy, hy, hy + step, hy + step], atol=1e-9)

    rates = _rates(docs)
    truth = bench.truth
    expected = np.array([truth.expected_rate_cps(x, y, 0.0) for x, y in zip(xs, ys, strict=True)])
    off = np.arange(4) != 1  # (hx, hy) is the dot; the others are 0.3-0.42 um away
    # Off the dot: background + dark counts (+ the PSF tail), within 5 Poisson sigmas of a gate.
    sigma = np.sqrt(expected[off] * GATE_S) / GATE_S
    assert np.all(np.abs(rates[off] - expected[off]) < 5 * sigma)
    # On the dot: expected ~100x the background; even a gate mostly blinked off (a third of
    # the mean) stays above 10x the brightest off-dot pixel.
    assert rates[1] > 10 * rates[off].max()
    # The catalog has the map too.
    primary = bench.catalog.client[uid]["primary"].read()
    np.testing.assert_allclose(np.asarray(primary["stage_x"]), xs)


def test_find_dot_parks_on_the_dot(bench):
    bench.park(0.0)
    stage, tcspc = bench.inst.stage, bench.inst.tcspc
    hx, hy, _ = bench.home_um
    # Start away from the dot, and raster a grid that is not centred on it: the dot sits
    # 0.03 um inside its last column, between grid points.
    stage.x.set(hx + 1.0).wait(10)
    stage.y.set(hy - 1.0).wait(10)
    step = 0.1
    x_range = (hx - 0.27, hx + 0.03)
    y_range = (hy - 0.08, hy + 0.22)
    found: list = []

    def plan():
        found.append(
            (yield from find_dot(stage, tcspc, x_range=x_range, y_range=y_range, step=step))
        )

    uid, docs = bench.run(plan())
    validate(docs)
    start = start_doc(docs)
    assert start["plan_name"] == "find_dot" and start["shape"] == [4, 4]
    assert start["plan_args"]["refine"] is True
    assert len(stream_events(docs, "primary")) == 16

    (x, y) = found[0]
    # Within one raster step of the dot, and the stage is where the plan says it parked.
    assert np.hypot(x - hx, y - hy) <= step
    assert stage.x.position == pytest.approx(x, abs=1e-9)
    assert stage.y.position == pytest.approx(y, abs=1e-9)
    (dot,) = stream_events(docs, "dot")
    assert dot["data"]["stage_x"] == pytest.approx(x, abs=1e-9)
    assert dot["data"]["stage_y"] == pytest.approx(y, abs=1e-9)
    # The rate there is the dot's, far above the raster's background (10th percentile).
    background = np.percentile(_rates(docs), 10)
    assert _rates(docs, "dot")[0] > 10 * background


def test_find_dot_without_a_dot_goes_back(bench):
    stage, tcspc = bench.inst.stage, bench.inst.tcspc
    hx, hy, _ = bench.home_um
    truth = bench.truth
    # A 2 x 2 raster at least 1 um from every dot: background only.
    x_range, y_range = (hx + 0.8, hx + 1.0), (hy + 0.8, hy + 1.0)
    corners = np.array([(x, y) for x in x_range for y in y_range])
    dots = truth.dot_positions_um[:, :2]
    assert np.min(np.hypot(*(corners[:, None, :] - dots[None, :, :]).transpose(2, 0, 1))) > 1.0
    bench.park(0.0)
    found: list = []

    def plan():
        found.append(
            (yield from find_dot(stage, tcspc, x_range=x_range, y_range=y_range, step=0.2))
        )

    _, docs = bench.run(plan())
    validate(docs)
    assert found == [None]
    assert "dot" not in {d["name"] for n, d in docs if n == "descriptor"}
    assert stage.x.position == pytest.approx(hx, abs=1e-9)
    assert stage.y.position == pytest.approx(hy, abs=1e-9)
