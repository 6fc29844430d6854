"""Real-path soak: ``qd-bluesky sim`` and ``qd-bluesky run bias-cycling`` as two processes.

    python benchmarks/soak_real.py [--cycles 150] [--rate 2.0] [--data-dir D] [--every 1.0]
                                   [--json out.json]

Starts the simulated instrument and the bias-cycling run exactly as a user would (two
commands sharing ``--data-dir``), samples the resident set size (RSS) of both processes every
``--every`` seconds, and prints a table of RSS against elapsed time, the peak of each, the wall
time of the run against its sweeping time (``cycles * 2 * |vertex| / rate``), and the overhead
per cycle. With ``--json`` the samples are written for later plotting.

The client's RSS includes its Python interpreter, Tiled's app, numba and the RunEngine (some
350-450 MB before the first photon), so "levels off" is judged on the second half of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from qd_bluesky.iocs import free_port_pair
from qd_bluesky.iocs._process import READY_LINE


def status(pid: int, key: str) -> float:
    """A number of ``/proc/<pid>/status`` (NaN once the process has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB."""
    return status(pid, "VmRSS") / 1024


def command(*args: str) -> list[str]:
    # -P: never import a source tree from the working directory.
    return [sys.executable, "-P", "-m", "qd_bluesky.cli", *args]


def soak(
    cycles: int,
    rate: float,
    vertex: float,
    data_dir: Path,
    every: float,
    monitor_bias: bool,
    client_env: dict[str, str] | None = None,
    variant: list[str] | None = None,
) -> dict:
    prefix = f"soak{uuid.uuid4().hex[:8]}:"
    port = free_port_pair()
    common = ["--prefix", prefix, "--port", str(port), "--data-dir", str(data_dir)]
    sim = subprocess.Popen(
        command("sim", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ready = threading.Event()
    sim_lines: list[str] = []

    def pump() -> None:
        for line in sim.stdout:
            sim_lines.append(line)
            if READY_LINE in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120) or sim.poll() is not None:
        sim.kill()
        raise SystemExit("the simulated instrument did not start:\n" + "".join(sim_lines[-20:]))
    # (elapsed s, client MB, IOC MB, client threads)
    samples: list[tuple[float, float, float, float]] = []
    t0 = time.monotonic()
    if variant is None:
        argv = command(
            "run",
            "bias-cycling",
            "--cycles",
            str(cycles),
            "--rate",
            str(rate),
            "--vertex",
            str(vertex),
            *([] if monitor_bias else ["--no-monitor-bias"]),
            *common,
        )
    else:  # the same client with parts left out (soak_client.py)
        argv = [
            sys.executable,
            str(Path(__file__).with_name("soak_client.py")),
            *["--prefix", prefix, "--data-dir", str(data_dir), "--cycles", str(cycles)],
            *["--rate", str(rate), *variant],
        ]
    client = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As the sim's banner tells clients (`run --port` sets only the server variables).
        env={
            **os.environ,
            "EPICS_CA_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(port),
            **(client_env or {}),
        },
    )
    try:
        while client.poll() is None:
            samples.append(
                (
                    time.monotonic() - t0,
                    rss_mb(client.pid),
                    rss_mb(sim.pid),
                    status(client.pid, "Threads"),
                )
            )
            time.sleep(every)
        wall = time.monotonic() - t0
        output = client.stdout.read()
    finally:
        if client.poll() is None:
            client.kill()
        sim.send_signal(2)  # SIGINT: the photon file is closed intact
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
    sweep_s = cycles * 2 * abs(vertex) / rate
    return {
        "cycles": cycles,
        "rate_v_per_s": rate,
        "sweep_s": sweep_s,
        "wall_s": wall,
        "overhead_per_cycle_s": (wall - sweep_s) / cycles,
        "returncode": client.returncode,
        "output": output[-2000:],
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=150)
    parser.add_argument("--rate", type=float, default=2.0, help="sweep rate (V/s)")
    parser.add_argument("--vertex", type=float, default=-2.0, help="vertex bias (V)")
    parser.add_argument("--data-dir", type=Path, default=None, help="(default: a temporary one)")
    parser.add_argument("--every", type=float, default=1.0, help="RSS sampling period (s)")
    parser.add_argument(
        "--monitor-bias",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the plan's monitor_bias (default: on, as the plan)",
    )
    parser.add_argument(
        "--client-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the client (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    parser.add_argument(
        "--client-variant",
        choices=["run", "full", "no-analyzer", "no-catalog"],
        default="run",
        help="run: `qd-bluesky run` (default); otherwise benchmarks/soak_client.py with the "
        "live analyzer or the catalog writer left out",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the samples here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = (args.data_dir or Path(tmp)).resolve()
        env = dict(item.split("=", 1) for item in args.client_env)
        r = soak(
            args.cycles,
            args.rate,
            args.vertex,
            data_dir,
            args.every,
            args.monitor_bias,
            env,
            None
            if args.client_variant == "run"
            else [f"--{args.client_variant}"] * (args.client_variant != "full"),
        )
        photons = sorted(data_dir.rglob("*.h5"))
        r["photon_files"] = [str(p.relative_to(data_dir)) for p in photons]
    samples = r["samples"]
    print(f"{'t (s)':>7} {'client MB':>10} {'IOC MB':>8} {'client threads':>15}")
    step = max(1, len(samples) // 20)
    for t, c, i, n in samples[::step] + samples[-1:]:
        print(f"{t:7.1f} {c:10.0f} {i:8.0f} {n:15.0f}")
    half = samples[len(samples) // 2 :]
    print(
        f"client peak {max(s[1] for s in samples):.0f} MB "
        f"(second half {min(s[1] for s in half):.0f}-{max(s[1] for s in half):.0f} MB); "
        f"IOC peak {max(s[2] for s in samples):.0f} MB "
        f"(second half {min(s[2] for s in half):.0f}-{max(s[2] for s in half):.0f} MB)"
    )
    print(
        f"{r['cycles']} cycles at {r['rate_v_per_s']} V/s: wall {r['wall_s']:.1f} s for "
        f"{r['sweep_s']:.1f} s of sweeping: {r['overhead_per_cycle_s']:.2f} s overhead per cycle"
        f" (exit {r['returncode']}); photon files: {', '.join(r['photon_files'])}"
    )
    if r["returncode"]:
        print(r["output"], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
