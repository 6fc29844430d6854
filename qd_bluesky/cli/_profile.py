"""``qd-bluesky ipython-profile``: an IPython profile whose sessions start ready to measure."""

from __future__ import annotations

import argparse
from pathlib import Path

STARTUP_FILE = "00-qd-bluesky.py"
TEMPLATE = '''"""qd-bluesky session (written by `qd-bluesky ipython-profile`)."""
import os

{env}
from qd_bluesky.startup import *  # noqa: F401,F403  RE, catalog, pot, tcspc, laser, stage, plans
'''


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ipython-profile",
        help="create an IPython profile that starts a ready qd-bluesky session",
        description="Create (or update) an IPython profile whose startup loads qd_bluesky.startup: "
        "RE, the catalog, the devices, bp/bps and the qd plans. Start it with "
        "`ipython --profile=NAME`.",
    )
    p.add_argument("--name", default="qd", help="profile name (qd)")
    p.add_argument("--prefix", default=None, help="PV prefix to use in the profile's sessions")
    p.add_argument("--data-dir", default=None, help="data directory of the embedded catalog")
    p.add_argument("--catalog", default=None, metavar="URI", help="a Tiled server instead")
    p.add_argument("--ipython-dir", default=None, help="IPython directory (default ~/.ipython)")
    p.set_defaults(func=run)


def write_profile(
    name: str = "qd",
    *,
    prefix: str | None = None,
    data_dir: str | None = None,
    catalog: str | None = None,
    ipython_dir: str | None = None,
) -> Path:
    """Create the profile and its startup file; returns the startup file's path."""
    from IPython.core.profiledir import ProfileDir
    from IPython.paths import get_ipython_dir

    if not name or "/" in name:
        raise ValueError(f"--name must be a plain profile name, not {name!r}")
    profile = ProfileDir.create_profile_dir_by_name(ipython_dir or get_ipython_dir(), name)
    settings = {
        "QD_BLUESKY_PREFIX": prefix,
        "QD_BLUESKY_DATA": str(Path(data_dir).resolve()) if data_dir else None,
        "QD_BLUESKY_CATALOG": catalog,
    }
    env = "\n".join(
        f"os.environ.setdefault({key!r}, {value!r})"
        for key, value in settings.items()
        if value is not None
    )
    path = Path(profile.startup_dir) / STARTUP_FILE
    path.write_text(TEMPLATE.format(env=env))
    return path


def run(args: argparse.Namespace) -> int:
    path = write_profile(
        args.name,
        prefix=args.prefix,
        data_dir=args.data_dir,
        catalog=args.catalog,
        ipython_dir=args.ipython_dir,
    )
    print(f"wrote {path}")
    print(f"start a session with: ipython --profile={args.name}")
    return 0
