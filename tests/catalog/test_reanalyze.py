"""``qd-bluesky reanalyze`` on a real ``LocalCluster`` (2 worker processes) and a real catalog.

The catalog holds raw runs recorded without IOCs (``rawrun.SimFlyer``: simulated photons in a
real SWMR file, announced as the TCSPC card does): one of ``sim_bias_steps``, then one of
another plan, a run without photons, and a ``sim_bias_steps`` run whose photon file is
overwritten with garbage.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plans as bp
import numpy as np
import ophyd
import pytest
from bluesky import RunEngine

sys.path.insert(0, str(Path(__file__).parents[1] / "callbacks"))  # rawrun.py

from rawrun import SimFlyer, sim_bias_steps, simulate_steps  # noqa: E402

from qd_bluesky.callbacks import (  # noqa: E402
    AnalysisSettings,
    reanalyze,
    replay,
    select_raw_runs,
)
from qd_bluesky.catalog import open_catalog  # noqa: E402
from qd_bluesky.cli import main  # noqa: E402

SETTINGS = AnalysisSettings(flid_bin_s=10e-3, confidence=0.99)
OTHER_PLAN = "other_plan"


def _record(RE, catalog, name: str, seed: int, md: dict | None = None):  # noqa: N803
    photons = simulate_steps([0.0, -2.0], 1.0, seed=seed)
    flyer = SimFlyer("tcspc", photons, catalog.photon_dir / f"{name}.h5", rows_per_collect=20000)
    (uid,) = RE(sim_bias_steps(flyer, md=md))
    return uid, len(photons)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The catalog's data directory, the runs by role, the photons per run, the cut time."""
    data = tmp_path_factory.mktemp("qd-reanalyze")
    with open_catalog(data) as catalog:
        RE = RunEngine({})  # noqa: N806
        RE.subscribe(catalog.writer)
        runs, photons = {}, {}
        runs["steps"], photons["steps"] = _record(RE, catalog, "steps", 1)
        time.sleep(0.05)
        since = time.time()
        runs["other"], photons["other"] = _record(
            RE, catalog, "other", 3, md={"plan_name": OTHER_PLAN}
        )
        (runs["no_photons"],) = RE(bp.count([ophyd.Signal(name="x", value=1.0)]))
        runs["corrupt"], photons["corrupt"] = _record(RE, catalog, "corrupt", 4)
        path = catalog.photon_dir / "corrupt.h5"
        path.write_bytes(b"not an HDF5 file " * (path.stat().st_size // 17))
    return data, runs, photons, since


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster: 2 single-threaded worker processes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        yield lc


def _streams(run) -> dict[str, dict[str, np.ndarray]]:
    """Every field of every stream of a derived run (event times left out)."""
    out = {}
    for stream in run:
        ds = run[stream].read()
        out[stream] = {k: ds[k].values for k in ds.data_vars}
    return out


def _assert_same_rows(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for stream in a:
        assert sorted(a[stream]) == sorted(b[stream]), stream
        for key, values in a[stream].items():
            other = b[stream][key]
            if values.dtype.kind in "fc":
                np.testing.assert_array_equal(values, other, err_msg=f"{stream}.{key}")
            else:
                assert values.tolist() == other.tolist(), f"{stream}.{key}"


def test_selection_by_plan_and_date(recorded):
    data, runs, _, since = recorded
    with open_catalog(data, create=False) as catalog:
        everything = select_raw_runs(catalog)
        assert everything == [runs[r] for r in ("steps", "other", "corrupt")]
        assert select_raw_runs(catalog, plans=[OTHER_PLAN]) == [runs["other"]]
        assert select_raw_runs(catalog, plans=["sim_bias_steps"]) == [
            runs["steps"],
            runs["corrupt"],
        ]
        assert select_raw_runs(catalog, since=since) == [runs["other"], runs["corrupt"]]
        assert select_raw_runs(catalog, plans=["sim_bias_steps"], since=since) == [runs["corrupt"]]
        assert select_raw_runs(catalog, since=time.time() + 60) == []


def test_cli_on_a_local_cluster_equals_replay(recorded):
    """The CLI as a subprocess, on its own LocalCluster of 2 worker processes: one derived
    run per raw run, the settings in its start, rows equal to `replay` with those settings;
    the corrupt run fails alone, in one line."""
    data, runs, photons, _ = recorded
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", "reanalyze", "--data-dir", str(data)]
        + ["--workers", "2", "--bin-ms", "10", "--confidence", "0.99", "--json"],
        cwd=data,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [errors[0]] and runs["corrupt"] in errors[0], proc.stderr
    assert "corrupt.h5" in errors[0]  # the cause: its photon file
    assert "Traceback" not in proc.stderr
    by_raw = {r["raw_uid"]: r for r in summary["runs"]}
    assert list(by_raw) == [runs[r] for r in ("steps", "other", "corrupt")]
    assert by_raw[runs["corrupt"]]["exit_status"] != "success"
    assert summary["failed"] == 1
    assert summary["settings"]["confidence"] == 0.99
    assert summary["settings"]["flid_bin_s"] == pytest.approx(0.01)
    with open_catalog(data, create=False) as catalog:
        for role in ("steps", "other"):
            result = by_raw[runs[role]]
            assert result["exit_status"] == "success", result
            assert result["photons"] == photons[role]
            assert result["seconds"] > 0
            derived = catalog.client[result["derived_uid"]]
            start = derived.metadata["start"]
            assert start["raw_uid"] == runs[role]
            assert start["qd_analysis"]["settings"]["confidence"] == 0.99
            assert start["qd_analysis"]["flid_bin_ms"] == pytest.approx(10.0)
            flid = derived["flid"].read()
            assert int(flid["photons"].values.sum()) == photons[role]
            # 2 s of photons in 10 ms bins
            assert flid.sizes["time"] == pytest.approx(200, abs=1)
        # Every row of every stream, as `replay` gives it with the same settings (one run:
        # each replay and read-back costs seconds).
        again = replay(catalog, runs["steps"], settings=SETTINGS, compare=False)
        _assert_same_rows(
            _streams(catalog.client[by_raw[runs["steps"]]["derived_uid"]]),
            _streams(catalog.client[again.derived_uid]),
        )


def test_library_on_a_scheduler_address(recorded, cluster):
    """`reanalyze` on an existing scheduler, by address: the selected run only, each result
    reported as it is written, and a default-settings run differs from a 10 ms one."""
    data, runs, photons, _ = recorded
    seen = []
    with open_catalog(data, create=False) as catalog:
        uids = select_raw_runs(catalog, plans=[OTHER_PLAN])
        (result,) = reanalyze(
            catalog, uids, scheduler=cluster.scheduler_address, on_result=seen.append
        )
        assert seen == [result] and result.ok and result.raw_uid == runs["other"]
        assert result.photons == photons["other"]
        start = catalog.client[result.derived_uid].metadata["start"]
        assert start["qd_analysis"]["settings"] == AnalysisSettings().metadata()["settings"]
        flid = catalog.client[result.derived_uid]["flid"].read()
        # 2 s of photons in 20 ms bins (the 10 ms re-analysis has twice as many)
        assert flid.sizes["time"] == pytest.approx(100, abs=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "not an ISO 8601 date"),
        (["--plan", "no_such_plan"], "no raw photon runs match plan no_such_plan"),
        (["--since", "2999-01-01"], "no raw photon runs match since 2999-01-01"),
        (["--scheduler", "tcp://127.0.0.1:{port}", "--connect-timeout", "1"], "no Dask scheduler"),
        (["--scheduler", "not-an-address"], "--scheduler 'not-an-address'"),
        (["--confidence", "0.95", "--bin-ms", "0"], "flid_bin_s must be a positive number"),
    ],
)
def test_bad_arguments_fail_in_one_line(recorded, capsys, args, message):
    data = recorded[0]
    args = [a.format(port=_free_port()) for a in args]
    t0 = time.perf_counter()
    code = main(["reanalyze", "--data-dir", str(data), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qd-bluesky: error: "), err
    assert message in lines[0]
    assert time.perf_counter() - t0 < 30


def test_a_scheduler_without_workers_fails_in_one_line(recorded, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as lc:
        code = main(
            ["reanalyze", "--data-dir", str(recorded[0]), "--no-progress"]
            + ["--scheduler", lc.scheduler_address, "--connect-timeout", "1"]
        )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("qd-bluesky: error: ") and "\n" not in err, err
    assert "has no workers" in err
