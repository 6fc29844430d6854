"""docs/architecture.md's table, enforced: the import-linter contracts of pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def lint_imports(staged: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: pip install '.[test]' installs import-linter")
    env = {**os.environ, "PYTHONPATH": str(staged)}
    return subprocess.run(
        [exe, str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=staged,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_are_kept(staged):
    result = lint_imports(staged)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_a_forbidden_import_breaks_a_contract(staged, tmp_path):
    """The contracts bite: physics importing EPICS, or analysis importing a layer above."""
    copy = tmp_path / "tree"
    shutil.copytree(staged, copy)
    with (copy / "qd_bluesky" / "sim" / "__init__.py").open("a") as f:
        f.write("\nimport caproto  # noqa\n")
    with (copy / "qd_bluesky" / "analysis" / "__init__.py").open("a") as f:
        f.write("\nimport qd_bluesky.callbacks  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    out = result.stdout
    assert "Physics knows nothing of EPICS, Bluesky or the catalog BROKEN" in out
    assert "Layers: each imports only the layers below it BROKEN" in out
    assert "qd_bluesky.analysis -> qd_bluesky.callbacks" in out
