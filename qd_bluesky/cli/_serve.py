"""``qd-bluesky serve-catalog``: a Tiled server for the catalog of a data directory."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from ._exec import console_script, replace_process


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-catalog",
        help="serve the catalog of a data directory with a Tiled server (SQLite or PostgreSQL)",
        description="Run `tiled serve config` in the foreground with a configuration for the "
        "data directory: the catalog and event tables on --database, the photon files as "
        "readable storage, the Bluesky specs and the document exporter. Clients use "
        "--catalog http://HOST:PORT/api with $TILED_API_KEY. --print-config shows the "
        "configuration for a facility's own deployment.",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $QD_BLUESKY_DATA)")
    p.add_argument(
        "--database",
        default="sqlite",
        metavar="URI",
        help="'sqlite' (the data directory's own files, as the embedded catalog uses) or "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (default sqlite)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (%(default)s)")
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="the single-user API key (default $TILED_API_KEY, else a new random key, printed)",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the configuration YAML and exit"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..catalog import DataLayout, resolve_data_dir
    from ..catalog._server import CONFIG_FILE, server_config_yaml

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, not {args.port}")
    layout = DataLayout(resolve_data_dir(args.data_dir))
    text = server_config_yaml(layout, args.database)
    if args.print_config:
        sys.stdout.write(text)
        return 0
    layout.create()
    config = layout.root / CONFIG_FILE
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    api_key = args.api_key or os.environ.get("TILED_API_KEY") or secrets.token_hex(32)
    if not api_key.isalnum():
        raise ValueError("--api-key must contain only letters and digits (Tiled's rule)")
    executable = console_script("tiled", "tiled[server]")
    url = f"http://{args.host}:{args.port}/api"
    print(f"serving {layout.root} at {url} (configuration {config})", flush=True)
    if not (args.api_key or os.environ.get("TILED_API_KEY")):
        print(f"  clients: export TILED_API_KEY={api_key}", flush=True)
    print(f"  qd-bluesky runs --catalog {url}", flush=True)
    replace_process(
        [
            executable,
            "serve",
            "config",
            str(config),
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--api-key",
            api_key,
        ]
    )
