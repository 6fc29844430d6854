"""PhotonProbe on a synthetic raw run (real SWMR file, documents in live order): its reading is
the fit step on exactly the rows from the last marker to the last announced row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rawrun import RawRun, simulate_steps

from qd_bluesky.analysis import DEFAULT_CHANNELS, PhotonSettings, StreamUnits, StretchAccumulator
from qd_bluesky.callbacks import PhotonProbe

DWELL_S = 0.5


@pytest.fixture(scope="module")
def photons():
    """qd1 at 0 V then -1.7 V."""
    return simulate_steps([0.0, -1.7], DWELL_S, seed=5)


def expected(p, a: int, b: int) -> tuple[float, float, int]:
    """(intensity cps, mono lifetime ns, photons) of rows [a, b), computed independently."""
    units = StreamUnits(1 / p.rep_rate_hz, p.microtime_unit_s, p.microtime_bins, p.rep_rate_hz)
    acc = StretchAccumulator(units, DEFAULT_CHANNELS, with_g2=False)
    acc.add(p.macrotime[a:b], p.microtime[a:b], p.channel[a:b])
    mono = acc.results(irf_fwhm_s=PhotonSettings().irf_fwhm_s).mono
    return acc.photons / acc.duration_s, mono.tau_s[0] * 1e9, b - a


def values(probe: PhotonProbe) -> tuple[float, float, int]:
    r = probe.read()
    return tuple(r[f"dot_probe_{f}"]["value"] for f in ("intensity_cps", "lifetime_ns", "photons"))


def test_reads_each_segment_as_the_plan_reaches_its_end(photons, tmp_path):
    p = photons
    n, second = len(p), p.step_rows[1]
    # Datums end exactly at the second marker's row and at the end: the plan's last collect.
    run = RawRun(p, tmp_path / "run.h5", chunk_rows=1024)
    cuts = [0, second // 2, second, second + (n - second) // 3, n]
    probe = PhotonProbe()
    readings, read_at = [], set()
    for name, doc in run.live(cuts):
        if name == "stop":
            break
        probe(name, doc)
        stop = doc["indices"]["stop"] if name == "stream_datum" else None
        if stop in (second, n) and stop not in read_at:  # (one datum per photon field)
            read_at.add(stop)
            probe.trigger()
            readings.append(values(probe))
    assert probe.problem is None
    first, last = readings
    wanted = (expected(p, 0, second), expected(p, second, n))
    for got, want in zip((first, last), wanted, strict=True):
        assert got[2] == want[2]
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        assert got[1] == pytest.approx(want[1], rel=1e-12)
    # The physics the recommender sees: charged at -1.7 V, shorter and dimmer than at 0 V.
    assert last[1] < first[1] / 5 and last[0] < first[0]


def test_without_a_run_the_reading_is_nan_and_says_why(photons, tmp_path):
    probe = PhotonProbe("probe")
    status = probe.trigger()
    assert status.done and status.success
    r = probe.read()
    assert (
        set(r)
        == set(probe.describe())
        == {
            "probe_intensity_cps",
            "probe_lifetime_ns",
            "probe_photons",
        }
    )
    assert math.isnan(r["probe_lifetime_ns"]["value"]) and r["probe_photons"]["value"] == 0
    assert probe.problem == "no qd run with photons and a segment marker is running"


def test_a_marker_after_the_last_announced_row_is_no_reading(photons, tmp_path):
    p = photons
    run = RawRun(p, tmp_path / "run.h5")
    probe = PhotonProbe()
    for name, doc in run.live([0, len(p)]):
        if name == "event":  # instead of the marker at row 0: one at row 10, no rows yet
            doc = {**doc, "data": {**doc["data"], "tcspc_num_photons": 10}}
            probe(name, doc)
            break
        probe(name, doc)
    probe.trigger()
    assert probe.problem == "no photon rows announced after row 10"
    assert np.isnan(values(probe)[1])


def test_a_malformed_document_never_raises():
    probe = PhotonProbe()
    probe("start", {"uid": "x", "time": 0, "qd": {"marker_stream": "primary"}})
    probe("stream_datum", {"stream_resource": None})  # no indices
    probe("event", {"descriptor": "unknown"})
