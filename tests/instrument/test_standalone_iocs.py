"""Each IOC also runs alone: ``python -m qd_bluesky.iocs.<name> --prefix P --list-pvs``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from caproto.sync.client import read as ca_read

from qd_bluesky.iocs import (
    LaserIOC,
    PotentiostatIOC,
    StageIOC,
    TcspcIOC,
    loopback_environment,
)

#: module -> (PVGroup, PV infix, a PV to read, its value at start-up)
MODULES = {
    "potentiostat": (PotentiostatIOC, "pot:", "bias_low_limit", -2.0),
    "tcspc": (TcspcIOC, "tcspc:", "sync_rate", 2.5e6),
    "laser": (LaserIOC, "laser:", "power", 30e-9),
    "stage": (StageIOC, "stage:", "x.VELO", 200.0),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_ioc_runs_alone(module, tmp_path, free_port):
    group, infix, pv, value = MODULES[module]
    count = len(group(prefix="x:", backend=None).pvdb)  # the PVs the group declares
    prefix = f"qds{uuid.uuid4().hex[:8]}:"
    port = free_port()
    env = {**os.environ, **loopback_environment(port)}
    cmd = [
        sys.executable,
        "-P",
        "-m",
        f"qd_bluesky.iocs.{module}",
        "--prefix",
        prefix,
        "--list-pvs",
    ]
    cmd += ["--interfaces", "127.0.0.1"]
    if module == "tcspc":
        cmd += ["--data-dir", str(tmp_path)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    started = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Server startup complete" in line:
                started.set()
        started.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert started.wait(60), "".join(lines)
        os.environ["EPICS_CA_ADDR_LIST"] += f" 127.0.0.1:{port}"
        reading = ca_read(f"{prefix}{infix}{pv}", repeater=False, timeout=10)
        assert reading.data[0] == pytest.approx(value)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
    time.sleep(0.1)
    log = "".join(lines)
    served = [ln.strip() for ln in log.splitlines() if ln.strip().startswith(prefix)]
    # --list-pvs logs every PV of the one instrument, under {prefix}{infix}.
    assert len(served) == count and all(name.startswith(prefix + infix) for name in served)
    assert code == 0, log
    assert "Traceback" not in log
