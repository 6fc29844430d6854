"""The result of a decay fit, and its making from the optimum (standard errors, chi-square)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._solver import _Problem

#: Blocks expecting fewer counts are left out of the reported chi-square.
_CHI2_MIN_EXPECTED = 5.0


@dataclass
class DecayFit:
    """Result of :func:`fit_decay`. Times in seconds; lists ordered by lifetime, shortest first.

    Standard errors are one sigma from the inverse Fisher information; they are NaN for a
    parameter held at its bound (the background when there is none, the start in a tail fit).
    """

    model: str
    tau_s: list[float]
    tau_stderr_s: list[float]
    #: Counts per microtime bin at the decay start, per component (earlier pulses' tails excluded).
    amplitude: list[float]
    #: Intensity fractions ``A_i tau_i / sum A tau``: the share of the emitted photons.
    fraction: list[float]
    fraction_stderr: list[float]
    #: Share of the counts in the fitted range that are flat background.
    background_fraction: float
    background_fraction_stderr: float
    #: Background counts per microtime bin.
    background_per_bin: float
    #: Time of the excitation in the window: the Gaussian IRF's centre or the measured IRF's
    #: maximum bin, in ``[0, period)``.
    shift_s: float
    shift_stderr_s: float
    #: FWHM of the IRF used (the Gaussian's, or measured from the IRF array); None without IRF.
    irf_fwhm_s: float | None
    #: Photons in the fitted range.
    counts: int
    #: Poisson deviance at the optimum (over the likelihood's blocks of bins, see the package).
    deviance: float
    #: Pearson chi-square per degree of freedom over the blocks expecting >= 5 counts, and those
    #: degrees of freedom (blocks minus parameters).
    chi2_reduced: float
    dof: int
    converged: bool
    n_iterations: int
    microtime_unit_s: float
    period_s: float
    #: First and last (exclusive) bin of the fitted range.
    fit_range_bins: tuple[int, int]
    #: The fitted model over the whole window (same length as the histogram), for plots.
    model_counts: NDArray[np.float64] = field(repr=False)

    @property
    def dominant_tau_s(self) -> float:
        """Lifetime of the component with the largest intensity fraction."""
        return self.tau_s[int(np.argmax(self.fraction))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (nanoseconds; NaN becomes None); the model curve is left out."""
        return {
            "model": self.model,
            "tau_ns": [_json(t * 1e9) for t in self.tau_s],
            "tau_stderr_ns": [_json(t * 1e9) for t in self.tau_stderr_s],
            "fraction": [_json(f) for f in self.fraction],
            "fraction_stderr": [_json(f) for f in self.fraction_stderr],
            "background_fraction": _json(self.background_fraction),
            "background_fraction_stderr": _json(self.background_fraction_stderr),
            "irf_fwhm_ns": None if self.irf_fwhm_s is None else _json(self.irf_fwhm_s * 1e9),
            "shift_ns": _json(self.shift_s * 1e9),
            "dominant_tau_ns": _json(self.dominant_tau_s * 1e9),
            "counts": int(self.counts),
            "deviance": _json(self.deviance),
            "chi2_reduced": _json(self.chi2_reduced),
            "converged": bool(self.converged),
        }


def _json(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _result(
    problem: _Problem,
    theta: NDArray[np.float64],
    dev: float,
    converged: bool,
    iters: int,
    n_all: int,
    n_window: int,
    dt: float,
    model: str,
) -> DecayFit:
    y = problem.y
    c = problem.n_comp
    n, tau, t0, b = problem.natural(theta)
    mu, jac = problem.jacobian_natural(theta)
    mu = np.maximum(mu, 1e-300)
    # Covariance of (N_i, tau_i, t0, b): the inverse Fisher information at the optimum, over the
    # parameters not held at a bound (e.g. no background, or a start the range does not see);
    # those held get no standard error (NaN).
    fisher = (jac / mu[:, None]).T @ jac
    lower, upper = problem.bounds()
    free = (theta > lower + 1e-9) & (theta < upper - 1e-9)
    cov = np.full_like(fisher, np.nan)
    cov[np.ix_(~free, ~free)] = 0.0
    try:
        sub = np.linalg.inv(fisher[np.ix_(free, free)])
        if np.all(np.isfinite(sub)) and np.all(np.diag(sub) >= 0):
            cov[np.ix_(free, free)] = sub
            cov[np.ix_(free, ~free)] = cov[np.ix_(~free, free)] = 0.0
    except np.linalg.LinAlgError:
        pass
    var = np.where(free, np.diag(cov), np.nan)
    tau_err = np.sqrt(var[c : 2 * c])

    n_tot = n.sum()
    frac = n / n_tot
    # Delta method: d f_i / d N_k = (delta_ik - f_i) / sum N.
    g = (np.eye(c) - frac[:, None]) / n_tot
    frac_err = np.sqrt(np.einsum("ik,kl,il->i", g, cov[:c, :c], g))

    window_total = mu.sum()
    n_bins = float(problem.widths.sum())
    if problem.background:
        # bf = b n / sum(mu): d bf = n db / sum(mu) - b n d sum(mu) / sum(mu)^2.
        grad = -b * n_bins * jac.sum(axis=0) / window_total**2
        grad[-1] += n_bins / window_total
        bf = b * n_bins / window_total
        bf_err = math.sqrt(max(grad @ cov @ grad, 0.0)) if free[-1] else math.nan
    else:
        bf, bf_err = 0.0, 0.0

    # Pearson chi-square over the blocks expecting enough counts to be chi-square distributed
    # (nearly empty blocks give a sum far below its mean most of the time).
    full_blocks = mu >= _CHI2_MIN_EXPECTED
    dof = int(full_blocks.sum()) - problem.n_params
    chi2 = (
        float(((y - mu)[full_blocks] ** 2 / mu[full_blocks]).sum() / dof) if dof > 0 else math.nan
    )

    fine = _Problem(
        np.zeros(n_window),
        np.arange(n_window),
        np.ones(n_window, dtype=np.int64),
        problem.period,
        problem.irf,
        c,
        problem.background,
        problem.tau_bounds,
    )
    curve = np.zeros(n_all)
    curve[:n_window] = fine.model(theta)

    order = np.argsort(tau)
    lo = int(problem.starts[0])
    return DecayFit(
        model=model,
        tau_s=[float(tau[i] * dt) for i in order],
        tau_stderr_s=[float(tau_err[i] * dt) for i in order],
        amplitude=[float(n[i] / tau[i]) for i in order],
        fraction=[float(frac[i]) for i in order],
        fraction_stderr=[float(frac_err[i]) for i in order],
        background_fraction=float(bf),
        background_fraction_stderr=float(bf_err),
        background_per_bin=float(b),
        shift_s=float((t0 % problem.period) * dt),
        shift_stderr_s=float(math.sqrt(var[2 * c]) * dt) if np.isfinite(var[2 * c]) else math.nan,
        irf_fwhm_s=problem.irf.fwhm_s,
        counts=int(round(y.sum())),
        deviance=float(dev),
        chi2_reduced=chi2,
        dof=max(int(dof), 0),
        converged=bool(converged),
        n_iterations=int(iters),
        microtime_unit_s=dt,
        period_s=float(problem.period * dt),
        fit_range_bins=(lo, lo + int(n_bins)),
        model_counts=curve,
    )
