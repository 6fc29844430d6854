"""The numbers of a report: ``summary.json`` and the Markdown table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._load import DerivedData


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _blinking_by_bias(derived: DerivedData) -> dict[float, tuple[float, float]]:
    """Per bias (rounded to mV): the dim-state time fraction and the switching rate of the
    ``blinking`` stream, time-weighted over the segments at that bias."""
    b = derived.get("blinking", {})
    if not all(k in b for k in ("bias_v", "duration_s", "dim_fraction", "switching_rate_hz")):
        return {}
    out = {}
    bias = np.round(np.asarray(b["bias_v"], float), 3)
    weight = np.asarray(b["duration_s"], float)
    for v in np.unique(bias[np.isfinite(bias)]):
        at = (bias == v) & (weight > 0)
        if at.any():
            w = weight[at] / weight[at].sum()
            out[float(v)] = (
                float((w * np.asarray(b["dim_fraction"], float)[at]).sum()),
                float((w * np.asarray(b["switching_rate_hz"], float)[at]).sum()),
            )
    return out


def summarize(derived: DerivedData, *, raw_uid: str | None = None) -> dict[str, Any]:
    """Per bias: lifetime, intensity, enhancement, intensity drop, g2(0), the dim-state time
    fraction and the switching rate; over the run: the fitted gammaA/gamma0 and the last charge
    state that follows the scaling model."""
    per_bias = []
    blinking = _blinking_by_bias(derived)
    dep = derived.get("bias_dependence", {})
    g2 = derived.get("g2", {})
    g2_by_bias = {}
    if "bias_v" in g2 and "g2_zero" in g2:
        g2_by_bias = {
            round(float(b), 3): (z, s)
            for b, z, s in zip(
                g2["bias_v"],
                g2["g2_zero"],
                g2.get("g2_zero_stderr", np.full(len(g2["bias_v"]), np.nan)),
                strict=True,
            )
        }
    for i in range(len(dep.get("bias_v", ()))):
        bias = float(dep["bias_v"][i])
        z, s = g2_by_bias.get(round(bias, 3), (dep.get("g2_zero", [np.nan] * (i + 1))[i], np.nan))
        dim, switching = blinking.get(round(bias, 3), (None, None))
        per_bias.append(
            {
                "bias_v": bias,
                "lifetime_ns": _num(dep["lifetime_ns"][i]),
                "intensity_cps": _num(dep["intensity_cps"][i]),
                "enhancement": _num(dep["enhancement"][i]),
                "intensity_drop": _num(dep["intensity_drop"][i]),
                "g2_zero": _num(z),
                "g2_zero_stderr": _num(s),
                "dim_fraction": _num(dim),
                "switching_rate_hz": _num(switching),
            }
        )
    scaling = derived.get("scaling", {})

    def first(key: str) -> Any:
        values = scaling.get(key)
        return None if values is None or len(values) == 0 else values[-1]

    cv = derived.get("cv_scaling", {}).get("last_state_following_model")
    last_state = cv[-1] if cv is not None and len(cv) else first("last_state_following_model")
    return {
        "raw_uid": raw_uid,
        "per_bias": per_bias,
        "gamma_ratio": _num(first("gamma_ratio")),
        "gamma_ratio_stderr": _num(first("gamma_ratio_stderr")),
        "tau_x0_ns": _num(first("tau_x0_ns")),
        "intensity_x0_cps": _num(first("intensity_x0_cps")),
        "tau_xm_ns": _num(first("tau_xm_ns")),
        "last_state_following_model": None if last_state is None else str(last_state),
    }


def _cell(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _g2_cell(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if stderr is None else f"{value:.2f} ± {stderr:.2f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table plus the run-wide numbers."""
    lines = [
        "| bias (V) | lifetime (ns) | intensity (kc/s) | enhancement | intensity drop | g2(0) "
        "| dim fraction | switching (1/s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["per_bias"]:
        inten = row["intensity_cps"]
        lines.append(
            f"| {row['bias_v']:+.2f} | {_cell(row['lifetime_ns'], '.3g')} | "
            f"{_cell(None if inten is None else inten / 1e3, '.1f')} | "
            f"{_cell(row['enhancement'], '.3g')} | {_cell(row['intensity_drop'], '.3g')} | "
            f"{_g2_cell(row['g2_zero'], row['g2_zero_stderr'])} | "
            f"{_cell(row.get('dim_fraction'), '.3f')} | "
            f"{_cell(row.get('switching_rate_hz'), '.3g')} |"
        )
    lines += [
        "",
        "Enhancement and intensity drop are relative to the neutral exciton X0 at 0 V"
        + (
            f" (tau = {summary['tau_x0_ns']:.3g} ns, I = {summary['intensity_x0_cps'] / 1e3:.3g} "
            "kc/s, from the FLID)."
            if summary.get("tau_x0_ns") and summary.get("intensity_x0_cps")
            else "."
        ),
        "Dim fraction: the time in the dimmest intensity group of the levels at that bias; "
        "switching: crossings of the midway intensity per second (from the change points).",
        "",
        f"- gammaA/gamma0 = {_cell(summary['gamma_ratio'], '.2f')}"
        + (
            f" ± {summary['gamma_ratio_stderr']:.2f}"
            if summary["gamma_ratio_stderr"] is not None
            else ""
        ),
        f"- last charge state that follows the scaling model: "
        f"{summary['last_state_following_model'] or '–'}",
    ]
    return "\n".join(lines) + "\n"
