"""``qd-bluesky survey`` and ``sim --field``: wrong arguments are one-line errors, at once."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["survey", "--dots", "0"], "--dots must be in 1..31"),
        (["survey", "--cv-rate", "0"], "--cv-rate must be positive"),
        (["survey", "--area", "0.1"], "--area must be in 1..200 um"),
        (["sim", "--area", "5"], "--area needs --field"),
        (["sim", "--field", "40"], "--field must be in 1..31 sites"),
        (["demo", "--field", "0"], "--field must be in 1..31"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", *args, "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("qd-bluesky: error: ") and message in line
    assert not list((tmp_path).glob("**/*.h5"))  # nothing started
