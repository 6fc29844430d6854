"""``qd-bluesky survey`` on a simulated field with known dots (issue 13).

The field (seed 57, 3 sites in 3.5 um) holds a deep-charging dot, a cluster of two dots and a
deep-charging dot that photobleaches after 4.9 s of light: the survey must find all three,
leave the cluster (g2(0) ~ 0.6 > 0.5), classify the single dot as its truth says, record the
bleaching dot as bleached and go on, and leave every run with its derived run in the catalog.
The population's charging fraction is checked on 270 single dots in tests/sim/test_field.py;
here the survey's fraction must equal the truth of the dots it classified.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from qd_bluesky.sim import draw_field

SEED, SITES, AREA_UM = 57, 3, 3.5
#: A found dot belongs to the site within this distance (um): the coarse raster's half pixel.
MATCH_UM = 0.15


@pytest.fixture(scope="module")
def field():
    sites, _ = draw_field(SITES, SEED, AREA_UM / 2)
    # The field this test is about (a change of the population draws another one).
    assert sorted(s.truth for s in sites) == ["cluster", "deep", "deep"]
    assert [s.bleaches for s in sites if s.truth != "cluster"].count(True) == 1
    return sites


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    data = tmp_path_factory.mktemp("survey")
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "qd_bluesky.cli",
            "survey",
            "--dots",
            str(SITES),
            "--area",
            str(AREA_UM),
            "--seed",
            str(SEED),
            "--gate",
            "0.05",
            "--g2-duration",
            "4",
            "--cv-rate",
            "1",
            "--json",
            "--data-dir",
            str(data),
        ],
        cwd=data,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, json.loads(proc.stdout), proc.stderr


def _expected(site) -> str:
    if site.truth == "cluster":
        return "not single"
    return "bleached" if site.bleaches else site.truth


def _matched(field, dots):
    """Each site with the found dot within MATCH_UM of it (None if none)."""
    out = []
    for s in field:
        near = [d for d in dots if math.hypot(d["x_um"] - s.x_um, d["y_um"] - s.y_um) < MATCH_UM]
        assert len(near) <= 1
        out.append((s, near[0] if near else None))
    return out


def _outcome(dot) -> str:
    return dot["charging"] if dot["status"] == "measured" else dot["status"]


def _g2(dot):
    """The dot's own g2(0) where the background correction applies, else the measured."""
    return dot["g2_zero"] if dot["g2_zero_corrected"] is None else dot["g2_zero_corrected"]


def test_every_dot_is_found(field, survey):
    _, out, _ = survey
    assert out["found"] == len(field) == len(out["dots"])
    assert all(dot is not None for _, dot in _matched(field, out["dots"]))


def test_classes_agree_with_the_truth(field, survey):
    _, out, progress = survey
    matrix = Counter((_expected(s), _outcome(d)) for s, d in _matched(field, out["dots"]))
    print("confusion (truth, survey):", dict(matrix))
    assert all(truth == found for truth, found in matrix.elements())
    # One progress line per dot.
    assert sum(line.startswith("dot ") for line in progress.splitlines()) == len(field)
    cluster = next(d for s, d in _matched(field, out["dots"]) if s.truth == "cluster")
    assert cluster["g2_zero"] > 0.5 and not cluster["single"]
    assert _g2(cluster) > 0.5  # also once the background is taken out
    measured = [d for d in out["dots"] if d["status"] == "measured"]
    assert all(d["single"] and _g2(d) < 0.5 for d in measured)
    deep = [d for d in measured if d["charging"] == "deep"]
    assert all(d["max_enhancement"] > 5 for d in deep)


def test_charging_fraction_is_that_of_the_classified_dots(field, survey):
    _, out, _ = survey
    truth = [s.truth for s, d in _matched(field, out["dots"]) if d["status"] == "measured"]
    assert out["charging_beyond_X2_fraction"] == sum(t == "deep" for t in truth) / len(truth)


def test_a_bleaching_dot_is_recorded_and_the_survey_goes_on(field, survey):
    _, out, _ = survey
    bleacher = next(d for s, d in _matched(field, out["dots"]) if s.bleaches)
    assert bleacher["status"] == "bleached"
    assert len(bleacher["raw_uids"]) == 2  # its g2 and CV runs are kept
    assert [d["dot_id"] for d in out["dots"]] == list(range(len(field)))
    assert out["duration_s"] > 0


def test_runs_and_derived_runs_are_in_the_catalog(survey):
    from qd_bluesky.catalog import open_catalog

    data, out, _ = survey
    catalog = open_catalog(data)
    try:
        client = catalog.client
        derived = {}
        surveys = []
        for uid in client:
            start = client[uid].metadata["start"]
            if "raw_uid" in start:
                derived[start["raw_uid"]] = uid
            elif start.get("plan_name") == "survey":
                surveys.append(uid)
        for dot in out["dots"]:
            for uid in dot["raw_uids"]:
                start = client[uid].metadata["start"]
                assert start["dot_id"] == dot["dot_id"]
                assert start["dot_x_um"] == pytest.approx(dot["x_um"])
                assert start["dot_y_um"] == pytest.approx(dot["y_um"])
                assert client[derived[uid]].metadata["stop"]["exit_status"] == "success"
        (survey_uid,) = surveys
        table = client[survey_uid]["dots"].read()
        assert list(table["status"].values) == [d["status"] for d in out["dots"]]
        assert client[survey_uid].metadata["stop"]["exit_status"] == "success"
    finally:
        catalog.close()
    report = Path(out["report_dir"])
    for name in ("survey_map.png", "flid_thumbnails.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    counts = json.loads((report / "survey.json").read_text())["class_counts"]
    assert sum(counts.values()) == len(out["dots"])
    assert counts["not single"] == sum(d["status"] == "not single" for d in out["dots"])
