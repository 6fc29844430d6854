"""Fixtures: simulated IOCs in subprocesses on free loopback ports, with uuid PV prefixes.

Each IOC process is ``qd-bluesky sim`` (all four IOCs on one simulated sample) on its own CA
port; the test process reaches it through ``EPICS_CA_ADDR_LIST`` entries ``127.0.0.1:<port>``
(caproto's client reads the list at every search, so IOCs started later are found too) and
``EPICS_CA_AUTO_ADDR_LIST=NO``, so parallel test runs never see each other's PVs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
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
from qd_bluesky.iocs import (  # noqa: E402
    SimulatedInstrumentProcess,
    free_port_pair,
    loopback_environment,
    use_loopback_ioc,
)

#: Seconds the devices may take to connect once the server is up.
CONNECT_TIMEOUT_S = 20.0


class SimIoc(SimulatedInstrumentProcess):
    """One ``qd-bluesky sim`` subprocess (the four simulated IOCs on one sample)."""

    def __init__(self, data_dir: Path, *, seed: int = 1, preset: str = "qd1") -> None:
        super().__init__(data_dir, seed=seed, preset=preset, prefix=f"qdt{uuid.uuid4().hex[:10]}:")

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> qd_devices.Instrument:
        return qd_devices.connect_instrument(self.prefix, timeout=timeout)


@pytest.fixture(autouse=True)
def _forget_sync_client_circuits() -> Iterator[None]:
    """Close the circuits caproto's sync client (``caproto.sync.client``) cached in this test.

    The client keeps one TCP circuit per server address for the whole process. Once a test
    stops its IOC, a later IOC given the same free port would be reached through the dead
    circuit ("Disconnected during initialization", seen in CI).
    """
    yield
    from caproto.sync import client

    for sock in client.sockets.values():
        sock.close()
    client.sockets.clear()
    client.global_circuits.clear()


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


def ramp_rate(samples, reduce=np.median):
    """Rate (V/s) of a linear ramp from ``(timestamp, value)`` monitor updates.

    The IOC computes each ramp value from its own clock and stamps it as it publishes it, so a
    tick that is late under load lands further along the same line: the median slope between
    consecutive updates is the programmed rate whatever the scheduling, and a wrong rate (a
    ramp twice as fast or slow) shows up directly. ``reduce=0`` returns the non-zero slopes.
    """
    t, v = np.asarray(samples, dtype=float).T
    dt, dv = np.diff(t), np.diff(v)
    slopes = dv[(dt > 0) & (dv != 0)] / dt[(dt > 0) & (dv != 0)]
    return slopes if reduce == 0 else float(reduce(slopes))


@pytest.fixture
def ramp_meter():
    """``ramp_meter(samples) -> rate`` (see :func:`ramp_rate`)."""
    return ramp_rate


@pytest.fixture
def waiter():
    """``waiter(predicate, timeout) -> last value`` (see :func:`wait_for`)."""
    return wait_for


class ThreadIoc:
    """PVGroups served by caproto's asyncio server in a daemon thread of the test process.

    For IOCs whose backend a test holds (e.g. a fake library whose key switch it turns), or
    small IOCs defined in a test; clients reach them over CA as any other.
    """

    def __init__(self, groups, port: int) -> None:
        from caproto.asyncio.server import start_server

        self.port = port
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        pvdb = {name: pv for group in groups for name, pv in group.pvdb.items()}

        async def hook(async_lib) -> None:
            self.ready.set()

        self.task = self.loop.create_task(
            start_server(pvdb, interfaces=["127.0.0.1"], startup_hook=hook)
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def start(self) -> ThreadIoc:
        env = loopback_environment(self.port)
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # the server reads its port from the environment
        try:
            self.thread.start()
            assert self.ready.wait(30), "the IOC thread did not start"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        use_loopback_ioc(self.port)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


@pytest.fixture
def serve_in_thread():
    """``serve_in_thread(*groups) -> ThreadIoc`` on a free port, stopped after the test."""
    started: list[ThreadIoc] = []

    def serve(*groups) -> ThreadIoc:
        started.append(ThreadIoc(groups, free_port_pair()).start())
        return started[-1]

    yield serve
    for ioc in started:
        ioc.stop()


class IocSubprocess:
    """An IOC command (``cmd``) serving on its own loopback port, for a test module.

    ``start()`` waits for caproto's "Server startup complete" and points this process's
    client at the port; ``stop()`` sends SIGINT and returns the console text.
    """

    def __init__(self, cmd: list[str]) -> None:
        self.port = free_port_pair()
        self.cmd = [*cmd, "--interfaces", "127.0.0.1"]
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> IocSubprocess:
        self.proc = proc = subprocess.Popen(
            self.cmd,
            env={**os.environ, **loopback_environment(self.port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.lines.append(line)
                if "Server startup complete" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(timeout) and proc.poll() is None, self.text
        use_loopback_ioc(self.port)
        return self

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(15)
        return self.text


@pytest.fixture(scope="session")
def ioc_subprocess() -> type[IocSubprocess]:
    """``ioc_subprocess(cmd).start()`` (see :class:`IocSubprocess`)."""
    return IocSubprocess
