"""The periodic decay over bins and over blocks of bins (all times in bins).

Far from the rise, an exponential through any IRF is the same exponential times a constant
``L(tau)`` (the IRF's Laplace transform at ``1/tau``), so only bins within the IRF's reach of the
rise need the full formula; the likelihood's blocks away from it are summed in closed form.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .._errors import AnalysisError


class _Response(Protocol):
    """An instrument response as the block sums use it (the models are in ``_irf_models``).

    Each response knows (1) the factor L(tau) by which it multiplies an exponential far from the
    rise, where Y_j = L(tau) * D_j exactly, (2) how far from the rise (in bins, before and after)
    that stops being true, and (3) how to compute Y exactly for bins near a rise.
    """

    before: int
    wide: bool
    fwhm_s: float | None

    def after(self, tau: float) -> int: ...

    def log_laplace(self, tau: float) -> tuple[float, float]: ...

    def near(
        self, fa: int, fb: int, tau: float, rise: float, period: float, derivs: bool
    ) -> tuple[NDArray[np.float64], ...]: ...

    def full(
        self, lo: int, hi: int, tau: float, t0: float, period: float, derivs: bool
    ) -> tuple[NDArray[np.float64], ...]: ...


# --------------------------------------------------------------------------------------------
# One periodic exponential, integrated over bins
# --------------------------------------------------------------------------------------------


def _raw_decay(
    j: NDArray[np.float64], tau: float, t0: float, period: float, derivs: bool
) -> tuple[NDArray[np.float64], ...]:
    """Bin integrals ``D_j`` of the periodic decay over bins ``[j, j+1)``, and dD/dtau, dD/dt0.

    Over one period the density is ``exp(-s/tau) / (1 - q)``, ``q = exp(-P/tau)``; a bin that
    contains the start (``s`` wraps inside it) is split in two.
    """
    one_q = -math.expm1(-period / tau)
    q = 1.0 - one_q
    sa = np.mod(j - t0, period)  # s at the bin's lower edge
    step = sa + 1.0 > period  # the decay (re)starts inside this bin
    sb = np.where(step, period, sa + 1.0)  # upper end of the first piece
    ea, eb = np.exp(-sa / tau), np.exp(-sb / tau)
    # Second piece of a step bin: from s = 0 to the bin's upper edge.
    sc = np.where(step, sa + 1.0 - period, 0.0)
    ec = np.exp(-sc / tau)
    d = tau * (ea - eb + (1.0 - ec)) / one_q
    if not derivs:
        return (d,)
    # d/dt0 = density at the lower edge - density at the upper edge (ds/dt0 = -1 at both).
    d_t0 = (ea - np.where(step, ec, eb)) / one_q
    # d/dtau of tau * exp(-s/tau) is exp(-s/tau) * (1 + s/tau).
    g = ea * (1 + sa / tau) - eb * (1 + sb / tau) + np.where(step, 1.0 - ec * (1 + sc / tau), 0.0)
    d_tau = g / one_q + d * (q * period / tau**2) / one_q
    return d, d_tau, d_t0


# --------------------------------------------------------------------------------------------
# Blocks of bins and the model over them
# --------------------------------------------------------------------------------------------


def _block_decay(
    starts: NDArray[np.int64],
    widths: NDArray[np.int64],
    tau: float,
    t0: float,
    period: float,
    irf: _Response,
    derivs: bool,
    allow_full: bool = True,
) -> tuple[NDArray[np.float64], ...]:
    """Sums of ``Y`` (and its tau, t0 derivatives) over contiguous blocks of bins.

    A block out of the response's reach of every rise holds a piece of one geometric series,
    summed in closed form: ``L(tau) tau (1 - exp(-k/tau)) / (1 - q) * exp(-s_a/tau)`` for ``k``
    bins starting ``s_a`` after the rise. Blocks near a rise are summed from their bins.
    """
    lo, hi = int(starts[0]), int(starts[-1] + widths[-1])
    if irf.wide:
        fine = irf.full(lo, hi, tau, t0, period, derivs)
        return tuple(np.add.reduceat(f, starts - lo) for f in fine)

    k = widths.astype(np.float64)
    s = np.mod(starts - t0, period)
    one_q = -math.expm1(-period / tau)
    log_l, dlog_l = irf.log_laplace(tau)
    gk = -np.expm1(-k / tau)
    # (Blocks near a rise are overwritten below; the cap keeps their placeholder finite.)
    y = np.exp(np.minimum(log_l + np.log(tau * gk / one_q) - s / tau, 700.0))
    out = [y]
    if derivs:
        q = 1.0 - one_q
        dlog_g = 1.0 / tau - (k / tau**2) * np.exp(-k / tau) / gk
        out.append(y * (dlog_g + q * period / (tau**2 * one_q) + dlog_l + s / tau**2))
        out.append(y / tau)
    after = irf.after(tau)
    for kk in range(
        math.floor((lo - after - 1 - t0) / period),
        math.ceil((hi + irf.before - t0) / period) + 1,
    ):
        rise = t0 + kk * period
        p = math.floor(rise)  # the bin that holds this rise
        a, b = max(lo, p - irf.before), min(hi, p + after + 1)
        if a >= b:
            continue
        ia = int(np.searchsorted(starts, a, side="right")) - 1
        ib = int(np.searchsorted(starts, b - 1, side="right"))
        fa, fb = int(starts[ia]), int(starts[ib - 1] + widths[ib - 1])
        if fb - fa > period / 2:
            # A rise inside a block wider than the near formulas hold for: sum all bins.
            if not allow_full:
                raise AnalysisError("the IRF is too wide for the laser period")
            fine = irf.full(lo, hi, tau, t0, period, derivs)
            return tuple(np.add.reduceat(f, starts - lo) for f in fine)
        fine = irf.near(fa, fb, tau, rise, period, derivs)
        for arr, f in zip(out, fine, strict=True):
            arr[ia:ib] = np.add.reduceat(f, starts[ia:ib] - fa)
    return tuple(out)


def _block_layout(
    lo: int, hi: int, rise: float, period: float, reach: float, growth: float = 0.05
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Blocks of bins for the likelihood: single bins near the rise, growing away from it.

    A block at distance ``d > reach`` from the rise is about ``1 + growth * (d - reach)`` bins
    wide: an exponential changes so little across it that the summed counts keep practically all
    the information (a loss of order ``(width / tau)**2 / 12`` where that component still has
    photons). The layout only sets the efficiency: the model is exact for any block, wherever the
    rise ends up during the fit.
    """
    # Signed distance of each bin centre to the nearest rise, then a coordinate u(d) that grows
    # by one per block: u = d up to the reach, logarithmic beyond.
    d = np.mod(np.arange(lo, hi) + 0.5 - rise + period / 2, period) - period / 2
    a = np.abs(d)
    u = np.where(a <= reach, a, reach + np.log1p(growth * np.maximum(a - reach, 0.0)) / growth)
    key = np.where(d < 0, -1, 1) * (np.floor(u) + 1)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1)).astype(np.int64)
    widths = np.diff(np.append(starts, hi - lo)).astype(np.int64)
    return starts + lo, widths
