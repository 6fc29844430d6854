"""The report's figures, in the spirit of the paper's Figs. 2-5. One function per figure.

Each takes the derived data of a run (:data:`DerivedData`) and a path, draws with matplotlib's
object API (no pyplot state, so it is safe in a worker and without a display) and returns the
path, or ``None`` when the run lacks the streams the figure needs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..analysis import ScalingModel
from ._load import DerivedData

DPI = 130
BIAS_CMAP = "viridis"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _scaling_model(derived: DerivedData) -> ScalingModel | None:
    s = derived.get("scaling", {})
    try:
        r, tau, inten = (float(s[k][-1]) for k in ("gamma_ratio", "tau_x0_ns", "intensity_x0_cps"))
        return ScalingModel(r, tau * 1e-9, inten)
    except (KeyError, IndexError, ValueError):
        return None


def intensity_trace(derived: DerivedData, path: Path) -> Path | None:
    """1 ms intensity trace with the X0 / X- intensity levels, and its histogram."""
    tr = derived.get("trace")
    if not tr or "counts" not in tr or len(tr["counts"]) == 0:
        return None
    counts = np.asarray(tr["counts"], dtype=float)
    bin_s = 1e-3
    t = (
        np.asarray(tr["time_s"], dtype=float)[:, None] + np.arange(counts.shape[1]) * bin_s
    ).ravel()
    rate = counts.ravel() / bin_s / 1e3
    fig = Figure(figsize=(10, 3.2))
    ax, axh = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [6, 1], "wspace": 0.03})
    ax.plot(t - t[0], rate, lw=0.3, color="0.15")
    axh.hist(rate, bins=60, orientation="horizontal", color="0.4")
    model = _scaling_model(derived)
    if model is not None:
        levels = {"X0": model.intensity_x0_cps, "X-": float(model.intensity_cps(1))}
        for (label, level), color in zip(levels.items(), ("tab:red", "tab:blue"), strict=True):
            for a in (ax, axh):
                a.axhline(level / 1e3, color=color, ls="--", lw=1)
            ax.text(
                1.0,
                level / 1e3,
                f" {label}",
                color=color,
                va="bottom",
                ha="left",
                transform=ax.get_yaxis_transform(),
            )
    ax.set(xlabel="time (s)", ylabel="intensity (kc/s, 1 ms bins)", title="Intensity trace")
    axh.set(xlabel="occurrence")
    return _save(fig, path)


def decay_histograms(derived: DerivedData, path: Path) -> Path | None:
    """Decay histogram of each bias step on a log axis, with the fitted lifetime."""
    dec = derived.get("decay")
    if not dec or "counts" not in dec or len(dec["counts"]) == 0:
        return None
    counts = np.asarray(dec["counts"], dtype=float)
    unit_ns = float(np.ravel(dec.get("microtime_unit_ns", [0.025]))[0])
    t = np.arange(counts.shape[1]) * unit_ns
    biases = np.asarray(dec.get("bias_v", np.zeros(len(counts))), dtype=float)
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    cmap = mpl.colormaps[BIAS_CMAP]
    span = (biases.min(), biases.max()) if len(biases) else (0.0, 1.0)
    for i, row in enumerate(counts):
        if row.sum() == 0:
            continue
        # rebin to ~0.25 ns so sparse steps stay readable on a log axis
        factor = max(1, int(round(0.25 / unit_ns)))
        n = len(row) // factor * factor
        y = row[:n].reshape(-1, factor).sum(axis=1)
        x = t[:n].reshape(-1, factor)[:, 0]
        frac = 0.0 if span[1] == span[0] else (biases[i] - span[0]) / (span[1] - span[0])
        # the mono-exponential lifetime, as in the summary table (bias_dependence)
        lifetimes = dec.get("mono_lifetime_ns", dec.get("lifetime_ns", [np.nan] * len(counts)))
        tau = float(np.ravel(lifetimes)[i])
        ax.semilogy(
            x,
            y / y.max(),
            lw=0.8,
            color=cmap(frac),
            label=f"{biases[i]:+.2f} V: τ = {tau:.3g} ns",
        )
    ax.set(
        xlabel="delay (ns)", ylabel="counts (normalised)", title="Decay per bias", ylim=(1e-4, 1.5)
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def flid_map(derived: DerivedData, path: Path) -> Path | None:
    """FLID occurrence map with the scaling-model curve and the X0, X-, X2-... states."""
    fm = derived.get("flid_map")
    if not fm or "occurrence" not in fm:
        return None
    occ = np.asarray(fm["occurrence"], dtype=float)[-1]
    i_edges = np.asarray(fm["intensity_edges_cps"], dtype=float)[-1] / 1e3
    t_edges = np.asarray(fm["lifetime_edges_ns"], dtype=float)[-1]
    fig = Figure(figsize=(6, 4.6))
    ax = fig.subplots()
    mesh = ax.pcolormesh(
        t_edges,
        i_edges,
        np.where(occ > 0, occ, np.nan),
        norm=LogNorm(),
        cmap="magma_r",
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label="occurrence")
    model = _scaling_model(derived)
    if model is not None:
        tau, inten = model.curve()
        ax.plot(tau * 1e9, inten / 1e3, color="tab:cyan", lw=1.2, label="scaling model, Eq. 1-2")
        st, si = model.state_points(min(model.n_max, 6))
        ax.plot(st * 1e9, si / 1e3, "o", mfc="none", color="tab:cyan")
        for label, x, y in zip(model.labels, st, si, strict=False):
            ax.annotate(
                label,
                (x * 1e9, y / 1e3),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
                color="tab:cyan",
            )
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="lifetime (ns)", ylabel="intensity (kc/s)", title="FLID (20 ms bins)")
    ax.set_xlim(t_edges[0], t_edges[-1])
    ax.set_ylim(i_edges[0], i_edges[-1])
    return _save(fig, path)


def g2_curve(derived: DerivedData, path: Path) -> Path | None:
    """g2(tau) per bias: coincidences in ~2 ns bins, scaled so the side peaks average 1."""
    g2 = derived.get("g2")
    if not g2 or "counts" not in g2 or len(g2["counts"]) == 0:
        return None
    counts = np.asarray(g2["counts"], dtype=float)
    taus = np.asarray(g2["tau_s"], dtype=float)
    biases = np.asarray(g2.get("bias_v", np.zeros(len(counts))), dtype=float)
    n = len(counts)
    fig = Figure(figsize=(7, 1.2 + 1.3 * n), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True))
    for i, ax in enumerate(axes):
        tau_ns = (taus[i] if taus.ndim == 2 else taus) * 1e9
        width = tau_ns[1] - tau_ns[0] if len(tau_ns) > 1 else 1.0
        factor = max(1, int(round(2.0 / width)))
        m = len(tau_ns) // factor * factor
        y = counts[i, :m].reshape(-1, factor).sum(axis=1)
        x = tau_ns[:m].reshape(-1, factor).mean(axis=1)
        period = float(np.ravel(g2.get("period_ns", [400.0]))[0])
        side = np.abs(x) > period / 2
        peaks = [
            y[side & (np.abs(x - k * period) < period / 2)].max(initial=0)
            for k in range(-3, 4)
            if k
        ]
        scale = np.mean([p for p in peaks if p > 0]) if any(peaks) else 1.0
        ax.plot(x, y / scale, lw=0.7, color="0.15")
        z = float(np.ravel(g2["g2_zero"])[i])
        err = float(np.ravel(g2.get("g2_zero_stderr", [np.nan] * n))[i])
        ax.text(
            0.01,
            0.8,
            f"{biases[i]:+.2f} V   g2(0) = {z:.2f} ± {err:.2f}",
            transform=ax.transAxes,
            fontsize=8,
        )
        ax.set_ylim(0, 1.4)
        ax.set_ylabel("g2")
    axes[0].set_title("Photon correlation g2(τ) (peak areas define g2(0))")
    axes[-1].set_xlabel("τ (ns)")
    return _save(fig, path)


def bias_dependence(derived: DerivedData, path: Path) -> Path | None:
    """Decay-rate enhancement and intensity drop versus bias."""
    dep = derived.get("bias_dependence")
    if not dep or len(dep.get("bias_v", ())) == 0:
        return None
    bias = np.asarray(dep["bias_v"], dtype=float)
    order = np.argsort(bias)
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    ax.semilogy(
        bias[order],
        np.asarray(dep["enhancement"], float)[order],
        "o-",
        color="tab:red",
        label="decay-rate enhancement τ(0 V)/τ(V)",
    )
    ax.semilogy(
        bias[order],
        np.asarray(dep["intensity_drop"], float)[order],
        "s-",
        color="tab:blue",
        label="intensity drop I(0 V)/I(V)",
    )
    ax.set(
        xlabel="bias vs Pt quasi-reference (V)",
        ylabel="ratio to 0 V",
        title="Charging speeds up the decay",
    )
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    return _save(fig, path)


def cv_scan(derived: DerivedData, path: Path) -> Path | None:
    """CV scan: FLID points coloured by bias, and the intensity trace over the scan."""
    tomo = derived.get("tomography")
    if not tomo or len(tomo.get("bias_v", ())) == 0:
        return None
    fig = Figure(figsize=(12, 4), layout="constrained")
    ax_flid, ax_t = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    bias = np.asarray(tomo["bias_v"], float)
    sc = ax_flid.scatter(
        np.asarray(tomo["lifetime_ns"], float),
        np.asarray(tomo["intensity_cps"], float) / 1e3,
        c=bias,
        s=4,
        cmap=BIAS_CMAP,
    )
    fig.colorbar(sc, ax=ax_flid, label="bias (V)")
    model = _scaling_model(derived)
    if model is not None:
        tau, inten = model.curve()
        ax_flid.plot(tau * 1e9, inten / 1e3, color="tab:red", lw=1, label="scaling model")
        ax_flid.legend(fontsize=8)
    ax_flid.set(
        xscale="log",
        xlabel="lifetime (ns)",
        ylabel="intensity (kc/s)",
        title="CV scan: FLID by bias",
    )
    t = np.asarray(tomo["time_s"], float)
    ax_t.plot(t - t[0], np.asarray(tomo["intensity_cps"], float) / 1e3, lw=0.6, color="0.2")
    ax_t.set(
        xlabel="time (s)", ylabel="intensity (kc/s, 20 ms bins)", title="Intensity over the scan"
    )
    ax_b = ax_t.twinx()
    ax_b.plot(t - t[0], bias, color="tab:green", lw=1)
    ax_b.set_ylabel("bias (V)", color="tab:green")
    return _save(fig, path)


def reversibility(derived: DerivedData, path: Path) -> Path | None:
    """Bias cycling: X0 intensity and lifetime at the start of every cycle (the paper's
    540-cycle claim is that they do not drift)."""
    rev = derived.get("reversibility")
    if not rev or len(rev.get("segment", ())) < 2:
        return None  # one CV scan: nothing to compare from cycle to cycle
    cycle = np.asarray(rev["segment"], int)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax_i, ax_t = fig.subplots(2, 1, sharex=True)
    for ax, key, scale, label, color in (
        (ax_i, "intensity_cps", 1e-3, "intensity (kc/s)", "tab:blue"),
        (ax_t, "lifetime_ns", 1.0, "lifetime (ns)", "tab:red"),
    ):
        values = np.asarray(rev[key], float) * scale
        ax.plot(cycle, values, ".", ms=3, color=color)
        ok = np.isfinite(values)
        if ok.any():
            ax.axhline(np.median(values[ok]), color="0.4", lw=0.8, ls="--", label="median")
            ax.legend(fontsize=8, loc="lower left")
        ax.set_ylabel(label)
    ax_i.set_title("Reversibility: the state at the start of every cycle (0 V)")
    ax_t.set_xlabel("cycle")
    return _save(fig, path)


#: file name -> figure function, in report order.
FIGURES = {
    "intensity_trace.png": intensity_trace,
    "decay_histograms.png": decay_histograms,
    "flid.png": flid_map,
    "g2.png": g2_curve,
    "bias_dependence.png": bias_dependence,
    "cv_scan.png": cv_scan,
    "reversibility.png": reversibility,
}
