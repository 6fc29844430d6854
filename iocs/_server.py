"""Serving PVGroups: the command-line options and a runner that shuts down cleanly.

caproto's ``run`` relies on Python's KeyboardInterrupt, which a process started in the
background by a shell never gets (it inherits SIGINT ignored). This runner installs its own
SIGINT and SIGTERM handlers whatever it inherited: both cancel the server, which runs the
PVGroups' shutdown hooks, and then calls ``close()`` on every group that has one, so an open
photon file is closed intact whichever way the process is asked to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from caproto.asyncio.server import start_server
from caproto.server import PVGroup, template_arg_parser

from ._common import log_refusals_in_one_line

logger = logging.getLogger(__name__)

#: Server-side CA settings that keep a simulated instrument on the loopback interface.
LOOPBACK_SERVER_ENV = {
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
}


def loopback_environment(port: int | None = None) -> dict[str, str]:
    """Environment that serves CA on 127.0.0.1 only, on ``port`` if given.

    caproto's server reads ``EPICS_CA_SERVER_PORT`` (not ``EPICS_CAS_SERVER_PORT``); beacons
    go to ``EPICS_CAS_BEACON_PORT``, where the repeater listens (``EPICS_CA_REPEATER_PORT``):
    ``port + 1`` here.
    """
    env = dict(LOOPBACK_SERVER_ENV)
    if port is not None:
        env["EPICS_CA_SERVER_PORT"] = str(port)
        env["EPICS_CA_REPEATER_PORT"] = str(port + 1)
        env["EPICS_CAS_BEACON_PORT"] = str(port + 1)
    return env


def ioc_parser(
    *, desc: str, default_prefix: str = "qd:", data_dir: bool = False
) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], tuple[dict, dict]]]:
    """caproto's IOC options (``--prefix``, ``--list-pvs``, ``--interfaces``, ...) plus ours.

    Ours: ``--preset``, ``--seed`` (the simulated sample) and, for the TCSPC card,
    ``--data-dir``. Only the asyncio server is offered (the IOCs use asyncio tasks).
    """
    parser, split_args = template_arg_parser(
        desc=desc, default_prefix=default_prefix, supported_async_libs=("asyncio",)
    )
    add_sample_options(parser, data_dir=data_dir)
    return parser, split_args


def add_sample_options(parser: argparse.ArgumentParser, *, data_dir: bool) -> None:
    """Add ``--preset``, ``--seed`` and optionally ``--data-dir`` to ``parser``."""
    parser.add_argument("--preset", default="qd1", help="dot preset of the simulated sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated sample")
    if data_dir:
        add_data_dir_options(parser)


#: Help of ``--data-dir`` wherever photon files are written (the same layout as the catalog's).
DATA_DIR_HELP = (
    "data directory, the same as the catalog's: photon files go to DATA_DIR/photons/ "
    "(default: $QD_BLUESKY_DATA, else the per-user data directory)"
)


def add_data_dir_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` (photons in ``DATA_DIR/photons/``) and the hidden ``--photon-dir``.

    ``--photon-dir`` names the photon folder itself, for a parent that has resolved the
    layout already (e.g. the demo and the tests pass ``catalog.photon_dir``).
    """
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    parser.add_argument("--photon-dir", default=None, help=argparse.SUPPRESS)


def photon_dir_of(data_dir: str | os.PathLike[str] | None, photon_dir: Any = None) -> Path:
    """Where the TCSPC IOC writes: ``photon_dir`` as given, else ``<data dir>/photons``.

    The data directory is resolved as every other command resolves it (``--data-dir``, else
    ``$QD_BLUESKY_DATA``, else the per-user directory), so one ``--data-dir D`` gives one
    layout, and the catalog opened on ``D`` serves the photons (its readable storage is
    ``D/photons``). The folder is created.
    """
    # Only the path rules of the catalog (no Tiled import).
    from qd_bluesky.catalog import DataLayout, resolve_data_dir

    if photon_dir:
        folder = Path(photon_dir).expanduser().resolve()
    else:
        folder = DataLayout(resolve_data_dir(data_dir)).photons
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the photon directory {folder}: {exc.strerror}") from None
    return folder


def merge_pvdb(groups: Iterable[PVGroup]) -> dict[str, Any]:
    """One PV database from several groups; a PV name served twice is an error."""
    pvdb: dict[str, Any] = {}
    for group in groups:
        clash = pvdb.keys() & group.pvdb.keys()
        if clash:
            raise ValueError(f"PV names served twice: {sorted(clash)[:3]}")
        pvdb.update(group.pvdb)
    return pvdb


def serve(
    groups: Sequence[PVGroup],
    *,
    interfaces: Sequence[str] | None = None,
    log_pv_names: bool = False,
    module_name: str = "caproto.asyncio.server",
    on_ready: Callable[[], None] | None = None,
    repeater: bool = True,
) -> None:
    """Serve ``groups`` in the foreground until SIGINT or SIGTERM, then close them.

    Both signals stop the server even if the process inherited them ignored, and a refused
    put is logged in one line (not caproto's traceback).

    Parameters
    ----------
    groups
        The PVGroups to serve from this one process.
    interfaces
        Interfaces to listen on (default: ``EPICS_CAS_INTF_ADDR_LIST`` or all).
    log_pv_names
        Log the PV names at start-up (``--list-pvs``).
    module_name
        Accepted for compatibility with ``caproto.server.run``; only asyncio is supported.
    on_ready
        Called once the server tasks are started (e.g. to print a banner).
    repeater
        Also run a CA repeater on ``EPICS_CA_REPEATER_PORT`` in a daemon thread, unless one
        runs already: the server's beacons go there (without it the server logs a
        "Failed to send beacon" error every few seconds).
    """
    if module_name != "caproto.asyncio.server":
        raise ValueError(f"only the asyncio server is supported, not {module_name}")
    pvdb = merge_pvdb(groups)
    log_refusals_in_one_line()
    if repeater:
        loopback = bool(interfaces) and all(i.startswith("127.") for i in interfaces)
        start_repeater("127.0.0.1" if loopback else "0.0.0.0")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        # Explicit handlers: a SIGINT inherited as ignored (``cmd &`` in a script) must still
        # stop the server. Both cancel it: caproto then runs the shutdown hooks.
        if task is not None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, task.cancel)

        async def startup_hook(async_lib) -> None:
            if on_ready is not None:
                on_ready()

        try:
            await start_server(
                pvdb,
                interfaces=list(interfaces) if interfaces else None,
                log_pv_names=log_pv_names,
                startup_hook=startup_hook,
            )
        finally:
            _close(groups)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # a signal before the server was up: still an orderly stop
    finally:
        _close(groups)


def start_repeater(host: str = "0.0.0.0") -> None:
    """Run caproto's CA repeater in a daemon thread (it returns at once if one runs)."""
    from caproto.sync import repeater as _repeater

    threading.Thread(
        target=_repeater.run, kwargs={"host": host}, name="ca-repeater", daemon=True
    ).start()


def _close(groups: Iterable[PVGroup]) -> None:
    for group in groups:
        close = getattr(group, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:  # noqa: BLE001 - one failing group must not keep the others open
            logger.exception("closing %s failed", group.prefix)


def apply_environment(env: dict[str, str], *, override: bool = False) -> None:
    """Put ``env`` into ``os.environ`` (keeping what the user set, unless ``override``)."""
    for key, value in env.items():
        if override or key not in os.environ:
            os.environ[key] = value
