"""A dot's class from the derived run of its CV scan: how far it charges, or if it brightens."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The classes of a surveyed dot (beyond X2-, up to X2-, no dip, brighter under negative bias).
CLASSES = ("deep", "shallow", "none", "brightening")
#: FLID bins within this of the scan's most negative bias make the "bottom" of the scan (V).
BOTTOM_WINDOW_V = 0.25
#: FLID bins at or above this bias make the 0 V reference (V).
TOP_BIAS_V = -0.2
#: Intensity at the bottom over that at 0 V above which an uncharged dot brightens (X+
#: suppressed by negative bias alone gives ~1.15).
BRIGHTENING_RATIO = 1.5
#: X0 at 0 V: the intensity percentile of the bins near 0 V taken as X0's, and the fraction of
#: it above which a bin counts as X0 for the lifetime.
X0_PERCENTILE = 90
X0_FRACTION = 0.6
#: Fewest tomography bins at the bottom for a median charge state (of one visit).
MIN_BINS = 3
#: A gap between bottom bins this many times their median spacing starts a new visit of the
#: bottom (the next CV cycle): 20 ms bins within a visit, seconds between visits.
VISIT_GAP_FACTOR = 10.0


@dataclass(frozen=True)
class Verdict:
    """What the CV scan says of a dot.

    Attributes
    ----------
    charging : str
        One of :data:`CLASSES`, or ``"unknown"`` without usable FLID bins.
    bottom_state : float
        Charge state (extra electrons) the dot reaches at the bottom of the scan in every cycle:
        the smallest over the cycles of the median state of the tomography's bins there; NaN
        without a tomography.
    last_state : str
        The scaling stream's last state that follows Eq. 1-2 (empty if none).
    max_enhancement : float
        Decay-rate enhancement at the bottom: X0's lifetime at 0 V over the median at the
        bottom.
    intensity_ratio : float
        Median intensity at the bottom over X0's at 0 V.
    """

    charging: str
    bottom_state: float
    last_state: str
    max_enhancement: float
    intensity_ratio: float


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def bottom_visits(times_s: np.ndarray) -> list[np.ndarray]:
    """Indices of the bins of each visit of the bottom (one per CV cycle), in time order.

    A visit ends where the time to the next bin exceeds :data:`VISIT_GAP_FACTOR` times the
    median spacing of the bins.
    """
    order = np.argsort(times_s, kind="stable")
    if order.size < 2:
        return [order] if order.size else []
    gaps = np.diff(np.asarray(times_s, dtype=float)[order])
    spacing = float(np.median(gaps))
    cuts = np.flatnonzero(gaps > VISIT_GAP_FACTOR * max(spacing, 1e-9)) + 1
    return np.split(order, cuts)


def classify_cv(derived: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Classify a dot from the derived run of its CV scan (stream -> field -> array).

    The tomography's charge states (by lifetime on the dot's Eq. 1-2 ladder) of the FLID bins
    within :data:`BOTTOM_WINDOW_V` of the most negative bias decide, cycle by cycle: the median
    of each visit of the bottom, and of those the smallest, so that only a charge the dot takes
    in every cycle counts (an uncharged dot may sit in a photo-charged X- for a second, once).
    That state beyond X2- (3 or more extra electrons) is ``deep``, X- or X2- ``shallow``.
    Without a tomography (no X0/X- found to anchor the ladder) the decay-rate enhancement stands
    in for it (> 5: ``deep``, > 1.6: ``shallow``). An uncharged dot whose intensity at the
    bottom exceeds :data:`BRIGHTENING_RATIO` times its X0 intensity at 0 V is ``brightening``,
    else ``none``. X0 at 0 V is the :data:`X0_PERCENTILE` percentile of the intensities of the
    bins near 0 V (not their median: the dot may sit in dim X+ for seconds there).
    """
    flid = derived.get("flid") or {}
    bias = np.asarray(flid.get("bias_v", ()), dtype=float)
    scaling = derived.get("scaling") or {}
    last = scaling.get("last_state_following_model", ())
    last_state = str(last[0]) if len(last) else ""
    if bias.size == 0:
        return Verdict("unknown", float("nan"), last_state, float("nan"), float("nan"))
    life = np.asarray(flid["lifetime_ns"], dtype=float)
    inten = np.asarray(flid["intensity_cps"], dtype=float)
    low = float(np.nanmin(bias))
    bottom, top = bias <= low + BOTTOM_WINDOW_V, bias >= TOP_BIAS_V
    # X0 at 0 V: the bright bins near 0 V (the dot may spend seconds in dim X+ there).
    top_i = inten[top & np.isfinite(inten)]
    x0_intensity = float(np.percentile(top_i, X0_PERCENTILE)) if top_i.size else math.nan
    x0_life = _median(life[top & (inten >= X0_FRACTION * x0_intensity)])
    enhancement = x0_life / _median(life[bottom])
    ratio = _median(inten[bottom]) / x0_intensity
    state = float("nan")
    tomo = derived.get("tomography") or {}
    if len(tomo.get("charge_state", ())):
        t_state = np.asarray(tomo["charge_state"])
        t_bias = np.asarray(tomo["bias_v"], dtype=float)
        picked = (t_bias <= low + BOTTOM_WINDOW_V) & (t_state >= 0)
        t_time = np.asarray(tomo.get("time_s", np.arange(t_state.size)), dtype=float)
        states = t_state[picked]
        medians = [
            float(np.median(states[visit]))
            for visit in bottom_visits(t_time[picked])
            if visit.size >= MIN_BINS
        ]
        if medians:
            state = min(medians)
    if np.isfinite(state):
        charging = "deep" if state >= 3 else "shallow" if state >= 1 else ""
    elif np.isfinite(enhancement):
        charging = "deep" if enhancement > 5 else "shallow" if enhancement > 1.6 else ""
    else:
        charging = "unknown"
    if not charging:
        charging = "brightening" if ratio > BRIGHTENING_RATIO else "none"
    return Verdict(charging, state, last_state, float(enhancement), float(ratio))
