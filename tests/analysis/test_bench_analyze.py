"""``benchmarks/bench_analyze.py --json``: the stage table as one JSON object on the last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_analyze.py"


def test_json_stage_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH), "--photons", "2e5", "--long-seconds", "4", "--repeat", "1",
         "--json"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=True,
    )  # fmt: skip
    table = json.loads(out.stdout.strip().splitlines()[-1])
    assert table["repeat"] == 1 and table["photons"] > 1e5 and table["long_photons"] > 1e5
    stages = {(s["stage"], s["threads"]): s for s in table["stages"]}
    for key in [("read PTU", 1), ("g2", 1), ("trace+decay+FLID+g2, one pass", 2),
                ("analyze_file (HDF5)", 1), ("analyze_file (HDF5)", 2),
                ("analyze_file (HDF5, 4 s)", 2), ("analyze_file (PTU)", 1)]:  # fmt: skip
        assert key in stages, key
    for s in table["stages"]:
        assert s["qd_bluesky_mps"] > 0
        if s["numpy_mps"] is not None:
            assert abs(s["ratio_numpy"] - s["qd_bluesky_mps"] / s["numpy_mps"]) < 1e-9
    # the long file: 4 s of 20 ms FLID bins
    assert stages[("analyze_file (HDF5, 4 s)", 1)]["note"].startswith("200 FLID bins")
