"""Photon generator speed on one core: the numba kernel beside a plain numpy version.

Goal (issue 3): >= 10 M photons/s generated, so that a simulated TimeHarp 260 keeps up with its
real maximum rate. Three measurements:

1. ``kernel``: :func:`qd_bluesky.sim._photons.generate` turning pulses of a dot in one charge state
   into (macrotime, microtime, channel) with the full per-photon physics (Poisson excitation,
   biexciton cascade, exponential delays, IRF, splitter, wrap into later periods);
2. ``numpy``: the same physics written with whole-array numpy operations (one Bernoulli draw per
   pulse; numpy cannot skip silent pulses without a loop);
3. ``end to end``: :meth:`SingleDot.advance` in 50 ms chunks (charge dynamics, all sources,
   sorting, dead time), as a simulated TCSPC IOC calls it.

Run: ``python benchmarks/bench_sim.py [--photons 20e6]``. Numba runs single-threaded here.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from qd_bluesky.sim import PRESETS, SingleDot, emission_probabilities  # noqa: E402
from qd_bluesky.sim._photons import (  # noqa: E402
    KIND_DOT,
    NORMAL_TABLE,
    DetectionBins,
    PhotonColumns,
    StateTables,
    generate,
    skip_tables,
)
from qd_bluesky.sim._rng import new_stream  # noqa: E402

UNIT = 25e-12
PERIOD_BINS = 4000.0  # 10 MHz
OFFSET_BINS = 120.0
SIGMA_BINS = 400e-12 / 2.3548 / UNIT


def tables(efficiency: float = 0.9, excitations: float = 3.0):
    """Outcome tables of qd1's states for a bright, saturated dot."""
    table = PRESETS["qd1"].states()
    probs = emission_probabilities(table, excitations, efficiency)
    log1m_q, cum = skip_tables(probs)
    return table, probs, log1m_q, cum


def run_kernel(n_pulses: int, state: int) -> tuple[int, float]:
    table, probs, log1m_q, cum = tables()
    per_pulse = float(probs[state] @ np.array([1, 1, 1, 2]))
    cap = int(n_pulses * per_pulse * 1.05 + 64)
    # Zeroed, i.e. touched: the engine reuses its buffers, so page faults are not part of it.
    out = (
        np.zeros(cap, np.int64),
        np.zeros(cap, np.int64),
        np.zeros(cap, np.uint8),
        np.zeros(cap, np.int8),
    )
    states = StateTables(log1m_q, cum, table.tau_s / UNIT, table.tau_xx_s / UNIT, table.charge)
    bins = DetectionBins(0.5, SIGMA_BINS, OFFSET_BINS, PERIOD_BINS, int(PERIOD_BINS), NORMAL_TABLE)
    args = (
        KIND_DOT, np.array([0]), np.array([n_pulses]), np.array([state]), states, bins,
        PhotonColumns(*out), 0,
    )  # fmt: skip
    generate(new_stream(0, 1), np.array([-1]), *args[:2], np.array([1000]), *args[3:])  # JIT
    t = time.perf_counter()
    n = generate(new_stream(1, 1), np.array([-1]), *args)
    return n, time.perf_counter() - t


def run_numpy(n_pulses: int, state: int) -> tuple[int, float]:
    """The generator's physics with numpy arrays: every pulse drawn, then the detected ones."""
    table, probs, _, _ = tables()
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    p = probs[state]
    tau, tau_xx = table.tau_s[state] / UNIT, table.tau_xx_s[state] / UNIT
    outcome = np.searchsorted(np.cumsum(p), rng.random(n_pulses), side="right")  # 4: none
    pulses = np.flatnonzero(outcome < 4)
    outcome = outcome[pulses]
    biexciton = outcome > 0
    t_xx = np.where(biexciton, rng.exponential(tau_xx, len(pulses)), 0.0)
    exciton = outcome != 2
    cascade = outcome >= 2
    pulse = np.concatenate((pulses[exciton], pulses[cascade]))
    delay = np.concatenate((t_xx[exciton] + rng.exponential(tau, exciton.sum()), t_xx[cascade]))
    delay += OFFSET_BINS + SIGMA_BINS * rng.standard_normal(len(delay))
    np.maximum(delay, 0.0, out=delay)
    k = (delay // PERIOD_BINS).astype(np.int64)
    macro = pulse + k
    micro = (delay - k * PERIOD_BINS).astype(np.int64)
    channel = (rng.random(len(delay)) >= 0.5).astype(np.uint8)
    order = np.argsort(macro, kind="stable")
    macro, micro, channel = macro[order], micro[order], channel[order]
    return len(macro), time.perf_counter() - t


def run_end_to_end(seconds: float) -> tuple[int, float]:
    bright = PRESETS["qd1"].with_(detection_efficiency=0.9, excitations_at_reference=3.0)
    dot = SingleDot(bright, seed=1, rep_rate_hz=20e6, power_w=240e-9)
    dot.advance(0.05)  # JIT and buffers
    n = 0
    t = time.perf_counter()
    for k in range(2, int(round(seconds / 0.05)) + 2):
        n += len(dot.advance(k * 0.05))
    return n, time.perf_counter() - t


def run_paper_dot(seconds: float) -> tuple[int, float]:
    dot = SingleDot("qd1", seed=1)
    dot.advance(0.1)
    t = time.perf_counter()
    n = sum(len(dot.advance(0.1 + 0.1 * k)) for k in range(1, int(seconds * 10) + 1))
    return n, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photons", type=float, default=20e6, help="photons per stage")
    args = parser.parse_args()
    n_target = int(args.photons)
    state = 1  # X0: every photon path, long decays wrapping into the next periods
    per_pulse = float(tables()[1][state] @ np.array([1, 1, 1, 2]))
    n_pulses = int(n_target / per_pulse)
    rows = []
    n, dt = run_kernel(n_pulses, state)
    rows.append(("kernel (numba, one core)", n, dt))
    n, dt = run_numpy(n_pulses, state)
    rows.append(("same physics, plain numpy", n, dt))
    n, dt = run_end_to_end(n_target / 18e6)
    rows.append(("SingleDot.advance, 50 ms chunks", n, dt))
    print(f"{'stage':36s} {'photons':>12s} {'seconds':>9s} {'M photons/s':>12s}")
    for name, n, dt in rows:
        print(f"{name:36s} {n:12d} {dt:9.3f} {n / dt / 1e6:12.1f}")
    n, dt = run_paper_dot(10.0)
    print(f"\nqd1 at 0 V, 30 nW, 2.5 MHz (~31 kc/s): 10 s simulated in {dt:.3f} s wall time "
          f"({10.0 / dt:.0f}x real time, {n} photons)")  # fmt: skip


if __name__ == "__main__":
    main()
