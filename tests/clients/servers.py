"""Real servers and real commands for the entry-point tests: Redis, PostgreSQL, the CLI.

Redis and PostgreSQL are Debian's (``apt-get install redis-server postgresql``); `.ci/run`
installs them and sets ``QD_BLUESKY_REQUIRE_SERVERS=1``, so that in CI a missing server fails
the test instead of skipping it. Every process started here is stopped by its context manager,
and dies with the test process (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

#: The installed console script, beside this Python (never the source tree).
QD_BLUESKY = str(Path(sys.executable).with_name("qd-bluesky"))


def qd(command: str) -> list[str]:
    """``qd-bluesky`` with the words of ``command`` (split as a shell would)."""
    return [QD_BLUESKY, *shlex.split(command)]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def missing_server(what: str) -> None:
    """Skip (a developer without the server) or fail (CI, where it must be there)."""
    message = f"{what} is not installed (Debian: apt-get install redis-server postgresql)"
    if os.environ.get("QD_BLUESKY_REQUIRE_SERVERS"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Free for a server: like Redis and PostgreSQL, ignore connections left in TIME_WAIT."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float, proc: Background | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.proc.returncode} before listening:\n"
                f"{proc.output[-3000:]}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no display, EPICS on loopback only, own data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EPICS_", "QD_BLUESKY_", "TILED_", "PYTEST_"))
        and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(
        MPLBACKEND="Agg",
        QD_BLUESKY_DATA=str(data_dir),
        EPICS_CA_AUTO_ADDR_LIST="NO",
        EPICS_CA_ADDR_LIST="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Background:
    """A long-running command (a server) whose output is collected while it runs."""

    def __init__(
        self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path, name: str
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Condition()
        self.proc = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._ready:
                self.lines.append(line.rstrip("\n"))
                self._ready.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self.proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(min(left, 0.5))
        raise AssertionError(
            f"{self.name}: no line with {needle!r} within {timeout} s "
            f"(exit {self.proc.poll()}):\n{self.output[-3000:]}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (what Ctrl-C sends), then SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@contextlib.contextmanager
def background(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path, name: str
) -> Iterator[Background]:
    proc = Background(args, env=env, cwd=cwd, name=name)
    try:
        yield proc
    except BaseException as exc:
        proc.stop()
        exc.add_note(
            f"--- output of {name} (exit {proc.proc.returncode}) ---\n{proc.output[-4000:]}"
        )
        raise
    finally:
        proc.stop()


def run_command(
    args: Sequence[str] | str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """A command as a user runs it (a string runs in bash, as a README line does)."""
    proc = subprocess.run(
        args if not isinstance(args, str) else ["bash", "-e", "-c", args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args!r} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-3000:]}"
        )
    return proc


@contextlib.contextmanager
def exclusive_port(port: int) -> Iterator[None]:
    """Hold a machine-wide lock for a fixed port (README blocks use fixed ports)."""
    path = Path(tempfile.gettempdir()) / f"qd-bluesky-test-port-{port}.lock"
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---- Redis -----------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """A throw-away Redis on 127.0.0.1 (no persistence); yields ``host:port``."""
    exe = shutil.which("redis-server")
    if exe is None:
        missing_server("redis-server")
    port = port or free_port()
    env = dict(os.environ)
    with background(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        env=env,
        cwd=workdir,
        name="redis-server",
    ) as proc:
        wait_for_port(port, 20, proc)
        yield f"127.0.0.1:{port}"


# ---- PostgreSQL ------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextlib.contextmanager
def postgres_server(
    workdir: Path, port: int | None = None, *, user: str = "qd", database: str = "qd"
) -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth); yields its URI.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user
    that Debian's package creates.
    """
    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing_server("PostgreSQL (initdb)")
    port = port or free_port()
    as_user: list[str] = []
    # A directory of its own, outside pytest's 0700 tmp tree, that the postgres user may use.
    cluster = Path(tempfile.mkdtemp(prefix="qd-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(cluster, "postgres")
    try:
        run_command(
            [
                *as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(cluster / "data"),
                "-A",
                "trust",
                "-U",
                user,
                "-E",
                "UTF8",
                "--no-sync",
            ],
            env=dict(os.environ, LC_ALL="C.UTF-8"),
            cwd=cluster,
            timeout=120,
        )
        with background(
            [
                *as_user,
                str(bin_dir / "postgres"),
                "-D",
                str(cluster / "data"),
                "-p",
                str(port),
                "-k",
                str(cluster),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            env=dict(os.environ, LC_ALL="C.UTF-8"),
            cwd=cluster,
            name="postgres",
        ) as proc:
            wait_for_port(port, 60, proc)
            run_command(
                [
                    str(bin_dir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    user,
                    database,
                ],
                env=dict(os.environ),
                cwd=cluster,
                timeout=60,
            )
            yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        shutil.rmtree(cluster, ignore_errors=True)


# ---- the simulated instrument ----------------------------------------------------------------


@contextlib.contextmanager
def qd_sim(
    data_dir: Path, port: int, *, cwd: Path, prefix: str = "qd:", extra: Sequence[str] = ()
) -> Iterator[Background]:
    """``qd-bluesky sim --prefix P --port N --data-dir D`` as a user starts it."""
    env = clean_env(data_dir)
    with background(
        [
            QD_BLUESKY,
            "sim",
            "--prefix",
            prefix,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        env=env,
        cwd=cwd,
        name="qd-bluesky sim",
    ) as sim:
        sim.wait_for_line("qd-bluesky sim: serving", 90)
        yield sim
