"""The package as it is installed, staged from the source tree for the static checks.

``pyproject.toml`` maps ``devices/``, ``plans/`` and ``iocs/`` into ``qd_bluesky`` by
``package-dir``. Static tools (import-linter, pyright) cannot follow that mapping in an
editable install, so the checks run on a copy with the three directories inside
``qd_bluesky``, the layout ``pip install .`` produces.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
MAPPED = ("devices", "plans", "iocs")


@pytest.fixture(scope="session")
def staged(tmp_path_factory) -> Path:
    """A directory holding ``qd_bluesky`` with the mapped packages inside it."""
    base = tmp_path_factory.mktemp("staged")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "qd_bluesky", base / "qd_bluesky", ignore=ignore)
    for name in MAPPED:
        shutil.copytree(ROOT / name, base / "qd_bluesky" / name, ignore=ignore)
    return base
