"""``qd-bluesky run``: options from the plans' signatures, clear errors before anything moves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qd_bluesky import plans
from qd_bluesky.cli._run import PLANS, plan_parser


def qd(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-m", "qd_bluesky.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_plan_gets_a_parser_from_its_signature(name):
    plan = getattr(plans, PLANS[name])
    parser, devices = plan_parser(name, plan)
    assert set(devices) <= {"tcspc", "potentiostat", "stage"} and devices
    options = {a.dest for a in parser._actions}
    assert "md" in options and "prefix" in options  # common options
    assert "readables" not in options  # devices are never options


def test_values_are_converted_by_type():
    parser, _ = plan_parser("bias-steps", plans.bias_steps)
    ns = parser.parse_args(["--biases", "0,-1.4,-2", "--dwell", "2.5"])
    assert ns.biases == [0.0, -1.4, -2.0]
    assert ns.dwell == 2.5 and ns.collect_period == 0.5
    parser, _ = plan_parser("find-dot", plans.find_dot)
    ns = parser.parse_args(["--x-range", "1,3", "--y-range=-2,2", "--step", "0.5", "--no-snake"])
    assert ns.x_range == (1.0, 3.0) and ns.y_range == (-2.0, 2.0) and ns.snake is False
    parser, _ = plan_parser("cv-scan", plans.cv_scan)
    ns = parser.parse_args(["--start", "0", "--vertex=-2", "--end", "0", "--rate", "0.2"])
    assert ns.cycles == 1 and ns.vertex == -2.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "nope"], "invalid choice"),
        (["run", "bias-steps", "--biases", "0,x", "--dwell", "1"], "--biases"),
        (["run", "bias-steps", "--dwell", "1"], "required: --biases"),
        (["run", "cv-scan", "--start", "0", "--vertex", "-2", "--end", "0"], "--rate"),
        (["run", "g2-measurement", "--duration", "ten"], "--duration"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path, args, needle):
    proc = qd(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_plan_options_with_their_docs(tmp_path):
    proc = qd("run", "cv-scan", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--start", "--vertex", "--end", "--rate", "--cycles", "--prefix", "--port"):
        assert option in proc.stdout
    assert "Cyclic voltammetry" in proc.stdout


def test_missing_instrument_is_one_line(tmp_path):
    from qd_bluesky.iocs import free_port_pair

    port = free_port_pair()  # nothing serves here
    proc = qd(
        "run",
        "bias-steps",
        "--biases",
        "0",
        "--dwell",
        "1",
        "--prefix",
        "nobody:",
        "--port",
        str(port),
        "--connect-timeout",
        "1",
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "nobody:pot:" in lines[0]
