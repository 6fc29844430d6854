"""One data-directory layout: ``sim --data-dir D`` and ``run --data-dir D`` started separately,
and every photon of the run served by the catalog of ``D``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import h5py
import numpy as np

from qd_bluesky.catalog import list_runs, open_catalog
from qd_bluesky.iocs import free_port_pair
from qd_bluesky.iocs._process import READY_LINE


def qd(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "qd_bluesky.cli", *args]


def sim_and_run(data: Path, run_args: list[str], *, interrupt_after: float | None = None):
    """``qd-bluesky sim`` and ``qd-bluesky run`` as two commands sharing ``--data-dir``.

    With ``interrupt_after``, the run gets Ctrl-C twice that many seconds after its photon file
    appeared.
    """
    prefix = f"qdl{uuid.uuid4().hex[:8]}:"
    port = free_port_pair()
    common = ["--prefix", prefix, "--port", str(port), "--data-dir", str(data)]
    env = {
        **os.environ,
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port),
    }
    sim = subprocess.Popen(
        qd("sim", *common), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in sim.stdout:
            lines.append(line)
            if READY_LINE in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(120) and sim.poll() is None, "".join(lines)
        run = subprocess.Popen(
            qd("run", *run_args, *common),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if interrupt_after is not None:
            deadline = time.monotonic() + 120
            while not list(data.glob("photons/*.h5")) and time.monotonic() < deadline:
                time.sleep(0.2)
            try:
                run.wait(interrupt_after)
            except subprocess.TimeoutExpired:
                # Ctrl-C twice: the RunEngine's first asks for a pause at a checkpoint, which
                # a photon run has none of; the second pauses at once (and the run aborts).
                run.send_signal(2)
                time.sleep(0.5)
                run.send_signal(2)
        out, err = run.communicate(timeout=300)
        return run.returncode, err
    finally:
        sim.send_signal(2)
        sim.wait(30)


def test_sim_and_run_share_data_dir_and_photons_are_served(tmp_path):
    data = tmp_path / "D"
    code, err = sim_and_run(data, ["bias-steps", "--biases", "0,-1.4", "--dwell", "1.5"])
    assert code == 0, err
    # The IOC wrote into D/photons/, not into D itself.
    files = sorted((data / "photons").glob("*.h5"))
    assert len(files) == 1, sorted(p.name for p in data.rglob("*"))
    assert not list(data.glob("*.h5"))
    with h5py.File(files[0], "r") as f:
        stamps = f["photon_data/timestamps"][:]
    assert len(stamps) > 1000  # ~1.5 s at tens of kc/s
    with open_catalog(data, create=False) as catalog:
        (raw,) = [r for r in list_runs(catalog) if r["kind"] == "raw"]
        assert raw["num_events"]["photons"] == len(stamps)
        served = catalog.client[raw["uid"]]["photons"]["tcspc_timestamps"].read()
    # Every photon, read back through Tiled from the IOC's file.
    np.testing.assert_array_equal(np.asarray(served), stamps)


def test_a_run_stopped_early_holds_every_photon_of_its_file(tmp_path):
    data = tmp_path / "D"
    # 20 cycles of 2 s, interrupted (Ctrl-C) 5 s into the acquisition.
    sim_and_run(data, ["bias-cycling", "--cycles", "20", "--rate", "2.0"], interrupt_after=5.0)
    (path,) = sorted((data / "photons").glob("*.h5"))
    with h5py.File(path, "r") as f:
        rows = f["photon_data/timestamps"].shape[0]
    with open_catalog(data, create=False) as catalog:
        (raw,) = [r for r in list_runs(catalog) if r["kind"] == "raw"]
    assert raw["exit_status"] in ("abort", "fail")  # it did stop early
    assert raw["num_events"]["photons"] == rows > 0


def test_sim_help_names_the_layout():
    out = subprocess.run(qd("sim", "--help"), capture_output=True, text=True, timeout=60)
    assert "DATA_DIR/photons/" in out.stdout
    assert "--photon-dir" not in out.stdout  # internal: for parents that resolved the layout
