"""``qd-bluesky analyze FILE --levels``: the JSON equals ``analyze_file(..., levels=True)``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qd_bluesky.analysis import analyze_file

DATA = Path(__file__).parents[1] / "data"


def test_levels_json_and_text(tmp_path):
    path = DATA / "hydraharp_v10_t3.ptu"
    args = [sys.executable, "-P", "-m", "qd_bluesky.cli", "analyze", str(path), "--levels"]
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([*args, "--confidence", "0.99", "--json"], **run)
    assert proc.returncode == 0, proc.stderr
    expected = analyze_file(path, levels=True, confidence=0.99)
    assert json.loads(proc.stdout) == json.loads(json.dumps(expected))
    text = subprocess.run(args, **run)
    assert text.returncode == 0, text.stderr
    assert "change points (95% confidence)" in text.stdout
    bad = subprocess.run([*args, "--confidence", "0.5"], **run)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
