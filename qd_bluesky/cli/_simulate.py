"""``qd-bluesky simulate``: photons of a simulated dot at a static bias or under a CV scan.

Writes Photon-HDF5 (timestamps = laser sync count, nanotimes = 25 ps TCSPC bins, detectors = APD
0/1) with the ground truth beside the photons under ``/user`` (layout in docs/physics.md).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

# Unit suffixes as divisors of the SI value (30 / 1e9 is exactly 3e-08 W; 30 * 1e-9 is not).
_UNITS_POWER = {"": 1e9, "nw": 1e9, "uw": 1e6, "µw": 1e6, "mw": 1e3, "w": 1.0}
_UNITS_RATE = {"": 1.0, "hz": 1.0, "khz": 1e-3, "mhz": 1e-6}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ]*)\s*$")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a charged quantum dot and write its photons as Photon-HDF5",
        description=(
            "Simulate one dot (preset qd1 or qd2) under the confocal spot, at a static bias or "
            "during cyclic voltammetry, and write the photons (two APDs, T3) to Photon-HDF5. "
            "Biases are in V against the Pt quasi-reference electrode (+57 mV vs Ag/AgCl)."
        ),
        epilog=(
            "examples:\n"
            "  qd-bluesky simulate --preset qd1 --bias -1.7 --duration 60 --seed 1 --out dot.h5\n"
            "  qd-bluesky simulate --preset qd1 --cv 0:-2:0 --rate 0.2 --cycles 3 --out cv.h5\n"
            "  (a CV that starts below 0 V: --cv=-0.5:-2:0)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Values are parsed here, not by argparse, so that bad input gives one line on stderr.
    p.add_argument("--preset", default="qd1", help="dot preset: qd1 (batch 1) or qd2 (batch 2)")
    p.add_argument("--bias", default=None, metavar="V", help="static bias in V (default 0)")
    p.add_argument("--duration", default=None, metavar="S", help="seconds at static bias (60)")
    p.add_argument(
        "--cv", default=None, metavar="START:VERTEX:END", help="cyclic voltammetry corners in V"
    )
    p.add_argument("--rate", default=None, metavar="V_PER_S", help="CV scan rate (0.2 V/s)")
    p.add_argument("--cycles", default=None, metavar="N", help="CV cycles (1)")
    p.add_argument("--seed", default="0", help="random seed (same seed, same photons)")
    p.add_argument("--power", default="30nW", help="laser power at the sample (nW; default 30)")
    p.add_argument(
        "--rep-rate", default="2.5MHz", help="laser repetition rate (Hz; default 2.5MHz)"
    )
    p.add_argument(
        "--allow-ito-damage",
        action="store_true",
        help="allow biases beyond the -2.0/+1.0 V safe window (below -2 V the ITO degrades)",
    )
    p.add_argument("--out", default=None, metavar="FILE.h5", help="Photon-HDF5 file to write")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------- parsing
def _number(text: str | None, name: str, units: dict[str, float] | None = None) -> float:
    m = _NUMBER.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or (units is None and unit) or (units is not None and unit not in units):
        allowed = "" if units is None else f" (units: {', '.join(u for u in units if u)})"
        raise ValueError(f"{name} must be a number{allowed}, got {text!r}")
    value = float(m.group(1)) / (1.0 if units is None else units[unit])
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return value


def _integer(text: str | None, name: str, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_bias(v: float, what: str, allow_damage: bool) -> None:
    from ..sim import PHYSICAL_BIAS_LIMIT_V, SAFE_BIAS_HIGH_V, SAFE_BIAS_LOW_V

    low, high = (
        (-PHYSICAL_BIAS_LIMIT_V, PHYSICAL_BIAS_LIMIT_V)
        if allow_damage
        else (SAFE_BIAS_LOW_V, SAFE_BIAS_HIGH_V)
    )
    if not low <= v <= high:
        hint = "" if allow_damage else " (below -2 V the ITO degrades: --allow-ito-damage)"
        raise ValueError(
            f"{what} {v:g} V is outside the potentiostat window [{low:g}, {high:g}] V{hint}"
        )


def parse_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Check the arguments; return what to simulate. ValueError with one line on bad input."""
    from ..sim import PRESETS, CvWaveform, LaserSettings

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    if not args.out:
        raise ValueError("--out FILE.h5 is required")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory, not a file")
    if not out.parent.exists():
        raise ValueError(f"--out: directory {out.parent} does not exist")
    seed = _integer(args.seed, "--seed", 0)
    power_w = _number(args.power, "--power", _UNITS_POWER)
    rep_rate_hz = _number(args.rep_rate, "--rep-rate", _UNITS_RATE)
    if not power_w > 0:
        raise ValueError(f"--power must be positive, got {args.power!r}")
    if not rep_rate_hz > 0:
        raise ValueError(f"--rep-rate must be positive, got {args.rep_rate!r}")
    LaserSettings(True, power_w, rep_rate_hz)  # range checks, one-line ValueError

    plan: dict[str, Any] = {
        "preset": args.preset,
        "seed": seed,
        "power_w": power_w,
        "rep_rate_hz": rep_rate_hz,
        "out": out,
    }
    if args.cv is not None:
        if args.bias is not None or args.duration is not None:
            raise ValueError("--cv runs a scan: do not combine it with --bias or --duration")
        parts = str(args.cv).split(":")
        if len(parts) != 3:
            raise ValueError(f"--cv must be START:VERTEX:END in volts, got {args.cv!r}")
        start, vertex, end = (_number(x, "--cv corner") for x in parts)
        rate = _number("0.2" if args.rate is None else args.rate, "--rate")
        if not rate > 0:
            raise ValueError(f"--rate must be positive, got {args.rate!r}")
        cycles = _integer("1" if args.cycles is None else args.cycles, "--cycles", 1)
        for v in (start, vertex, end):
            _check_bias(v, "CV corner", args.allow_ito_damage)
        plan["cv"] = CvWaveform(start, vertex, end, rate, cycles)
        plan["duration_s"] = plan["cv"].duration_s
        plan["bias_v"] = start
    else:
        if args.rate is not None or args.cycles is not None:
            raise ValueError("--rate and --cycles belong to a CV scan: add --cv START:VERTEX:END")
        bias = _number("0" if args.bias is None else args.bias, "--bias")
        _check_bias(bias, "--bias", args.allow_ito_damage)
        duration = _number("60" if args.duration is None else args.duration, "--duration")
        if not duration > 0:
            raise ValueError(f"--duration must be positive, got {args.duration!r}")
        plan["cv"] = None
        plan["bias_v"] = bias
        plan["duration_s"] = duration
    return plan


# ------------------------------------------------------------------------------- simulation
#: Simulated time per chunk: bounds memory for long runs.
_CHUNK_S = 1.0
#: CV staircase step: 2 mV (10 ms at 0.2 V/s), well inside a 20 ms FLID bin.
_CV_STEP_V = 0.002


def simulate_to_file(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the simulation of ``plan`` (from :func:`parse_plan`) into its Photon-HDF5 file."""
    from ..analysis import PhotonHdf5Writer
    from ..sim import NO_DOT_STATE, PT_QRE_VS_AGAGCL_V, SingleDot

    duration = float(plan["duration_s"])
    cv = plan["cv"]
    if cv is None:
        step_t, step_v = np.array([0.0]), np.array([plan["bias_v"]])
    else:
        step_t, step_v = cv.staircase(_CV_STEP_V)
    dot = SingleDot(
        plan["preset"],
        seed=plan["seed"],
        bias_v=float(step_v[0]),
        power_w=plan["power_w"],
        rep_rate_hz=plan["rep_rate_hz"],
    )
    simulation = {
        "preset": plan["preset"],
        "seed": plan["seed"],
        "power_w": plan["power_w"],
        "rep_rate_hz": plan["rep_rate_hz"],
        "duration_s": duration,
        "bias_reference": f"Pt quasi-reference, {PT_QRE_VS_AGAGCL_V * 1e3:+.0f} mV vs Ag/AgCl",
        "cv": None if cv is None else asdict(cv),
        "dot": dot.params.as_dict(),
        "detection": asdict(dot.detection),
        "no_dot_charge_state": NO_DOT_STATE,
    }
    user: dict[str, dict[str, Any]] = {
        "bias_waveform": {"time_s": step_t, "bias_v": step_v},
        "simulation": {"parameters_json": np.bytes_(json.dumps(simulation))},
    }
    if cv is not None:
        user["cv"] = {"corner_time_s": cv.corner_times_s, "corner_bias_v": cv.corners_v}
    kind = (
        "static bias {:+.3f} V".format(plan["bias_v"])
        if cv is None
        else (
            f"CV {cv.start_v:g}:{cv.vertex_v:g}:{cv.end_v:g} V at {cv.rate_v_per_s:g} V/s "
            f"x{cv.cycles}"
        )
    )
    description = (
        f"qd-bluesky simulation of dot preset {plan['preset']} ({kind}, V vs Pt "
        f"quasi-reference), seed {plan['seed']}, {plan['power_w'] * 1e9:g} nW, "
        f"{plan['rep_rate_hz'] / 1e6:g} MHz; ground truth under /user"
    )
    writer = PhotonHdf5Writer(
        plan["out"],
        macrotime_unit_s=1.0 / plan["rep_rate_hz"],
        microtime_unit_s=dot.microtime_unit_s,
        microtime_bins=dot.microtime_bins,
        rep_rate_hz=plan["rep_rate_hz"],
        description=description,
        channels=2,
        swmr=False,
        user_columns={
            "ground_truth": {"charge_state": np.int8, "source": np.int16},
            "charge_trajectory": {"time_s": np.float64, "charge": np.int8},
        },
        user=user,
        sample={
            "sample_name": f"simulated CdSe/CdS giant-shell quantum dot ({plan['preset']}) on ITO",
            "buffer_name": "0.1 M TBAPF6 in acetonitrile",
        },
        excitation_wavelengths_m=[442e-9],
        detection_wavelengths_m=[655e-9],
    )
    photons = 0
    next_step = 1  # step 0 is the initial bias
    with writer:
        t = 0.0
        first = True
        while t < duration:
            t_end = min(duration, t + _CHUNK_S)
            while next_step < len(step_t) and step_t[next_step] < t_end:
                dot.set_bias(float(step_v[next_step]), float(step_t[next_step]))
                next_step += 1
            chunk = dot.advance(t_end)
            if first:
                writer.append_user(
                    "charge_trajectory", time_s=[0.0], charge=[chunk.charge_at_start[0]]
                )
                first = False
            jumps_t, jumps_q = chunk.transitions.get(0, ((), ()))
            if len(jumps_t):
                writer.append_user("charge_trajectory", time_s=jumps_t, charge=jumps_q)
            if len(chunk):
                writer.append(chunk.macrotime, chunk.microtime, chunk.channel)
                writer.append_user(
                    "ground_truth", charge_state=chunk.charge_state, source=chunk.source
                )
                photons += len(chunk)
            t = t_end
    return {
        "out": str(plan["out"]),
        "preset": plan["preset"],
        "mode": "static" if cv is None else "cv",
        "bias_v": plan["bias_v"] if cv is None else None,
        "cv": None if cv is None else asdict(cv),
        "duration_s": duration,
        "seed": plan["seed"],
        "power_w": plan["power_w"],
        "rep_rate_hz": plan["rep_rate_hz"],
        "photons": photons,
        "count_rate_cps": photons / duration,
        "ito_damaged": dot.cell.damaged,
    }


def run(args: argparse.Namespace) -> int:
    summary = simulate_to_file(parse_plan(args))
    if args.json:
        print(json.dumps(summary))
    else:
        what = f"{summary['bias_v']:+.3f} V" if summary["cv"] is None else "CV " + args.cv
        print(
            f"{summary['out']}: {summary['photons']} photons in {summary['duration_s']:g} s "
            f"({summary['count_rate_cps'] / 1e3:.2f} kc/s), preset {summary['preset']}, {what}"
            + (", ITO damaged" if summary["ito_damaged"] else ""),
            file=sys.stdout,
        )
    return 0
