"""``qd-bluesky run`` as a subprocess against ``qd-bluesky sim``, with nothing exported."""

from __future__ import annotations

import re

from qd_bluesky.catalog import list_runs, open_catalog

from .servers import clean_env, free_port, qd, qd_sim, run_command


def test_port_alone_reaches_the_iocs_scan_ids_increase_and_exit_is_clean(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    # No EPICS_CA_ADDR_LIST pointing at the IOC: only --port says where it is.
    env = clean_env(data_dir)
    env.pop("EPICS_CA_ADDR_LIST")
    with qd_sim(data_dir, port, cwd=tmp_path, prefix="lab:"):
        outs = [
            run_command(
                qd(f"run {plan} --prefix lab: --port {port} --data-dir {data_dir}"),
                env=env,
                cwd=tmp_path,
            )
            for plan in (
                "cv-scan --start 0 --vertex -1 --end 0 --rate 2",
                "bias-steps --biases 0,-1.4 --dwell 1",
            )
        ]
    for n, out in enumerate(outs, start=1):
        # Nothing on stderr: no caproto traceback when the process exits.
        assert out.stderr == "", out.stderr
        assert re.fullmatch(
            rf"raw run (\S+) \(scan {n}\); derived run \S+ \(success\)\n", out.stdout
        ), out.stdout
    with open_catalog(data_dir, create=False) as catalog:
        raw = [r for r in list_runs(catalog) if r["kind"] == "raw"]
    assert [(r["plan_name"], r["scan_id"]) for r in raw] == [("cv_scan", 1), ("bias_steps", 2)]
