"""The report's blinking figures, from the ``levels`` stream: levels on the trace, dwell-time
distributions with their power laws, and the level-resolved FLID beside the binned one.

Levels are grouped per segment (:func:`~qd_bluesky.analysis.grouped_levels`, as the live
``blinking`` stream groups them), so a group is a state at one bias.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from matplotlib.typing import ColorType

from ..analysis import Levels, dwell_times, fit_power_law, grouped_levels
from ._figures import BIAS_CMAP, _save
from ._load import DerivedData

#: Colour of group 0 (the brightest of its segment), 1, ...; dimmer groups share the last.
GROUP_COLORS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")


def _segments(lv: dict[str, np.ndarray]) -> list[tuple[float, np.ndarray, Levels]]:
    """Per segment with levels: its bias, the indices of its levels, and them grouped."""
    segment = np.asarray(lv["segment"])
    out = []
    for k in np.unique(segment):
        idx = np.flatnonzero(segment == k)
        grouped = grouped_levels(
            np.asarray(lv["start_s"], float)[idx],
            np.asarray(lv["end_s"], float)[idx],
            np.asarray(lv["photons"], np.int64)[idx],
            min_duration_s=1e-9,
        )
        out.append((float(np.asarray(lv["bias_v"], float)[idx[0]]), idx, grouped))
    return out


def _levels(derived: DerivedData) -> dict[str, np.ndarray] | None:
    lv = derived.get("levels")
    if not lv or len(lv.get("photons", ())) == 0:
        return None
    return lv


def levels_trace(derived: DerivedData, path: Path) -> Path | None:
    """The intensity trace (10 ms bins) with the levels, coloured by group per segment."""
    lv = _levels(derived)
    if lv is None:
        return None
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax = fig.subplots()
    tr = derived.get("trace")
    if tr and len(tr.get("counts", ())):
        counts = np.asarray(tr["counts"], dtype=float)
        per = 10  # 1 ms trace bins into 10 ms
        usable = counts.shape[1] // per * per
        rebinned = counts[:, :usable].reshape(len(counts), -1, per).sum(axis=2)
        t = (np.asarray(tr["time_s"], float)[:, None] + np.arange(rebinned.shape[1]) * 1e-2).ravel()
        rate = rebinned.ravel() / 1e-2 / 1e3
        ax.plot(t, rate, lw=0.3, color="0.6", label="10 ms bins")
        # a level of a few photons in microseconds reads as a huge rate: keep the trace's scale
        ax.set_ylim(0, 1.1 * max(float(rate.max()), 1e-3))
    colors = np.empty(len(lv["photons"]), dtype=object)
    for _, idx, grouped in _segments(lv):
        colors[idx] = [GROUP_COLORS[min(g, len(GROUP_COLORS) - 1)] for g in grouped.group]
    ax.hlines(
        np.asarray(lv["intensity_cps"], float) / 1e3,
        np.asarray(lv["start_s"], float),
        np.asarray(lv["end_s"], float),
        colors=list(colors),
        lw=1.6,
    )
    ax.plot([], [], color=GROUP_COLORS[0], label="levels: brightest group of a step")
    ax.plot([], [], color=GROUP_COLORS[1], label="next group")
    ax.legend(fontsize=8, loc="upper right")
    ax.set(
        xlabel="time (s)",
        ylabel="intensity (kc/s)",
        title=f"Levels between change points ({len(lv['photons'])} levels)",
    )
    return _save(fig, path)


def _ccdf(ax, dwells: np.ndarray, color: ColorType, label: str) -> None:
    x = np.sort(dwells)
    n = len(x)
    ax.loglog(x, 1.0 - np.arange(n) / n, ".", ms=3, color=color)
    fit = fit_power_law(x, truncated=False)
    if fit is not None:
        grid = np.geomspace(fit.xmin, x[-1], 50)
        # P(X >= x) of the tail, scaled by the tail's share of the dwells
        ax.loglog(
            grid,
            fit.n_tail / n * (grid / fit.xmin) ** (1.0 - fit.alpha),
            color=color,
            lw=1,
            label=f"{label}: alpha = {fit.alpha:.2f} ± {fit.alpha_stderr:.2f} ({n})",
        )
    else:
        ax.plot([], [], ".", color=color, label=f"{label}: {n} dwells, no fit")


def dwell_distributions(derived: DerivedData, path: Path) -> Path | None:
    """Log-log on and off dwell-time distributions per bias, with power-law fits (CSN)."""
    lv = _levels(derived)
    if lv is None:
        return None
    on: dict[float, list[np.ndarray]] = {}
    off: dict[float, list[np.ndarray]] = {}
    for bias, _, grouped in _segments(lv):
        if len(grouped.group_intensity_cps) < 2:
            continue  # one state: no on/off dwells
        _, on_s, off_s = dwell_times(grouped)
        on.setdefault(round(bias, 2), []).append(on_s)
        off.setdefault(round(bias, 2), []).append(off_s)
    biases = sorted(b for b in on if sum(map(len, on[b])) + sum(map(len, off[b])) >= 2)
    if not biases:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    cmap = mpl.colormaps.get_cmap(BIAS_CMAP)
    for i, bias in enumerate(biases):
        color = cmap(0.85 * i / max(1, len(biases) - 1))
        for ax, dwells in ((axes[0], on), (axes[1], off)):
            x = np.concatenate(dwells[bias])
            if len(x):
                _ccdf(ax, x, color, f"{bias:+.2f} V")
    for ax, title in zip(axes, ("on (bright) dwells", "off (dim) dwells"), strict=True):
        ax.set(xlabel="dwell time (s)", title=title)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("P(dwell >= t)")
    return _save(fig, path)


def level_flid(derived: DerivedData, path: Path) -> Path | None:
    """The FLID of the levels beside the binned (20 ms) FLID, both as time spent per cell."""
    lv = _levels(derived)
    flid = derived.get("flid")
    if lv is None or not flid or len(flid.get("lifetime_ns", ())) == 0:
        return None
    b_tau = np.asarray(flid["lifetime_ns"], float)
    b_int = np.asarray(flid["intensity_cps"], float) / 1e3
    l_tau = np.asarray(lv["lifetime_ns"], float)
    l_int = np.asarray(lv["intensity_cps"], float) / 1e3
    l_time = np.asarray(lv["end_s"], float) - np.asarray(lv["start_s"], float)
    b_ok, l_ok = np.isfinite(b_tau), np.isfinite(l_tau)
    if not (b_ok.any() and l_ok.any()):
        return None  # no lifetimes (T2 data)
    t_max = float(np.percentile(np.concatenate((b_tau[b_ok], l_tau[l_ok])), 99.5)) * 1.1
    # the binned FLID's range: a level of a few photons in microseconds reads as a huge rate
    i_max = float(b_int.max()) * 1.05
    edges = (np.linspace(0, max(t_max, 1e-3), 61), np.linspace(0, max(i_max, 1e-3), 41))
    bin_s = 0.02
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, tau, inten, weight, title in (
        (axes[0], b_tau[b_ok], b_int[b_ok], np.full(b_ok.sum(), bin_s), "FLID, 20 ms bins"),
        (axes[1], l_tau[l_ok], l_int[l_ok], l_time[l_ok], "FLID of the levels"),
    ):
        occ, _, _ = np.histogram2d(tau, inten, bins=edges, weights=weight)
        mesh = ax.pcolormesh(
            edges[0], edges[1], np.where(occ > 0, occ, np.nan).T, norm=LogNorm(), cmap="magma_r"
        )
        fig.colorbar(mesh, ax=ax, label="time (s)")
        ax.set(xlabel="lifetime (ns)", title=title)
    axes[0].set_ylabel("intensity (kc/s)")
    return _save(fig, path)


#: file name -> figure function, in report order.
LEVEL_FIGURES = {
    "levels.png": levels_trace,
    "dwell_times.png": dwell_distributions,
    "flid_levels.png": level_flid,
}
