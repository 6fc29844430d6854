"""The Poisson likelihood over blocks of bins, its minimiser and its starting values.

The fit minimises the Poisson deviance by Levenberg-Marquardt steps on the Fisher information
(Fisher scoring), over log-parameters that keep photons, lifetimes and background positive and
the lifetimes ordered; starting values come from a grid over the lifetimes with the linear
parameters fitted at each point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._blocks import _block_decay, _Response

#: The fit has converged when the Newton decrement (the deviance still to gain were the quadratic
#: model exact) is below this: the parameters are then within ~0.01 standard errors of the optimum.
_NEWTON_TOL = 1e-4
_MAX_ITER = 200


@dataclass
class _Problem:
    y: NDArray[np.float64]  # counts per block
    starts: NDArray[np.int64]  # first bin of each block
    widths: NDArray[np.int64]  # bins per block
    period: float  # bins
    irf: _Response
    n_comp: int
    background: bool
    tau_bounds: tuple[float, float]
    #: Hold the decay start here (bins) when the fitted range does not see the rise.
    t0_fixed: float | None = None

    @property
    def n_params(self) -> int:
        return 2 * self.n_comp + 1 + int(self.background)

    def with_components(self, n_comp: int) -> _Problem:
        return _Problem(
            self.y,
            self.starts,
            self.widths,
            self.period,
            self.irf,
            n_comp,
            self.background,
            self.tau_bounds,
            self.t0_fixed,
        )

    # Internal parameters theta: log N_i, log tau_1, log(tau_i - tau_{i-1}) ..., t0, log b,
    # so that photons, lifetimes and background stay positive and the lifetimes ordered.

    def natural(self, theta: NDArray[np.float64]) -> tuple[NDArray, NDArray, float, float]:
        c = self.n_comp
        n = np.exp(theta[:c])
        tau = np.cumsum(np.exp(theta[c : 2 * c]))
        t0 = float(theta[2 * c])
        b = float(np.exp(theta[2 * c + 1])) if self.background else 0.0
        return n, tau, t0, b

    def theta_of(self, n, tau, t0: float, b: float) -> NDArray[np.float64]:
        gaps = np.diff(np.concatenate(([0.0], np.asarray(tau, dtype=np.float64))))
        parts = [np.log(n), np.log(gaps), [t0]]
        if self.background:
            parts.append([math.log(b)])
        return np.concatenate(parts).astype(np.float64)

    def bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Box for theta (t0 is free: the model is periodic in it)."""
        c = self.n_comp
        total = max(self.y.sum(), 1.0)
        lo_tau, hi_tau = self.tau_bounds
        lower = [math.log(1e-6)] * c + [math.log(lo_tau)] + [math.log(1e-3)] * (c - 1) + [-np.inf]
        upper = [math.log(1e3 * total)] * c + [math.log(hi_tau)] * c + [np.inf]
        if self.background:
            lower.append(math.log(1e-9 * total / self.widths.sum()))
            upper.append(math.log(total))
        lower, upper = np.asarray(lower), np.asarray(upper)
        if self.t0_fixed is not None:
            lower[2 * c] = upper[2 * c] = self.t0_fixed
        return lower, upper

    def shapes(self, tau: float, t0: float, derivs: bool) -> tuple[NDArray, ...]:
        """Unit shape ``S = Y / tau`` per block (one photon per period) and dS/dtau, dS/dt0."""
        out = _block_decay(self.starts, self.widths, tau, t0, self.period, self.irf, derivs)
        if not derivs:
            return (out[0] / tau,)
        y, y_tau, y_t0 = out
        return y / tau, y_tau / tau - y / tau**2, y_t0 / tau

    def model(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        n, tau, t0, b = self.natural(theta)
        mu = b * self.widths.astype(np.float64)
        for i in range(self.n_comp):
            mu += n[i] * self.shapes(tau[i], t0, False)[0]
        return mu

    def jacobian_natural(self, theta: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
        """mu and d mu / d(N_1.., tau_1.., t0[, b]) per block."""
        n, tau, t0, b = self.natural(theta)
        c = self.n_comp
        jac = np.zeros((self.y.size, self.n_params))
        mu = b * self.widths.astype(np.float64)
        for i in range(c):
            s, s_tau, s_t0 = self.shapes(tau[i], t0, True)
            mu += n[i] * s
            jac[:, i] = s
            jac[:, c + i] = n[i] * s_tau
            jac[:, 2 * c] += n[i] * s_t0
        if self.background:
            jac[:, 2 * c + 1] = self.widths
        return mu, jac

    def jacobian_theta(self, theta: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
        mu, jac = self.jacobian_natural(theta)
        n, _, _, b = self.natural(theta)
        c = self.n_comp
        out = jac.copy()
        out[:, :c] *= n
        # tau_i = sum_{k<=i} exp(u_k): d mu / d u_k = exp(u_k) * sum_{i>=k} d mu / d tau_i.
        tail = np.cumsum(jac[:, c : 2 * c][:, ::-1], axis=1)[:, ::-1]
        out[:, c : 2 * c] = tail * np.exp(theta[c : 2 * c])
        if self.background:
            out[:, 2 * c + 1] *= b
        return mu, out


def _deviance(y: NDArray, mu: NDArray, ylogy: float) -> float:
    """Poisson deviance ``2 sum(mu - y + y log(y / mu))``; ``ylogy`` is ``sum(y log y)``."""
    mu = np.maximum(mu, 1e-300)
    pos = y > 0
    return float(2.0 * (mu.sum() - y.sum() - y[pos] @ np.log(mu[pos]) + ylogy))


def _ylogy(y: NDArray) -> float:
    pos = y > 0
    return float(y[pos] @ np.log(y[pos]))


def _levenberg_marquardt(problem: _Problem, theta: NDArray) -> tuple[NDArray, float, bool, int]:
    """Minimise the Poisson deviance by Fisher scoring with Levenberg-Marquardt damping.

    A parameter at its bound whose gradient points outwards (e.g. no background in the data)
    is held there for the step, so the fit converges on the boundary instead of pushing at it.
    """
    y = problem.y
    ylogy = _ylogy(y)
    lower, upper = problem.bounds()
    theta = np.clip(theta, lower, upper)
    dev = _deviance(y, problem.model(theta), ylogy)
    lam = 1e-3
    for it in range(1, _MAX_ITER + 1):
        mu, jac = problem.jacobian_theta(theta)
        mu = np.maximum(mu, 1e-300)
        grad = jac.T @ (1.0 - y / mu)  # half the gradient of the deviance
        free = ~(((theta <= lower) & (grad > 0)) | ((theta >= upper) & (grad < 0)))
        fisher = (jac[:, free] / mu[:, None]).T @ jac[:, free]
        g = grad[free]
        diag = np.diag(fisher).copy()
        diag = np.maximum(diag, 1e-12 * max(diag.max(), 1e-300))
        # Newton decrement: the deviance still to gain were the quadratic model exact.
        try:
            decrement = float(g @ np.linalg.solve(fisher + 1e-12 * np.diag(diag), g))
        except np.linalg.LinAlgError:
            decrement = np.inf
        if decrement < _NEWTON_TOL:
            return theta, dev, True, it
        while True:
            step = np.zeros_like(theta)
            try:
                step[free] = np.linalg.solve(fisher + lam * np.diag(diag), -g)
            except np.linalg.LinAlgError:
                step[free] = np.linalg.lstsq(fisher + lam * np.diag(diag), -g, rcond=None)[0]
            trial = np.clip(theta + step, lower, upper)
            dev_trial = _deviance(y, problem.model(trial), ylogy)
            if dev_trial <= dev:
                gain = dev - dev_trial
                theta, dev = trial, dev_trial
                lam = max(lam / 5.0, 1e-9)
                break
            lam *= 5.0
            if lam > 1e12:
                # Not even a tiny step goes downhill: a minimum, where the deviance has a kink
                # (the bin-sampled IRF makes the model piecewise smooth in t0, with kinks
                # where the decay start crosses a bin edge) or to the arithmetic's precision.
                return theta, dev, decrement < 0.5, it
        # Fisher scoring slows to a crawl along a direction the data barely determine (e.g. a
        # vanishing second component): stop when steps no longer gain and little is left.
        if gain < 1e-8 and decrement < 1e-2:
            return theta, dev, True, it
    return theta, dev, False, _MAX_ITER


# --------------------------------------------------------------------------------------------
# Starting values
# --------------------------------------------------------------------------------------------


def _poisson_linear(x: NDArray, y: NDArray, c: ArrayLike, iters: int = 6) -> tuple[NDArray, float]:
    """Non-negative coefficients of ``mu = x @ c`` by projected Fisher scoring; and the deviance."""
    c = np.maximum(np.asarray(c, dtype=np.float64), 1e-9)
    eye = np.eye(c.size)
    for _ in range(iters):
        mu = np.maximum(x @ c, 1e-300)
        grad = x.T @ (1.0 - y / mu)
        fisher = (x / mu[:, None]).T @ x
        try:
            step = np.linalg.solve(fisher + 1e-12 * fisher.trace() * eye, -grad)
        except np.linalg.LinAlgError:
            break
        new = c + step
        c = np.where(new > 0, new, 0.1 * c)
    return c, _deviance(y, x @ c, _ylogy(y))


def _start_mono(problem: _Problem, t0: float) -> tuple[NDArray, float, float]:
    """Grid over tau, photons and background fitted at each: theta, its deviance, a flat one's."""
    y = problem.y
    total = y.sum()
    width = problem.widths.astype(np.float64)
    _, dev_flat = _poisson_linear(width[:, None], y, [total / width.sum()])
    lo, hi = problem.tau_bounds
    best_dev, best = np.inf, None
    for tau in np.geomspace(max(lo, 0.3), min(hi, 30 * problem.period), 20):
        s = problem.shapes(tau, t0, False)[0]
        if problem.background:
            x = np.column_stack([s, width])
            c0 = [0.9 * total / max(s.sum(), 1e-12), 0.1 * total / width.sum()]
        else:
            x, c0 = s[:, None], [total / max(s.sum(), 1e-12)]
        c, dev = _poisson_linear(x, y, c0)
        if dev < best_dev:
            best_dev, best = dev, (tau, c)
    tau, c = best
    b = max(c[1] if problem.background else 0.0, 1e-3 * total / width.sum())
    return problem.theta_of([max(c[0], 1e-3)], [tau], t0, b), best_dev, dev_flat


def _start_bi(problem: _Problem, n_m: float, tau_m: float, t0: float, b_m: float) -> NDArray:
    """Grid over (tau_1, tau_2) around the mono-exponential lifetime, photons fitted at each."""
    y = problem.y
    width = problem.widths.astype(np.float64)
    lo, hi = problem.tau_bounds
    short = [f * tau_m for f in (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7) if f * tau_m >= lo]
    long = [f * tau_m for f in (1.0, 1.2, 1.5, 2.0, 3.0) if f * tau_m <= hi]
    short = short or [1.5 * lo]
    shapes = {t: problem.shapes(t, t0, False)[0] for t in (*short, *long)}
    best_dev, best = np.inf, None
    for t1 in short:
        for t2 in long:
            cols = [shapes[t1], shapes[t2]] + ([width] if problem.background else [])
            c0 = [0.3 * n_m, 0.7 * n_m] + ([b_m] if problem.background else [])
            c, dev = _poisson_linear(np.column_stack(cols), y, c0)
            if dev < best_dev:
                best_dev, best = dev, (t1, t2, c)
    t1, t2, c = best
    n = np.maximum(c[:2], 1e-3 * max(n_m, 1.0))
    b = max(c[2], 1e-3 * y.sum() / width.sum()) if problem.background else 0.0
    return problem.theta_of(n, [t1, t2], t0, b)
