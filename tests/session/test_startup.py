"""The IPython/queueserver startup module and the persisted ``RE.md``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qd_bluesky._session import JsonMetadata
from qd_bluesky.iocs import free_port_pair

PROBE = """
import json, time
t = time.monotonic()
import qd_bluesky.startup as s
s.RE.md["operator"] = "probe"
print(json.dumps({
    "names": sorted(k for k in vars(s) if not k.startswith("_")),
    "seconds": time.monotonic() - t,
    "suspenders": len(s.RE.suspenders),
    "catalog": str(s.catalog.data_dir),
}))
"""


def test_startup_imports_without_a_display_or_ioc(tmp_path):
    port = free_port_pair()  # no IOC there: the session must still open, with a warning
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
    }
    env.update(
        QD_BLUESKY_DATA=str(tmp_path / "data"),
        QD_BLUESKY_PREFIX="nobody:",
        EPICS_CA_ADDR_LIST=f"127.0.0.1:{port}",
        EPICS_CA_AUTO_ADDR_LIST="NO",
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    names = set(out["names"])
    for name in (
        "RE",
        "bec",
        "catalog",
        "analyzer",
        "live_plots",
        "pot",
        "tcspc",
        "laser",
        "stage",
        "bp",
        "bps",
        "bias_steps",
        "cv_scan",
        "g2_measurement",
        "find_dot",
        "raster_scan",
        "bias_cycling",
        "adaptive_bias_map",
        "dot_probe",
        "interlock_suspender",
    ):
        assert name in names, name
    assert out["catalog"] == str(tmp_path / "data")
    assert out["suspenders"] == 1  # the laser interlock
    # RE.md went to one JSON file in the data directory
    stored = json.loads((tmp_path / "data" / "RE_md.json").read_text())
    assert stored["operator"] == "probe"
    # the missing IOCs are named once, as a warning
    assert proc.stderr.count("cannot reach the potentiostat IOC (nobody:pot:") == 1


def test_json_metadata_persists_and_refuses_what_it_cannot_store(tmp_path):
    path = tmp_path / "md.json"
    md = JsonMetadata(path)
    md["sample"] = "qd1 on ITO"
    md["scan_id"] = 7
    assert JsonMetadata(path) == {"sample": "qd1 on ITO", "scan_id": 7}
    with pytest.raises(TypeError):
        md["bad"] = object()
    assert "bad" not in JsonMetadata(path)
    del md["sample"]
    assert dict(JsonMetadata(path)) == {"scan_id": 7}


def test_corrupt_metadata_file_is_a_clear_error(tmp_path):
    path = tmp_path / "md.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="md.json: RE.md file is not valid JSON"):
        JsonMetadata(path)


def test_run_engine_deep_copies_json_metadata_and_counts_scans(tmp_path):
    """bluesky deep-copies RE.md at every open_run: a lock inside it broke every plan."""
    import bluesky.plans as bp
    from bluesky import RunEngine

    md = JsonMetadata(tmp_path / "md.json")
    md["operator"] = "probe"
    RE = RunEngine(md, scan_id_source=md.next_scan_id)  # noqa: N806
    starts = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    RE(bp.count([]))
    RE(bp.count([]))
    assert [doc["scan_id"] for doc in starts] == [1, 2]
    assert all(doc["operator"] == "probe" for doc in starts)
    # A second session on the same file (another process, later) continues the count.
    other = JsonMetadata(tmp_path / "md.json")
    assert other.next_scan_id() == 3
    assert md["scan_id"] == 3  # the first one sees the file change


COUNT_SCANS = """
import sys
from qd_bluesky._session import JsonMetadata
md = JsonMetadata(sys.argv[1])
print(" ".join(str(md.next_scan_id()) for _ in range(50)))
"""


def test_scan_ids_never_repeat_across_processes(tmp_path):
    path = tmp_path / "md.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-P", "-c", COUNT_SCANS, str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    ids = [int(v) for p in procs for v in p.communicate(timeout=120)[0].split()]
    assert sorted(ids) == list(range(1, 201))
