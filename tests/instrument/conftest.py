"""Fixtures: simulated IOCs in subprocesses on free loopback ports, with uuid PV prefixes.

Each IOC process is ``qd-bluesky sim`` (all four IOCs on one simulated sample) on its own CA
port; the test process reaches it through ``EPICS_CA_ADDR_LIST`` entries ``127.0.0.1:<port>``
(caproto's client reads the list at every search, so IOCs started later are found too) and
``EPICS_CA_AUTO_ADDR_LIST=NO``, so parallel test runs never see each other's PVs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Client side: loopback only, nothing from the machine's own EPICS set-up.
os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
os.environ.setdefault("EPICS_CA_ADDR_LIST", "")

import qd_bluesky.devices as qd_devices  # noqa: E402  (chooses the caproto control layer)

#: Seconds an IOC process may take to come up (imports, numba kernels from the cache).
STARTUP_TIMEOUT_S = 60.0
#: Seconds the devices may take to connect once the server is up.
CONNECT_TIMEOUT_S = 20.0


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_pair() -> int:
    """A port P with P (CA server, TCP+UDP) and P+1 (repeater) free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 65000 and _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports")


def _die_with_parent() -> None:
    """In the child: get SIGTERM (a clean stop) when the test process dies, never linger."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _add_address(port: int) -> None:
    entries = os.environ.get("EPICS_CA_ADDR_LIST", "").split()
    entry = f"127.0.0.1:{port}"
    if entry not in entries:
        os.environ["EPICS_CA_ADDR_LIST"] = " ".join([*entries, entry])


class SimIoc:
    """One ``qd-bluesky sim`` subprocess (the four simulated IOCs on one sample)."""

    def __init__(self, data_dir: Path, *, seed: int = 1, preset: str = "qd1") -> None:
        self.prefix = f"qdt{uuid.uuid4().hex[:10]}:"
        self.port = free_port_pair()
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.preset = preset
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc: subprocess.Popen | None = None

    def start(self) -> SimIoc:
        cmd = [
            sys.executable,
            "-m",
            "qd_bluesky.cli",
            "sim",
            "--prefix",
            self.prefix,
            "--port",
            str(self.port),
            "--seed",
            str(self.seed),
            "--preset",
            self.preset,
            "--data-dir",
            str(self.data_dir),
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(STARTUP_TIMEOUT_S):
            self.kill()
            raise RuntimeError(f"IOC did not start in {STARTUP_TIMEOUT_S} s:\n{self.log}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"IOC exited at start-up:\n{self.log}")
        _add_address(self.port)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "qd-bluesky sim: serving" in line:
                self._ready.set()
        self._ready.set()  # exited: do not make start() wait

    @property
    def log(self) -> str:
        return "".join(self.lines[-60:])

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> qd_devices.Instrument:
        return qd_devices.connect_instrument(self.prefix, timeout=timeout)

    def interrupt(self, timeout: float = 15.0) -> int:
        """SIGINT (Ctrl-C) and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the IOC vanishes without any clean-up (a crash, a pulled cable)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.interrupt()
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="module")
def sim_ioc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimIoc]:
    """The simulated instrument in one subprocess for the whole test module."""
    ioc = SimIoc(tmp_path_factory.mktemp("photons"), seed=1).start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="module")
def instrument(sim_ioc: SimIoc) -> Iterator[qd_devices.Instrument]:
    """The four ophyd devices connected to :func:`sim_ioc`."""
    inst = sim_ioc.connect()
    yield inst
    for device in inst:
        device.destroy()


@pytest.fixture
def fresh_ioc(tmp_path: Path) -> Iterator[SimIoc]:
    """An IOC process of its own, for tests that kill or interrupt it."""
    ioc = SimIoc(tmp_path, seed=2).start()
    yield ioc
    ioc.kill()


#: Rate-meter gate of the simulated card (s).
GATE_S = 0.5


def measure_rate(tcspc, gates: int) -> tuple[float, float]:
    """Mean total count rate (cps) over ``gates`` consecutive fresh rate-meter gates.

    Returns the mean and its Poisson standard error, sqrt(counts) / time.
    """
    tcspc.trigger().wait(5)  # the first gate measured entirely after this call
    rates = [tcspc.count_rate0.get() + tcspc.count_rate1.get()]
    while len(rates) < gates:
        gate = tcspc.rate_gate.get()
        if not wait_for(lambda g=gate: tcspc.rate_gate.get() > g, timeout=3.0, period=0.01):
            raise TimeoutError("the rate meters stopped updating")
        rates.append(tcspc.count_rate0.get() + tcspc.count_rate1.get())
    counts = float(np.sum(rates)) * GATE_S
    return float(np.mean(rates)), float(np.sqrt(max(counts, 1.0)) / (gates * GATE_S))


@pytest.fixture
def free_port():
    """``free_port() -> P`` with P and P + 1 free on 127.0.0.1."""
    return free_port_pair


@pytest.fixture
def rate_meter():
    """``rate_meter(tcspc, gates) -> (mean cps, Poisson sigma)`` (see :func:`measure_rate`)."""
    return measure_rate


def wait_for(predicate, timeout: float = 10.0, period: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)
