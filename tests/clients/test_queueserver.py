"""bluesky-queueserver, driven as a facility drives it: a real Redis, ``qd-bluesky queueserver``
and the simulated instrument as separate processes, and bluesky-queueserver-api as the client."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from qd_bluesky.catalog import list_runs, open_catalog
from qd_bluesky.queueserver import (
    EXISTING_PLANS_AND_DEVICES,
    USER_GROUP_PERMISSIONS,
    existing_plans_and_devices,
)

from .servers import QD_BLUESKY, background, clean_env, free_port, qd_sim, redis_server

USER_PLANS = {
    "bias_steps",
    "bias_cycling",
    "bias_switching",
    "cv_scan",
    "g2_measurement",
    "raster_scan",
    "find_dot",
    "adaptive_bias_map",
    "find_dots",
}
DEVICES = {"pot", "tcspc", "laser", "stage", "dot_probe"}


def test_shipped_plan_list_is_what_the_code_defines():
    """Fails when a plan's signature or docstring changed and the YAML was not regenerated
    (``python -m qd_bluesky.queueserver``)."""
    plans, devices = existing_plans_and_devices()
    shipped = yaml.safe_load(EXISTING_PLANS_AND_DEVICES.read_text())
    assert shipped["existing_plans"] == plans
    assert shipped["existing_devices"] == devices
    assert set(devices) == DEVICES
    # Device arguments are resolved from names: the protocols map to queueserver's device types.
    tcspc_param = next(p for p in plans["bias_steps"]["parameters"] if p["name"] == "tcspc")
    assert tcspc_param["annotation"]["type"] == "__FLYABLE__"


def test_permissions_allow_the_user_plans_and_devices_and_no_stub():
    from bluesky_queueserver.manager.profile_ops import load_allowed_plans_and_devices

    allowed_plans, allowed_devices = load_allowed_plans_and_devices(
        path_existing_plans_and_devices=str(EXISTING_PLANS_AND_DEVICES),
        path_user_group_permissions=str(USER_GROUP_PERMISSIONS),
    )
    for group in ("root", "primary"):
        assert set(allowed_plans[group]) == USER_PLANS
        assert set(allowed_devices[group]) == DEVICES


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    """Redis, the simulated IOCs and the RE Manager, each its own process."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    work = tmp_path_factory.mktemp("qserver")
    data_dir = work / "data"
    ca_port = free_port()
    control, info = free_port(), free_port()
    with (
        redis_server(work) as redis_addr,
        qd_sim(data_dir, ca_port, cwd=work),
        background(
            [
                QD_BLUESKY,
                "queueserver",
                "--data-dir",
                str(data_dir),
                "--port",
                str(ca_port),
                "--redis-addr",
                redis_addr,
                "--zmq-control-addr",
                f"tcp://127.0.0.1:{control}",
                "--zmq-info-addr",
                f"tcp://127.0.0.1:{info}",
            ],
            env=clean_env(data_dir),
            cwd=work,
            name="qd-bluesky queueserver",
        ) as manager,
    ):
        manager.wait_for_line("start-re-manager --startup-module qd_bluesky.startup", 30)
        api = REManagerAPI(
            zmq_control_addr=f"tcp://127.0.0.1:{control}",
            zmq_info_addr=f"tcp://127.0.0.1:{info}",
            timeout_recv=10,
        )
        api.wait_for_idle(timeout=60)  # the manager answers once it is up
        api.environment_open()
        api.wait_for_idle(timeout=180)
        yield api, data_dir, manager
        api.environment_close()
        api.wait_for_idle(timeout=120)
        api.close()


def test_queue_runs_plans_refuses_bad_ones_and_stores_derived_runs(queue):
    from bluesky_queueserver_api import BPlan
    from bluesky_queueserver_api.comm_base import RequestFailedError

    api, data_dir, manager = queue
    assert api.status()["worker_environment_exists"]

    api.item_add(BPlan("bias_steps", "tcspc", "pot", [0, -1.7], 2))
    api.item_add(BPlan("cv_scan", "tcspc", "pot", 0, -1.5, 0, 1.0, 1))
    # Refused at add, by type: dwell is a float.
    with pytest.raises(RequestFailedError, match="dwell"):
        api.item_add(BPlan("bias_steps", "tcspc", "pot", [0], "abc"))
    # Refused at add: plan stubs are not for the queue.
    with pytest.raises(RequestFailedError, match="not in the list of allowed plans"):
        api.item_add(BPlan("start_photons", "tcspc"))
    # Accepted (types are right), failed at run (the plan refuses it when the worker calls
    # it) with the project's message; last, because a failed plan stops the queue.
    api.item_add(BPlan("bias_steps", "tcspc", "pot", [-2.5], 1))
    assert len(api.queue_get()["items"]) == 3

    api.queue_start()
    api.wait_for_idle(timeout=300)

    history = api.history_get()["items"]
    assert [item["name"] for item in history] == ["bias_steps", "cv_scan", "bias_steps"]
    statuses = [item["result"]["exit_status"] for item in history]
    assert statuses == ["completed", "completed", "failed"]
    msg = history[2]["result"]["msg"]
    assert "-2.500 V is outside the safe window [-2.000, +1.000] V" in msg
    assert "nothing was sent to the potentiostat" in msg
    raw_uids = [history[0]["result"]["run_uids"][0], history[1]["result"]["run_uids"][0]]

    # Each plan ended after its derived run was written: both are in the catalog, complete.
    with open_catalog(data_dir, create=False) as catalog:
        runs = {r["uid"]: r for r in list_runs(catalog)}
        derived = {r["raw_uid"]: r for r in runs.values() if r["kind"] == "derived"}
        for uid in raw_uids:
            assert runs[uid]["exit_status"] == "success"
            assert derived[uid]["exit_status"] == "success"
            assert derived[uid]["num_events"]["flid"] > 0
        # scan ids increase from the persisted RE.md
        assert [runs[u]["scan_id"] for u in raw_uids] == [1, 2]
        assert runs[raw_uids[1]]["plan_name"] == "cv_scan"
    # The unsafe bias reached the manager's console as one line, not a traceback (whose last
    # line would repeat the message).
    (line,) = [x for x in manager.output.splitlines() if "-2.500 V is outside the safe" in x]
    assert "The plan failed: Plan failed: bias_steps: pot: biases[0] -2.500 V" in line


def test_queue_runs_adaptive_bias_map_with_the_session_probe(queue):
    """The queued plan gets ``dot_probe`` by name (the worker's PhotonProbe, subscribed to its
    RunEngine) and records one probe reading per bias it chose."""
    from bluesky_queueserver_api import BPlan

    api, data_dir, _ = queue
    plan = BPlan(
        "adaptive_bias_map",
        "tcspc",
        "pot",
        "dot_probe",
        -1.1,
        -1.5,
        0.5,
        initial_points=3,
        max_points=4,
    )
    api.item_execute(plan)  # now, whatever the queue holds (the test above stopped it)
    api.wait_for_idle(timeout=300)
    item = api.history_get()["items"][-1]
    assert (item["name"], item["result"]["exit_status"]) == ("adaptive_bias_map", "completed")
    (uid,) = item["result"]["run_uids"]
    with open_catalog(data_dir, create=False) as catalog:
        runs = {r["uid"]: r for r in list_runs(catalog)}
        events = runs[uid]["num_events"]
        assert 3 <= events["primary"] == events["adaptive"] <= 4
        # the probe and the live analyzer followed one file: its analysis is whole
        (derived,) = [r for r in runs.values() if r.get("raw_uid") == uid]
        assert derived["exit_status"] == "success" and derived["num_events"]["flid"] > 0
        readings = catalog.client[uid]["adaptive"].read()
        biases = np.asarray(catalog.client[uid]["primary"].read()["pot"])
        lifetimes = np.asarray(readings["dot_probe_lifetime_ns"])
    # a real fit at each bias; the dot charged at -1.5 V: 3-4 times shorter than at -1.1 V
    assert np.all((lifetimes > 0) & (lifetimes < 200))
    assert lifetimes[np.argmin(biases)] < lifetimes[np.argmax(biases)] / 2
