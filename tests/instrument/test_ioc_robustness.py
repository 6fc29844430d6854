"""``qd-bluesky sim`` as a script would run it: SIGINT inherited ignored, refused puts."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import h5py
import pytest
from caproto import CaprotoError
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from qd_bluesky.analysis import read_photon_hdf5
from qd_bluesky.iocs import loopback_environment, use_loopback_ioc
from qd_bluesky.iocs._process import READY_LINE


class _Output:
    """The lines a child prints, collected by a thread."""

    def __init__(self, proc: subprocess.Popen, ready_line: str = READY_LINE) -> None:
        self.ready_line = ready_line
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)
            if self.ready_line in line:
                self.ready.set()
        self.ready.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sim_started_with_signals_ignored_stops_on_them(signum, tmp_path: Path, free_port):
    """A shell script's ``qd-bluesky sim &`` inherits SIGINT ignored: it must still stop on it
    (and on SIGTERM), at once, with code 0, and leave the photon file intact with every row it
    announced."""
    prefix, port = f"qdr{uuid.uuid4().hex[:8]}:", free_port()
    sim = [sys.executable, "-P", "-m", "qd_bluesky.cli", "sim", "--prefix", prefix]
    sim += ["--port", str(port), "--photon-dir", str(tmp_path)]
    # The shell ignores the signals, then execs: the child inherits SIG_IGN, as a background
    # job does with SIGINT.
    proc = subprocess.Popen(
        ["sh", "-c", f"trap '' INT TERM; exec {shlex.join(sim)}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = _Output(proc)
    try:
        assert out.ready.wait(60) and proc.poll() is None, out.text
        use_loopback_ioc(port)
        ca_write(f"{prefix}tcspc:acquire", 1, notify=True, timeout=10, repeater=False)
        time.sleep(1.0)
        announced = int(ca_read(f"{prefix}tcspc:num_photons", timeout=5, repeater=False).data[0])
        raw_path = ca_read(f"{prefix}tcspc:file_path", timeout=5, repeater=False).data
        path = Path(bytes(raw_path).rstrip(b"\0").decode())
        assert announced > 1000
        t0 = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(10)
        assert time.monotonic() - t0 < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, out.text
    assert "Traceback" not in out.text
    with h5py.File(path, "r") as f:  # a plain open: the writer closed it
        n = f["photon_data/timestamps"].shape[0]
        assert f["photon_data/nanotimes"].shape == f["photon_data/detectors"].shape == (n,)
    assert n >= announced
    assert len(read_photon_hdf5(path)) == n


def _put_unsafe_bias(prefix: str, lines: list[str]) -> str:
    """Put -3 V (outside the safe window); return what the IOC printed meanwhile."""
    before = len(lines)
    with pytest.raises(CaprotoError):
        ca_write(f"{prefix}pot:bias", -3.0, notify=True, timeout=10, repeater=False)
    time.sleep(0.5)  # the console line comes from the IOC's own thread
    return "".join(lines[before:])


def _assert_one_line_refusal(console: str, prefix: str) -> None:
    assert "Traceback" not in console
    lines = [ln for ln in console.splitlines() if "safe window" in ln or "refused" in ln]
    assert len(lines) == 1, console
    assert f"{prefix}pot: put refused: bias -3.000 V is outside the safe window" in lines[0]


def test_refused_put_is_one_line_in_the_sim_console(fresh_ioc) -> None:
    use_loopback_ioc(fresh_ioc.port)
    console = _put_unsafe_bias(fresh_ioc.prefix, fresh_ioc.lines)
    _assert_one_line_refusal(console, fresh_ioc.prefix)
    # and the IOC serves on
    reading = ca_read(f"{fresh_ioc.prefix}pot:bias_rbv", timeout=5, repeater=False)
    assert reading.data[0] == pytest.approx(0.0)


def test_refused_put_is_one_line_in_a_standalone_ioc(free_port) -> None:
    """``python -m qd_bluesky.iocs.potentiostat`` logs through caproto's own handler."""
    prefix, port = f"qdr{uuid.uuid4().hex[:8]}:", free_port()
    cmd = [sys.executable, "-P", "-m", "qd_bluesky.iocs.potentiostat", "--prefix", prefix]
    proc = subprocess.Popen(
        [*cmd, "--interfaces", "127.0.0.1"],
        env={**os.environ, **loopback_environment(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Output(proc, ready_line="Server startup complete")
    try:
        assert out.ready.wait(60) and proc.poll() is None, out.text
        use_loopback_ioc(port)
        console = _put_unsafe_bias(prefix, out.lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    _assert_one_line_refusal(console, prefix)
