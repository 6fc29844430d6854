"""pyright over the modules ``[tool.pyright]`` of pyproject.toml includes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def test_pyright_finds_no_errors(staged):
    exe = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("pyright is missing: pip install '.[test]' installs it")
    shutil.copy(ROOT / "pyproject.toml", staged / "pyproject.toml")
    result = subprocess.run(
        [exe, "--pythonpath", sys.executable, "--outputjson"],
        cwd=staged,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright did not run: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    summary = report["summary"]
    # The include list really reached the packages (a wrong path checks nothing).
    assert summary["filesAnalyzed"] >= 40, summary
    errors = [
        f"{d['file'].removeprefix(str(staged) + '/')}:{d['range']['start']['line'] + 1}: "
        f"{d['message'].splitlines()[0]}"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]
    assert not errors, "\n".join(errors)
