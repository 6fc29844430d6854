"""The survey on a bigger simulated field: its time per dot and the confusion matrix (issue 13).

Runs ``qd-bluesky survey --json`` (the simulated instrument in its own process, real Channel
Access, the embedded catalog), matches the dots found to the field's truth and prints the
confusion matrix (truth -> survey outcome), the time of the raster and the time per dot::

    python benchmarks/bench_survey.py --dots 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from qd_bluesky.sim import default_area_um, draw_field

MATCH_UM = 0.15


def expected(site) -> str:
    if site.truth == "cluster":
        return "not single"
    return "bleached" if site.bleaches else site.truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dots", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--area", type=float, default=None)
    parser.add_argument("--gate", type=float, default=0.05)
    parser.add_argument("--data-dir", default=None, help="keep the catalog here (default: a temp)")
    args = parser.parse_args()
    area = args.area or default_area_um(args.dots)
    sites, _ = draw_field(args.dots, args.seed, area / 2)
    with tempfile.TemporaryDirectory() as temp:
        data = args.data_dir or temp
        Path(data).mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-P", "-m", "qd_bluesky.cli", "survey", "--json",
            "--dots", str(args.dots), "--seed", str(args.seed), "--area", str(area),
            "--gate", str(args.gate), "--data-dir", data,
        ]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=data)
        wall = time.monotonic() - t0
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        out = json.loads(proc.stdout)
        from qd_bluesky.catalog import open_catalog

        catalog = open_catalog(data)
        spans = {}
        for uid in catalog.client:
            md = catalog.client[uid].metadata
            name = md["start"].get("plan_name")
            if name in ("find_dots", "survey") and md.get("stop"):
                spans[name] = md["stop"]["time"] - md["start"]["time"]
        catalog.close()
    matrix: Counter = Counter()
    unmatched = 0
    for s in sites:
        near = [
            d for d in out["dots"] if math.hypot(d["x_um"] - s.x_um, d["y_um"] - s.y_um) < MATCH_UM
        ]
        if not near:
            unmatched += 1
            matrix[(expected(s), "not found")] += 1
            continue
        d = near[0]
        matrix[(expected(s), d["charging"] if d["status"] == "measured" else d["status"])] += 1
    rows = sorted({t for t, _ in matrix})
    cols = sorted({f for _, f in matrix})
    print(f"field: {args.dots} sites, {area:g} um, seed {args.seed}; found {out['found']}")
    print("truth \\ survey | " + " | ".join(cols))
    for r in rows:
        print(f"{r} | " + " | ".join(str(matrix.get((r, c), 0)) for c in cols))
    agree = sum(n for (t, f), n in matrix.items() if t == f)
    print(f"agreement: {agree}/{len(sites)}; not found: {unmatched}")
    fraction = out["charging_beyond_X2_fraction"]
    truth = sum(s.truth == "deep" for s in sites if s.truth != "cluster" and not s.bleaches)
    singles = sum(s.truth != "cluster" and not s.bleaches for s in sites)
    print(f"charging beyond X2-: survey {fraction}, truth {truth}/{singles}")
    print(
        f"wall {wall:.0f} s; find_dots {spans.get('find_dots', math.nan):.0f} s; survey "
        f"{spans.get('survey', math.nan):.0f} s = "
        f"{spans.get('survey', math.nan) / max(out['found'], 1):.1f} s per dot"
    )


if __name__ == "__main__":
    main()
