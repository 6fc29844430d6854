"""bluesky-queueserver for qd-bluesky: the startup module, plan list and permissions it needs.

``qd-bluesky queueserver`` runs the RE Manager in the foreground with them;
:func:`re_manager_command` gives the same ``start-re-manager`` command line for a facility that
runs the manager itself (e.g. under systemd, behind bluesky-httpserver).

The RE Worker imports :mod:`qd_bluesky.startup`, which opens the session of
:func:`qd_bluesky._session.open_session` without its interactive parts. Its configuration comes
from the environment the manager passes on: ``QD_BLUESKY_DATA``, ``QD_BLUESKY_PREFIX``,
``QD_BLUESKY_CATALOG`` and ``QD_BLUESKY_CA_PORT``.

The shipped ``existing_plans_and_devices.yaml`` is what the worker's namespace holds; after a
change to the plans, regenerate it with ``python -m qd_bluesky.queueserver``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The package's own files.
PACKAGE_DIR = Path(__file__).resolve().parent
EXISTING_PLANS_AND_DEVICES = PACKAGE_DIR / "existing_plans_and_devices.yaml"
USER_GROUP_PERMISSIONS = PACKAGE_DIR / "user_group_permissions.yaml"
STARTUP_MODULE = "qd_bluesky.startup"

#: Loopback defaults: a manager that other hosts may reach is a deliberate choice.
DEFAULT_REDIS_ADDR = "localhost:6379"
DEFAULT_ZMQ_CONTROL_ADDR = "tcp://127.0.0.1:60615"
DEFAULT_ZMQ_INFO_ADDR = "tcp://127.0.0.1:60625"
#: Devices are listed without their sub-devices: plans take whole instruments by name.
DEVICE_MAX_DEPTH = 1


def offline_namespace(prefix: str = "qd:") -> dict[str, Any]:
    """The plans and devices of the worker's namespace, without connecting or a catalog."""
    from .._session import DOT_PROBE_NAME, plan_namespace
    from ..callbacks import PhotonProbe
    from ..devices import make_instrument

    return {
        **plan_namespace(),
        **make_instrument(prefix).as_dict(),
        DOT_PROBE_NAME: PhotonProbe(DOT_PROBE_NAME),
    }


def existing_plans_and_devices(prefix: str = "qd:") -> tuple[dict, dict]:
    """The lists that ``existing_plans_and_devices.yaml`` holds, computed from the code.

    Returns
    -------
    plans, devices : dict
        As bluesky-queueserver describes them (parameters, annotations, docstrings).
    """
    from bluesky_queueserver.manager.profile_ops import existing_plans_and_devices_from_nspace

    plans, devices, _, _ = existing_plans_and_devices_from_nspace(
        nspace=offline_namespace(prefix), max_depth=DEVICE_MAX_DEPTH
    )
    return plans, devices


def write_existing_plans_and_devices(
    path: str | os.PathLike[str] = EXISTING_PLANS_AND_DEVICES,
) -> Path:
    """Regenerate the plan and device list (a maintainer's step after changing the plans)."""
    from bluesky_queueserver.manager.profile_ops import save_existing_plans_and_devices

    plans, devices = existing_plans_and_devices()
    path = Path(path)
    save_existing_plans_and_devices(
        existing_plans=plans,
        existing_devices=devices,
        file_dir=str(path.parent),
        file_name=path.name,
        overwrite=True,
    )
    return path


def re_manager_command(
    *,
    redis_addr: str = DEFAULT_REDIS_ADDR,
    zmq_control_addr: str = DEFAULT_ZMQ_CONTROL_ADDR,
    zmq_info_addr: str = DEFAULT_ZMQ_INFO_ADDR,
    executable: str = "start-re-manager",
) -> list[str]:
    """The ``start-re-manager`` command line with the shipped startup, plan list, permissions.

    The shipped plan list is read, never rewritten (it lives in the installed package):
    ``--update-existing-plans-devices NEVER``.
    """
    return [
        executable,
        "--startup-module",
        STARTUP_MODULE,
        "--existing-plans-devices",
        str(EXISTING_PLANS_AND_DEVICES),
        "--update-existing-plans-devices",
        "NEVER",
        "--user-group-permissions",
        str(USER_GROUP_PERMISSIONS),
        "--device-max-depth",
        str(DEVICE_MAX_DEPTH),
        "--redis-addr",
        redis_addr,
        "--zmq-control-addr",
        zmq_control_addr,
        "--zmq-info-addr",
        zmq_info_addr,
        "--zmq-publish-console",
        "ON",
    ]


def worker_environment(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    prefix: str | None = None,
    port: int | None = None,
    catalog_uri: str | None = None,
) -> Mapping[str, str]:
    """The variables through which the RE Worker's startup module gets its configuration."""
    from .._session import ENV_CATALOG, ENV_PORT, ENV_PREFIX
    from ..catalog import DATA_DIR_ENV, resolve_data_dir

    env = {DATA_DIR_ENV: str(resolve_data_dir(data_dir))}
    if prefix:
        env[ENV_PREFIX] = prefix
    if port is not None:
        env[ENV_PORT] = str(port)
    if catalog_uri:
        env[ENV_CATALOG] = catalog_uri
    return env


__all__ = [
    "DEFAULT_REDIS_ADDR",
    "DEFAULT_ZMQ_CONTROL_ADDR",
    "DEFAULT_ZMQ_INFO_ADDR",
    "EXISTING_PLANS_AND_DEVICES",
    "STARTUP_MODULE",
    "USER_GROUP_PERMISSIONS",
    "existing_plans_and_devices",
    "offline_namespace",
    "re_manager_command",
    "worker_environment",
    "write_existing_plans_and_devices",
]
