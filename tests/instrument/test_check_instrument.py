"""``qd-bluesky check-instrument`` as a user runs it: a subprocess against real IOCs.

The simulated instrument passes every check; a potentiostat IOC that takes any bias (a small
caproto IOC serving every documented PV, built from the table the checks read) fails the
IOC-side bias check and only it, while one that refuses after completing the put (keeping
the old value, setting ``limit_violation``) passes it; a missing IOC fails its connection and
skips the rest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from qd_bluesky.devices._pvs import documented_pvs

#: Start values of the permissive potentiostat: the window and a connected cell.
POT_VALUES = {"bias_low_limit": -2.0, "bias_high_limit": 1.0, "cell_on": "on", "slew_rate": 1.0}


def check_instrument(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", "check-instrument", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_simulated_instrument_passes(sim_ioc):
    done = check_instrument("--prefix", sim_ioc.prefix, "--port", str(sim_ioc.port), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    outcomes = {row["check"]: row["outcome"] for row in report["checks"]}
    assert set(outcomes.values()) == {"PASS"}, report
    # Every IOC connected and read every documented PV of its own.
    for ioc in ("pot", "tcspc", "laser", "stage"):
        assert outcomes[f"{ioc}: connect"] == "PASS"
        reason = next(
            r["reason"] for r in report["checks"] if r["check"] == f"{ioc}: documented PVs"
        )
        assert reason.startswith(f"{len(documented_pvs(ioc))} PVs read")
    assert len(outcomes) == 15 and report["failed"] == 0
    assert "Traceback" not in done.stderr


def permissive_pot(prefix: str, *, refuse_late: bool = False) -> PVGroup:
    """A potentiostat IOC that serves every documented PV and takes every put as it comes.

    ``refuse_late``: a bias put completes, keeps the old value and sets ``limit_violation``,
    as an IOC that refuses through a record's alarm fields rather than a failed put.
    """
    body: dict = {}
    for row in documented_pvs("pot"):
        value = POT_VALUES.get(row.name)
        if row.kind == "ENUM":
            choices = row.enum_strings or ("1 uA", "1 mA")  # an ENUM whose list is the IOC's
            body[row.name] = pvproperty(
                value=value or choices[0], dtype=ChannelType.ENUM, enum_strings=choices
            )
        elif row.kind == "CHAR":
            body[row.name] = pvproperty(value="ok", dtype=ChannelType.CHAR, max_length=1024)
        elif row.kind == "LONG":
            body[row.name] = pvproperty(value=int(value or 0))
        else:
            body[row.name] = pvproperty(value=float(value or 0.0))
    if refuse_late:

        async def refuse_after_completion(group, instance, value):
            await group.limit_violation.write(1)
            return instance.value

        body["bias"] = body["bias"].putter(refuse_after_completion)
    return type("PermissivePot", (PVGroup,), body)(prefix=f"{prefix}pot:")


def test_an_ioc_that_takes_an_unsafe_bias_fails_with_the_right_line(serve_in_thread):
    prefix = f"qdbad{uuid.uuid4().hex[:8]}:"
    ioc = serve_in_thread(permissive_pot(prefix))
    done = check_instrument("--prefix", prefix, "--port", str(ioc.port), "--only", "pot")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"PASS  pot: documented PVs: {len(documented_pvs('pot'))} PVs read, types as documented"
        in lines
    )
    # The device still refuses; the IOC does not, and that is the one failure.
    assert any(line.startswith("PASS  pot: device refuses an unsafe bias") for line in lines)
    assert (
        "FAIL  pot: IOC refuses an unsafe bias: the IOC accepted bias +1.10 V outside its "
        "window -2.00..+1.00 V" in lines
    )
    assert lines[-1] == "4 checks, 1 failed"
    assert "Traceback" not in done.stderr


def test_a_missing_ioc_fails_its_connection_and_skips_the_rest(free_port):
    prefix = f"qdnone{uuid.uuid4().hex[:8]}:"
    done = check_instrument(
        "--prefix", prefix, "--port", str(free_port()), "--only", "stage", "--timeout", "1"
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert lines[0].startswith("FAIL  stage: connect: ")
    assert f"e.g. {prefix}stage:" in lines[0]
    assert lines[1:4] == [
        "SKIP  stage: documented PVs: not connected",
        "SKIP  stage: move and come back: not connected",
        "SKIP  stage: stop a move: not connected",
    ]
    assert "Traceback" not in done.stderr


def test_a_refusal_after_completion_counts_as_a_refusal(serve_in_thread):
    prefix = f"qdalm{uuid.uuid4().hex[:8]}:"
    ioc = serve_in_thread(permissive_pot(prefix, refuse_late=True))
    done = check_instrument("--prefix", prefix, "--port", str(ioc.port), "--only", "pot")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "PASS  pot: IOC refuses an unsafe bias: +1.10 V refused after the put completed "
        "(severity 0, limit_violation 1)" in done.stdout.splitlines()
    )
