"""The simulated instrument as a child process on a free loopback port.

``qd-bluesky demo`` and the test suites start ``qd-bluesky sim`` this way: its own CA port (and
the repeater on port + 1), a unique PV prefix, and a client environment that reaches it and
nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

#: Seconds the IOC process may take to come up (imports, numba kernels from the cache).
STARTUP_TIMEOUT_S = 60.0
#: Line the sim prints once it serves its PVs.
READY_LINE = "qd-bluesky sim: serving"


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
    """In the child: get SIGTERM (a clean stop) when the parent dies, never linger."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def use_loopback_ioc(port: int) -> None:
    """Point this process's CA client at an IOC on ``127.0.0.1:port`` (and only loopback).

    caproto's client reads ``EPICS_CA_ADDR_LIST`` at every search, so IOCs added later are
    found too; call this before the first search for their PVs.
    """
    os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    entries = os.environ.get("EPICS_CA_ADDR_LIST", "").split()
    entry = f"127.0.0.1:{port}"
    if entry not in entries:
        os.environ["EPICS_CA_ADDR_LIST"] = " ".join([*entries, entry])


class SimulatedInstrumentProcess:
    """One ``qd-bluesky sim`` child process: the four simulated IOCs on one sample.

    Parameters
    ----------
    data_dir
        The folder where the TCSPC IOC writes its photon files (``catalog.photon_dir``), passed
        as ``--photon-dir``: the caller has resolved the layout already.
    seed, preset
        Of the simulated sample.
    field, area_um
        A survey field of ``field`` sites in a square of side ``area_um`` (``sim --field``).
    prefix
        PV prefix; default a unique ``qd<hex>:`` so that runs never see each other's PVs.
    port
        CA server port; default a free loopback port pair.
    options
        Further ``qd-bluesky sim`` options (e.g. ``["--card-blind", "--rise-time", "1e-5"]``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        seed: int = 1,
        preset: str = "qd1",
        prefix: str | None = None,
        port: int | None = None,
        field: int | None = None,
        area_um: float | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.options = list(options)
        self.prefix = prefix or f"qd{uuid.uuid4().hex[:10]}:"
        self.port = port or free_port_pair()
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.preset = preset
        self.field = field
        self.area_um = area_um
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc: subprocess.Popen | None = None

    #: The line the process prints once it serves.
    ready_line = READY_LINE

    def command(self) -> list[str]:
        """The child's command line."""
        cmd = [
            sys.executable,
            "-P",  # never import a source tree from the working directory
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
            "--photon-dir",
            str(self.data_dir),
        ]
        if self.field is not None:
            cmd += ["--field", str(self.field)]
            if self.area_um is not None:
                cmd += ["--area", repr(float(self.area_um))]
        return cmd + list(self.options)

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> SimulatedInstrumentProcess:
        """Start the process, wait until it serves, and point this process's client at it."""
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Ctrl-C in a terminal goes to the whole foreground group: the parent stops the
            # child itself, in order, so keep the child out of that group.
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"the simulated instrument did not start in {timeout} s: {self.log}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the simulated instrument exited at start-up: {self.log}")
        use_loopback_ioc(self.port)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.ready_line in line:
                self._ready.set()
        self._ready.set()  # exited: do not make start() wait

    @property
    def log(self) -> str:
        """The last lines the process printed."""
        return "".join(self.lines[-60:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def interrupt(self, timeout: float = 15.0) -> int:
        """SIGINT (as Ctrl-C) and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the IOC vanishes without any clean-up (a crash, a pulled cable)."""
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop cleanly (photon file closed intact); kill if that takes too long."""
        if not self.running:
            return
        try:
            self.interrupt()
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> SimulatedInstrumentProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
