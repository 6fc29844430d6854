"""``qd-bluesky queueserver``: the bluesky-queueserver RE Manager with the qd startup."""

from __future__ import annotations

import argparse
import shlex
import socket

from ._exec import console_script, replace_process

#: Seconds to wait for Redis before saying it is unreachable.
_REDIS_PROBE_S = 3.0


def register(sub: argparse._SubParsersAction) -> None:
    from ..queueserver import DEFAULT_REDIS_ADDR, DEFAULT_ZMQ_CONTROL_ADDR, DEFAULT_ZMQ_INFO_ADDR

    p = sub.add_parser(
        "queueserver",
        help="run the bluesky-queueserver RE Manager with the qd plans, in the foreground",
        description="Run the bluesky-queueserver RE Manager in the foreground with the startup "
        "module qd_bluesky.startup and the shipped plan list and user group permissions. "
        "Clients (bluesky-queueserver-api, qserver, bluesky-httpserver) add qd plans to its "
        "queue; runs and their derived runs go to the catalog of --data-dir (or --catalog). "
        "The equivalent start-re-manager command line is printed first.",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $QD_BLUESKY_DATA)")
    p.add_argument("--catalog", default=None, metavar="URI", help="a Tiled server instead")
    p.add_argument("--prefix", default=None, help="PV prefix of the instrument (default qd:)")
    p.add_argument(
        "--port", type=int, default=None, help="find the IOCs on 127.0.0.1 at this CA port"
    )
    p.add_argument(
        "--redis-addr", default=DEFAULT_REDIS_ADDR, metavar="HOST:PORT", help="%(default)s"
    )
    p.add_argument(
        "--zmq-control-addr", default=DEFAULT_ZMQ_CONTROL_ADDR, metavar="ADDR", help="%(default)s"
    )
    p.add_argument(
        "--zmq-info-addr", default=DEFAULT_ZMQ_INFO_ADDR, metavar="ADDR", help="%(default)s"
    )
    p.add_argument(
        "--print-command",
        action="store_true",
        help="print the start-re-manager command line and its environment, and exit",
    )
    p.set_defaults(func=run)


def _check_redis(addr: str) -> None:
    """One line instead of the manager's retries when Redis is not there."""
    host, _, rest = addr.partition(":")
    port_text = rest.split("/")[0] or "6379"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--redis-addr takes HOST[:PORT][/DB], not {addr!r}") from None
    try:
        with socket.create_connection((host or "localhost", port), timeout=_REDIS_PROBE_S):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach Redis at {host or 'localhost'}:{port} ({exc.strerror or exc}); "
            "start redis-server or give --redis-addr"
        ) from None


def run(args: argparse.Namespace) -> int:
    from ..queueserver import re_manager_command, worker_environment

    if args.port is not None and not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, not {args.port}")
    env = worker_environment(
        data_dir=args.data_dir, prefix=args.prefix, port=args.port, catalog_uri=args.catalog
    )
    command = re_manager_command(
        redis_addr=args.redis_addr,
        zmq_control_addr=args.zmq_control_addr,
        zmq_info_addr=args.zmq_info_addr,
    )
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    print(f"{shown} {shlex.join(command)}", flush=True)
    if args.print_command:
        return 0
    _check_redis(args.redis_addr)
    command[0] = console_script("start-re-manager", "bluesky-queueserver")
    replace_process(command, env)
