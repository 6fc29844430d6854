"""RunEngine -> live analyzer -> real Tiled catalog -> replay, without IOCs.

A stand-in flyer (``rawrun.SimFlyer``) writes simulated photons to a real SWMR file in chunks
and announces them as the TCSPC card does; the raw and derived runs go through
``subscribe_live_analysis`` into an embedded catalog and are read back through Tiled.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bluesky import RunEngine
from rawrun import SimFlyer, sim_bias_steps, simulate_steps

from qd_bluesky.callbacks import find_live_derived, replay, subscribe_live_analysis
from qd_bluesky.catalog import list_runs


@pytest.fixture(scope="module")
def engine(catalog, settings):
    RE = RunEngine({})  # noqa: N806
    analyzer = subscribe_live_analysis(RE, catalog.writer, settings=settings)
    yield RE, analyzer
    analyzer.close()


@pytest.fixture(scope="module")
def steps_run(engine, catalog):
    RE, analyzer = engine  # noqa: N806
    photons = simulate_steps([0.0, -2.0], 2.0, seed=21)
    flyer = SimFlyer("tcspc", photons, catalog.photon_dir / "sim-steps.h5", rows_per_collect=5000)
    (uid,) = RE(sim_bias_steps(flyer))
    assert analyzer.wait(60)
    return uid, photons


def test_raw_and_derived_runs_land_in_the_catalog(catalog, engine, steps_run):
    uid, photons = steps_run
    _, analyzer = engine
    runs = {r["uid"]: r for r in list_runs(catalog)}
    assert runs[uid]["kind"] == "raw" and runs[uid]["exit_status"] == "success"
    derived_uid = analyzer.outcomes[uid].derived_uid
    derived = runs[derived_uid]
    assert derived["kind"] == "derived" and derived["raw_uid"] == uid
    assert derived["plan_name"] == "qd_analysis" and derived["exit_status"] == "success"
    run = catalog.client[derived_uid]
    assert run.metadata["start"]["raw_plan_name"] == "sim_bias_steps"
    # Read back through Tiled: every photon in the FLID, each segment's decay.
    flid = run["flid"].read()
    assert int(flid["photons"].values.sum()) == len(photons)
    decay = run["decay"].read()
    np.testing.assert_array_equal(
        decay["photons"].values, np.diff([*photons.step_rows, len(photons)])
    )
    assert decay["counts"].values.shape == (2, photons.microtime_bins)
    assert int(decay["counts"].values.sum()) == len(photons)
    assert set(run) >= {"trace", "flid", "decay", "g2", "bias_dependence", "flid_map", "scaling"}


def test_replay_equals_live(catalog, engine, steps_run):
    uid, photons = steps_run
    _, analyzer = engine
    result = replay(catalog, uid[:8])
    assert result.matches_live is True, result.differences
    assert result.raw_uid == uid
    assert result.live_uid == analyzer.outcomes[uid].derived_uid
    assert result.derived_uid not in (uid, result.live_uid)
    assert result.photons == len(photons)
    replayed = catalog.client[result.derived_uid].metadata["start"]
    assert replayed["raw_uid"] == uid and replayed["qd_analysis"]["replay"] is True
    # A replay is never taken for the live run.
    assert find_live_derived(catalog, uid).metadata["start"]["uid"] == result.live_uid
    # The replay is written by ``derived_writer`` (no normalizer), the live run by the
    # normalizing ``writer``: every stream reads back with the same fields, dtypes and values
    # (the event times aside).
    live, again = catalog.client[result.live_uid], catalog.client[result.derived_uid]
    assert set(live) == set(again)
    for stream in live:
        a, b = live[stream].read(), again[stream].read()
        names = sorted(k for k in a.data_vars if k != "time" and not k.startswith("ts_"))
        assert names == sorted(k for k in b.data_vars if k != "time" and not k.startswith("ts_"))
        for name in names:
            x, y = a[name].values, b[name].values
            assert x.dtype == y.dtype, (stream, name)
            if x.dtype.kind in "fc":
                np.testing.assert_array_equal(x, y, err_msg=f"{stream}.{name}")
            else:
                assert (x == y).all(), (stream, name)
        assert (
            live[stream].metadata["data_keys"].keys() == again[stream].metadata["data_keys"].keys()
        )


def test_replay_cli_prints_json(catalog, steps_run, capsys):
    from qd_bluesky.cli import main

    uid, _ = steps_run
    code = main(["replay", uid, "--data-dir", str(catalog.data_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["raw_uid"] == uid and out["matches_live"] is True
    assert {"derived_uid", "live_uid", "differences"} <= set(out)


def test_replay_without_writing_compares_only(catalog, steps_run):
    from qd_bluesky.cli import main

    uid, _ = steps_run
    before = len(list_runs(catalog))
    result = replay(catalog, uid, write=False)
    assert result.matches_live is True and result.derived_uid is None
    assert main(["replay", uid, "--data-dir", str(catalog.data_dir), "--no-write"]) == 0
    assert len(list_runs(catalog)) == before


def test_replay_refuses_derived_runs_and_unknown_uids(catalog, engine, steps_run):
    from qd_bluesky.catalog import CatalogError

    uid, _ = steps_run
    derived = engine[1].outcomes[uid].derived_uid
    with pytest.raises(ValueError, match="is a derived run"):
        replay(catalog, derived)
    with pytest.raises(CatalogError, match="no run"):
        replay(catalog, "0123abcd")


def test_failing_analysis_does_not_stop_the_acquisition(engine, catalog, tmp_path):
    """The documents name a file that does not exist: the raw run succeeds, with all its
    photons in the catalog; the derived run ends with "fail" and says why."""
    RE, analyzer = engine  # noqa: N806
    photons = simulate_steps([0.0], 1.0, seed=22)
    missing = tmp_path / "nowhere.h5"
    flyer = SimFlyer(
        "tcspc",
        photons,
        catalog.photon_dir / "sim-fail.h5",
        rows_per_collect=4000,
        uri=f"file://localhost{missing}",
    )
    (uid,) = RE(sim_bias_steps(flyer))
    assert analyzer.wait(60)
    raw = catalog.client[uid]
    assert raw.metadata["stop"]["exit_status"] == "success"
    assert raw.metadata["stop"]["num_events"]["photons"] == len(photons)
    outcome = analyzer.outcomes[uid]
    assert outcome.exit_status == "fail"
    assert str(missing) in outcome.reason and "no such file" in outcome.reason
    derived = catalog.client[outcome.derived_uid].metadata["stop"]
    assert derived["exit_status"] == "fail" and derived["reason"] == outcome.reason
