"""Every command block of the README, run as written, in order, as a user would type it.

Console blocks run line by line in bash (``export`` lines set the environment of the lines
after them); the servers a block starts (``qd-bluesky sim``, ``queueserver``,
``serve-catalog``) run in the background as in a second terminal; ``ipython`` takes the
following IPython block on its standard input; Python blocks run with ``python -c``. The only
things the test adds are what the README says must already be there: Redis on localhost:6379
and PostgreSQL on localhost:5432 with a ``qd`` user and database. The README's fixed ports make
this test hold a machine-wide lock while it runs.

The two set-up commands (``pip install . && qd-bluesky demo`` and the test command) are run by
``.ci/run`` itself; this test checks that it extracts exactly them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from .servers import (
    Background,
    clean_env,
    exclusive_port,
    port_is_free,
    postgres_server,
    redis_server,
    run_command,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Long-running commands of the README, with the line each prints once it serves.
SERVERS = {
    "qd-bluesky sim": "qd-bluesky sim: serving",
    "qd-bluesky queueserver": "start-re-manager --startup-module",
    "qd-bluesky serve-catalog": "serving",
}
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


@dataclass
class Block:
    language: str
    text: str
    line: int


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(m.group(1), m.group(2), text[: m.start()].count("\n") + 1)
        for m in FENCE.finditer(text)
    ]


def test_ci_runs_the_two_setup_commands_of_the_readme():
    script = (ROOT / ".ci" / "run").read_text()
    setup = re.findall(r"^    \$ (.*)$", README.read_text(), re.M)
    assert setup == ["pip install . && qd-bluesky demo", 'pip install ".[test]" && pytest']
    # .ci/run's own extraction, run on the README, gives exactly these two.
    for pattern in re.findall(r"sed -n '(s/.*?/p)' README.md", script):
        out = subprocess.run(
            ["sed", "-n", pattern, str(README)], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert out[0] in setup


def test_every_block_is_of_a_kind_this_test_runs():
    # Indented code blocks are only the two set-up commands (.ci/run runs them).
    indented = re.findall(r"^    \S.*$", README.read_text(), re.M)
    assert [line.strip() for line in indented] == [
        "$ pip install . && qd-bluesky demo",
        '$ pip install ".[test]" && pytest',
    ]
    blocks = readme_blocks()
    assert {b.language for b in blocks} <= {"console", "ipython", "python"}
    # An ipython block always follows the console block that starts ipython.
    for before, block in zip(blocks, blocks[1:], strict=False):
        if block.language == "ipython":
            assert before.language == "console" and before.text.split("\n")[-2] == "ipython"


def test_readme_as_written(tmp_path):
    blocks = readme_blocks()
    home = tmp_path / "home"
    home.mkdir()
    data_dir = tmp_path / "data"
    env = clean_env(data_dir, HOME=str(home))
    for port in (5064, 6379, 5432, 8000, 60615, 60625):
        if not port_is_free(port):
            message = f"port {port}, which the README uses, is taken on this machine"
            if os.environ.get("QD_BLUESKY_REQUIRE_SERVERS"):
                pytest.fail(message)
            pytest.skip(message)
    with ExitStack() as stack:
        for port in (5064, 6379, 5432, 8000, 60615):
            stack.enter_context(exclusive_port(port))
        # What the README says must be there already.
        stack.enter_context(redis_server(tmp_path, 6379))
        stack.enter_context(postgres_server(tmp_path, 5432, user="qd", database="qd"))
        outputs = stack.enter_context(_Runner(env, home)).run(blocks)
    _check(outputs, data_dir, home)


class _Runner:
    """Runs the blocks; keeps every output by the block's first line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.servers: list[Background] = []
        self.outputs: dict[str, str] = {}

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in reversed(self.servers):  # Ctrl-C, newest first
            code = server.stop(60)
            self.outputs[f"exit {server.name}"] = str(code)
            self.outputs[f"log {server.name}"] = server.output

    def run(self, blocks: list[Block]) -> dict[str, str]:
        pending_ipython = False
        for block in blocks:
            if block.language == "console":
                for line in block.text.splitlines():
                    if line == "ipython":
                        pending_ipython = True
                        continue
                    self._console(line, block)
            elif block.language == "ipython":
                assert pending_ipython, f"README:{block.line}: ipython block without `ipython`"
                pending_ipython = False
                self.outputs["ipython"] = self._ipython(block)
            else:
                self.outputs[block.text.splitlines()[0]] = run_command(
                    [sys.executable, "-c", block.text], env=self.env, cwd=self.cwd, timeout=600
                ).stdout
        return self.outputs

    def _console(self, line: str, block: Block) -> None:
        if line.startswith("export "):
            for item in shlex.split(line)[1:]:
                key, _, value = item.partition("=")
                self.env[key] = value
            return
        server = " ".join(line.split()[:2])
        server = server if server in SERVERS else None
        if server is not None:
            proc = Background(
                ["bash", "-c", f"exec {line}"], env=self.env, cwd=self.cwd, name=server
            )
            self.servers.append(proc)
            proc.wait_for_line(SERVERS[server], 120)
            if server == "qd-bluesky serve-catalog":
                wait_for_port(8000, 60, proc)
            return
        result = run_command(line, env=self.env, cwd=self.cwd, timeout=900)
        self.outputs[line] = result.stdout + result.stderr

    def _ipython(self, block: Block) -> str:
        ipython = str(Path(sys.executable).with_name("ipython"))
        proc = subprocess.run(
            [ipython, "--no-banner", "--colors=NoColor", "--simple-prompt"],
            input=block.text,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr


def _check(out: dict[str, str], data_dir: Path, home: Path) -> None:
    from qd_bluesky.catalog import list_runs, open_catalog

    # The IPython session: every plan ran, the unsafe bias was refused in one line.
    session = out["ipython"]
    assert "Traceback" not in session, session[-4000:]
    assert "find_dot: no dot" not in session, session[-4000:]
    assert re.search(
        r"UnsafeBiasError: pot: bias -2\.500 V is outside the safe window \[-2\.000, \+1\.000\] V;"
        r" nothing was sent to the potentiostat",
        session,
    ), session[-4000:]
    # Scripted runs print their raw and derived uids; the help lists the plan's options.
    assert "--vertex X" in out["qd-bluesky run cv-scan --help"]
    for line in (
        "qd-bluesky run bias-steps --biases 0,-1.4,-2 --dwell 10 --port 5064",
        "qd-bluesky run cv-scan --start 0 --vertex -2 --end 0 --rate 0.5 --cycles 2 --port 5064",
    ):
        assert re.search(r"raw run \S+ \(scan \d+\); derived run \S+ \(success\)", out[line])
    assert re.search(r"live run\s+\S+: identical", out["qd-bluesky replay -1"])
    summary = json.loads((home / "cv-report" / "summary.json").read_text())
    assert summary["runs"], summary
    # Old recordings: the simulated -1.7 V dot (X2-/X3-, tau about 7.5 ns; docs/physics.md).
    analysis = json.loads(out["qd-bluesky analyze dot.h5 --json"])
    assert analysis["format"] == "photon-hdf5" and 5.0 < analysis["lifetime_ns"] < 10.0
    assert "ns, g2(0) =" in out["from qd_bluesky.analysis import analyze_file"]
    # The queue ran its plan to completion.
    assert out["from bluesky_queueserver_api import BPlan"].strip().endswith("completed")
    # The catalog server served run, runs and replay.
    assert "g2_measurement" in out["qd-bluesky runs --catalog http://127.0.0.1:8000/api"]
    assert "identical" in out["qd-bluesky replay -1 --catalog http://127.0.0.1:8000/api"]
    # Every server stopped cleanly on Ctrl-C.
    for name in SERVERS:
        assert out[f"exit {name}"] in ("0", "130", "-2"), (name, out[f"log {name}"][-2000:])

    # Everything recorded on the embedded catalog.
    with open_catalog(data_dir, create=False) as catalog:
        runs = list_runs(catalog)
    raw = [r for r in runs if r["kind"] == "raw"]
    derived = {r["raw_uid"]: r for r in runs if r["kind"] == "derived"}
    plans = [r["plan_name"] for r in raw]
    assert plans == [
        "find_dot",
        "bias_steps",
        "cv_scan",
        "g2_measurement",
        "adaptive_bias_map",  # IPython
        "bias_steps",
        "cv_scan",  # qd-bluesky run
        "bias_steps",  # the queue
    ], plans
    assert [r["scan_id"] for r in raw] == list(range(1, len(raw) + 1))
    for r in raw:
        assert r["exit_status"] == "success", r
    # find_dot records a map and the dot, not photons; every photon run has its analysis.
    assert raw[0]["num_events"]["dot"] == 1  # found
    assert raw[0]["num_events"]["primary"] >= 25  # the 5 x 5 raster, then the refinement
    for r in raw[1:]:
        assert derived[r["uid"]]["exit_status"] == "success", r
    bias_steps = raw[1]
    assert bias_steps["num_events"]["primary"] == 5
