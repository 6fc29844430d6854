"""``qd-bluesky analyze FILE``: rate, decay fit, FLID and g2(0) of a photon file (any format
``read_photons`` recognises)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from ..data import EXAMPLE_PTU


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a photon file (PTU, PT2/PT3, HT2/HT3, T3R, SPC, Photon-HDF5)",
        description="Analyse a photon file: PicoQuant PTU (T2/T3), PT2, PT3, HT2, HT3, T3R, "
        "Becker & Hickl SPC or Photon-HDF5, recognised by its content: count rate, "
        "whole-decay fit, FLID and g2(0).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="photon file (any supported format)")
    src.add_argument(
        "--example",
        action="store_true",
        help="analyse the example HydraHarp T3 recording shipped with the package",
    )
    p.add_argument(
        "--bin-ms", type=float, default=None, help="FLID bin width in ms (the analysis' 20)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--require",
        action="append",
        choices=("lifetime", "g2"),
        default=[],
        help="fail unless the file can give this result (repeatable)",
    )
    p.add_argument(
        "--levels",
        action="store_true",
        help="change points, intensity levels, their groups and on/off dwell statistics",
    )
    p.add_argument(
        "--confidence",
        type=float,
        choices=(0.69, 0.90, 0.95, 0.99),
        default=0.95,
        help="confidence of the change-point test, with --levels (0.95)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis import PhotonFileWarning, analyze_file

    path = EXAMPLE_PTU if args.example else args.file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        options = {} if args.bin_ms is None else {"bin_ms": args.bin_ms}
        result = analyze_file(
            path,
            **options,
            require=args.require,
            levels=args.levels,
            confidence=args.confidence,
        )
    # File warnings are already in the result; anything else is shown once too.
    result["warnings"] += [
        str(w.message) for w in caught if not issubclass(w.category, PhotonFileWarning)
    ]
    for text in result["warnings"]:
        print(f"qd-bluesky: warning: {text}", file=sys.stderr)
    if args.json:
        json.dump(result, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_summary(result))
    return 0


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:{spec}}{unit}"


def format_summary(r: dict) -> str:
    """A readable summary of an ``analyze_file`` result."""
    lines = [
        f"file         {r['source']}  ({r['format']}, {r['mode']})",
        f"photons      {r['photons']:,} on channels {r['channels']}",
        f"duration     {_fmt(r['duration_s'], '.3f', ' s')}",
        f"count rate   {_fmt(r['count_rate_cps'], ',.0f', ' c/s')}",
        f"rep rate     {_fmt(r['rep_rate_hz'] and r['rep_rate_hz'] / 1e6, '.4f', ' MHz')}",
    ]
    decay = r["decay"]
    if decay is None:
        lines.append("decay        n/a (no microtimes)")
    else:
        comps = ", ".join(
            f"{t:.2f} ns ({f:.0%})" for t, f in zip(decay["tau_ns"], decay["fraction"], strict=True)
        )
        lines.append(f"lifetime     {r['lifetime_ns']:.2f} ns (dominant)")
        lines.append(
            f"decay fit    {decay['model']}: {comps}; background "
            f"{decay['background_fraction']:.1%}; IRF {decay['irf_fwhm_ns']:.2f} ns FWHM"
        )
    g2 = r["g2_zero"]
    if g2 is not None:
        lines.append(f"g2(0)        {g2:.3f} +- {r['g2_zero_stderr']:.3f}")
    elif len(r["channels"]) < 2:
        lines.append("g2(0)        n/a (one detector channel)")
    else:
        lines.append("g2(0)        n/a (no pulsed laser sync in the data)")
    flid = r["flid"]
    lifetimes = [t for t in flid["lifetime_ns"] if t is not None]
    lines.append(
        f"FLID         {len(flid['intensity_cps'])} bins of {flid['bin_ms']:g} ms, "
        f"{len(lifetimes)} with a lifetime"
    )
    if "levels" in r:
        from ._levels_text import format_levels

        lines += format_levels(r["levels"], _fmt)
    return "\n".join(lines)
