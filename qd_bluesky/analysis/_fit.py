"""Whole-decay fits: Poisson maximum likelihood of periodic, IRF-convolved exponentials.

The model of a decay histogram (bins of width ``dt`` after the laser sync, period ``P``)::

    mu_j = sum_i N_i / tau_i * [irf (*) d_i]_j + b

``d_i`` is the decay of component ``i`` started at ``t0`` *with the tails of all earlier pulses*:
over one period its density is ``exp(-s / tau) / (1 - exp(-P / tau))``, ``s = (t - t0) mod P``
(the sum of the geometric series of pulses). ``N_i`` is the number of photons of component
``i`` per full period, so the intensity fractions are ``N_i / sum N`` (= ``A_i tau_i / sum A
tau`` with ``A`` the amplitudes); ``b`` is a flat background per bin. Every bin is integrated
exactly, with ``t0`` anywhere inside a bin, so the model is smooth in ``t0`` even when the IRF
spans only a bin or two:

* a Gaussian IRF is convolved analytically (the exponentially modified Gaussian);
* a measured IRF is read as a piecewise-constant density on its bins and convolved as such
  (locally, or with an FFT when it is wide);
* without IRF, the bin integrals of the bare decay.

Speed: far from the rise, an exponential through any IRF is the same exponential times a
constant ``L(tau)`` (the IRF's Laplace transform at ``1/tau``), so only bins within the IRF's
reach of the rise need the full formula. The likelihood runs over blocks of bins, single bins
near the rise and wider ones away from it (the summed counts of an exponential over a block much
shorter than its lifetime keep practically all the information), each summed in closed form:
a few hundred terms instead of 16000 bins. Deviance and chi-square are those of the blocks.

The fit minimises the Poisson deviance by Levenberg-Marquardt steps on the Fisher information
(Fisher scoring), over log-parameters that keep photons, lifetimes and background positive and
the lifetimes ordered; starting values come from a grid over the lifetimes with the linear
parameters fitted at each point. Standard errors come from the inverse Fisher information at
the optimum; a parameter that ends on its bound (e.g. no background) is held there, and the
others' errors are conditional on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import fftconvolve
from scipy.special import erfc, erfcx, ndtr

from ._errors import AnalysisError
from ._irf import FWHM_PER_SIGMA, estimate_decay_start, irf_fwhm

Model = Literal["mono", "bi"]

#: Kernels wider than this (bins, both sides) are convolved with an FFT instead of locally.
_LOCAL_KERNEL_MAX = 512
#: The fit has converged when the Newton decrement (the deviance still to gain were the quadratic
#: model exact) is below this: the parameters are then within ~0.01 standard errors of the optimum.
_NEWTON_TOL = 1e-4
_MAX_ITER = 200
#: A decay must beat the best flat histogram by this much deviance (~5 sigma) to be fitted.
_FLAT_DEVIANCE = 25.0
#: Blocks expecting fewer counts are left out of the reported chi-square.
_CHI2_MIN_EXPECTED = 5.0

#: IRF assumed when none is measured: the TCSPC + APD response of the paper's set-up.
DEFAULT_IRF_FWHM_S = 0.4e-9
#: A whole-decay fit (:func:`fit_decay_models`) needs this many photons.
FIT_MIN_COUNTS = 200
#: A bi-exponential replaces the mono-exponential when the Poisson deviance drops by more than this
#: (a likelihood-ratio test with 2 extra parameters at p ~ 1e-6) and both components carry weight.
BI_EXP_DEVIANCE_GAIN = 30.0
BI_EXP_MIN_FRACTION = 0.03


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


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
    #: Poisson deviance at the optimum (over the likelihood's blocks of bins, see the module).
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


# --------------------------------------------------------------------------------------------
# One periodic exponential, integrated over bins (all times in bins)
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


def _local_antiderivatives(
    x: NDArray[np.float64], tau: float, period: float, derivs: bool
) -> tuple[NDArray[np.float64], ...]:
    """``A``, ``A2`` (first and second antiderivatives of the periodic decay) around one rise.

    ``x`` is the time from the rise, ``|x| < period``: the density is ``exp(-x/tau) / (1 - q)``
    after the rise and ``q exp(-x/tau) / (1 - q)`` (the earlier pulses) before it; both
    antiderivatives vanish at the rise. With ``derivs`` also ``dA2/dtau``.
    """
    one_q = -math.expm1(-period / tau)
    q = 1.0 - one_q
    after = x >= 0
    # c exp(-x/tau) with c = 1 after the rise and q before it, without overflow.
    ce = np.exp(-np.where(after, x, x + period) / tau)
    c = np.where(after, 1.0, q)
    a1 = tau * (c - ce) / one_q
    u = tau * (c * (x - tau) + tau * ce)  # c tau (x - tau (1 - exp(-x/tau)))
    a2 = u / one_q
    if not derivs:
        return a1, a2
    du = c * (x - 2.0 * tau) + (2.0 * tau + x) * ce  # du/dtau at fixed c
    # A2 = u / c * c / (1 - q), and d(c / (1 - q))/dtau = q P / (tau (1 - q))^2 on both sides
    # (c = 1 or q): the second term is u * kappa * P / (tau (1 - q))^2, kappa = q or 1.
    kappa = np.where(after, q, 1.0)
    da2 = du / one_q + u * kappa * period / (tau**2 * one_q**2)
    return a1, a2, da2


# --------------------------------------------------------------------------------------------
# Instrument responses: how a decay looks through them
# --------------------------------------------------------------------------------------------
#
# Each response knows (1) the factor L(tau) by which it multiplies an exponential far from the
# rise, where Y_j = L(tau) * D_j exactly, (2) how far from the rise (in bins, before and after)
# that stops being true, and (3) how to compute Y exactly for bins near a rise.


class _NoIrf:
    """No instrument response: the bin integrals themselves (piecewise smooth in t0)."""

    before = 0
    wide = False
    fwhm_s: float | None = None

    @staticmethod
    def after(tau: float) -> int:
        return 0

    @staticmethod
    def log_laplace(tau: float) -> tuple[float, float]:
        return 0.0, 0.0

    @staticmethod
    def near(fa: int, fb: int, tau: float, rise: float, period: float, derivs: bool):
        return _raw_decay(np.arange(fa, fb, dtype=np.float64), tau, rise, period, derivs)

    full = near


class _GaussianIrf:
    """A Gaussian response of standard deviation ``sigma`` bins, convolved exactly.

    Near a rise the decay through a Gaussian is the exponentially modified Gaussian; its
    antiderivative ``G(x) = tau F(x) - tau E(x) q / (1 - q)`` (``F`` the exGaussian CDF,
    ``E = exp(sigma^2 / 2 tau^2 - x / tau)``, the second term the tails of earlier pulses) is
    differenced at the bin edges. Far from it ``L(tau) = exp(sigma^2 / 2 tau^2)``.
    """

    wide = False

    def __init__(self, sigma: float, fwhm_s: float) -> None:
        self.sigma = float(sigma)
        self.fwhm_s = float(fwhm_s)
        self.before = int(math.ceil(9.0 * self.sigma)) + 2

    def after(self, tau: float) -> int:
        # The exGaussian becomes the shifted exponential once x > 9 sigma + sigma^2 / tau.
        return int(math.ceil(9.0 * self.sigma + self.sigma**2 / tau)) + 2

    def log_laplace(self, tau: float) -> tuple[float, float]:
        return self.sigma**2 / (2 * tau**2), -(self.sigma**2) / tau**3

    def near(self, fa: int, fb: int, tau: float, rise: float, period: float, derivs: bool):
        sig = self.sigma
        x = np.arange(fa, fb + 1, dtype=np.float64) - rise  # bin edges, from the rise
        one_q = -math.expm1(-period / tau)
        z = x / sig - sig / tau
        phi_x = np.exp(-0.5 * (x / sig) ** 2) / math.sqrt(2 * math.pi)
        # E * Phi(z): through erfcx where z < 0 (E may overflow there), directly where z >= 0
        # (then E <= 1).
        e_small = np.exp(np.minimum(sig**2 / (2 * tau**2) - x / tau, 0.0))
        e_phi = np.where(
            z < 0,
            phi_x * math.sqrt(math.pi / 2) * erfcx(-z / math.sqrt(2)),
            e_small * (1.0 - 0.5 * erfc(z / math.sqrt(2))),
        )
        cdf = ndtr(x / sig) - e_phi  # exGaussian CDF
        # E q / (1 - q): the earlier pulses, already far past their rise.
        e_tail = np.exp(sig**2 / (2 * tau**2) - (x + period) / tau) / one_q
        g = tau * (cdf - e_tail)
        if not derivs:
            return (np.diff(g),)
        g_t0 = -(e_phi + e_tail)
        dlog_e = x / tau**2 - sig**2 / tau**3  # d log E / d tau
        dcdf = -(e_phi * dlog_e + phi_x * sig / tau**2)
        g_tau = cdf + tau * dcdf - e_tail * (1.0 + tau * dlog_e + period / (tau * one_q))
        return np.diff(g), np.diff(g_tau), np.diff(g_t0)

    def full(self, lo: int, hi: int, tau: float, t0: float, period: float, derivs: bool):
        """``Y`` bin by bin over ``[lo, hi)``."""
        ones = np.ones(hi - lo, dtype=np.int64)
        return _block_decay(np.arange(lo, hi), ones, tau, t0, period, self, derivs, False)


class _SampledIrf:
    """A response given on the bin grid (a measured IRF), read as a piecewise-constant density.

    Bin ``m`` of the kernel spreads its weight evenly over ``[m - 1/2, m + 1/2)`` bins from the
    model's time zero. The decay is first averaged over such a box (``T``, from second
    antiderivatives, so the model is smooth in ``t0`` even for coarse bins), then convolved
    with the weights. Far from the rise ``L(tau) = sum_m w_m exp(m / tau) * 2 tau sinh(1/2tau)``.
    """

    def __init__(
        self, weights: NDArray[np.float64], left: int, right: int, fwhm_s: float, period: float
    ) -> None:
        self.weights = weights
        self.left, self.right = left, right
        self.fwhm_s = fwhm_s
        self.before = left + 2
        self.offsets = np.arange(-left, right + 1, dtype=np.float64)
        self.wide = left + right + 1 > min(_LOCAL_KERNEL_MAX, period / 4)

    def after(self, tau: float) -> int:
        return self.right + 2

    def log_laplace(self, tau: float) -> tuple[float, float]:
        # Relative to the largest offset, so short lifetimes do not overflow.
        e = self.weights * np.exp((self.offsets - self.right) / tau)
        s = e.sum()
        em1 = -math.expm1(-1.0 / tau)
        log_box = 0.5 / tau + math.log(tau * em1)  # log(2 tau sinh(1 / 2 tau))
        dlog_box = -0.5 / tau**2 + 1.0 / tau - math.exp(-1.0 / tau) / (tau**2 * em1)
        value = self.right / tau + math.log(s) + log_box
        return value, -float(e @ self.offsets) / s / tau**2 + dlog_box

    def box(self, k: NDArray[np.float64], rise: float, tau: float, period: float, derivs: bool):
        """``T_k``: the bin integral over ``[k + v, k + v + 1)`` averaged over ``|v| < 1/2``."""
        x = k - rise
        pts = np.concatenate((x + 1.5, x + 0.5, x - 0.5))
        out = _local_antiderivatives(pts, tau, period, derivs)
        n = x.size

        def second_difference(a: NDArray) -> NDArray:
            return a[:n] - 2.0 * a[n : 2 * n] + a[2 * n :]

        t = second_difference(out[1])
        if not derivs:
            return (t,)
        return t, second_difference(out[2]), -second_difference(out[0])

    def near(self, fa: int, fb: int, tau: float, rise: float, period: float, derivs: bool):
        k = np.arange(fa - self.right, fb + self.left, dtype=np.float64)
        return tuple(
            np.convolve(t, self.weights, mode="valid")
            for t in self.box(k, rise, tau, period, derivs)
        )

    def full(self, lo: int, hi: int, tau: float, t0: float, period: float, derivs: bool):
        """``Y`` over bins ``[lo, hi)`` with an FFT, for kernels too wide to convolve locally."""
        k = np.arange(lo - self.right, hi + self.left, dtype=np.float64)
        raw = list(_raw_decay(k, tau, t0, period, derivs))
        log_box, dlog_box = self.log_laplace(tau)
        # Away from a rise T = D * 2 tau sinh(1/2tau): take the box factor alone.
        e = self.weights * np.exp((self.offsets - self.right) / tau)
        box_log = log_box - self.right / tau - math.log(e.sum())
        box = math.exp(box_log)
        if derivs:
            dbox = box * (dlog_box + float(e @ self.offsets) / e.sum() / tau**2)
            raw = [raw[0] * box, raw[1] * box + raw[0] * dbox, raw[2] * box]
        else:
            raw = [raw[0] * box]
        first = math.floor((k[0] - 2 - t0) / period)
        for kk in range(first, math.ceil((k[-1] + 2 - t0) / period) + 1):
            rise = t0 + kk * period
            idx = np.arange(math.floor(rise) - 2, math.floor(rise) + 3) - int(k[0])
            idx = idx[(idx >= 0) & (idx < k.size)]
            if idx.size:
                for arr, t in zip(raw, self.box(k[idx], rise, tau, period, derivs), strict=True):
                    arr[idx] = t
        return tuple(fftconvolve(r, self.weights, mode="valid") for r in raw)


def _sampled_irf(irf: NDArray[np.float64], period_bins: float, dt: float) -> _SampledIrf:
    """The kernel of a measured IRF: time zero at its maximum bin, zero ends trimmed."""
    h = np.clip(irf, 0.0, None)
    n = h.size
    peak = int(np.argmax(h))
    m = np.arange(n) - peak
    if n >= period_bins - 1.0:
        # The array covers the period: offsets wrap, as the pulse train does.
        m = (m + n // 2) % n - n // 2
    keep = h > 0
    left, right = int(-m[keep].min()), int(m[keep].max())
    w = np.zeros(left + right + 1)
    np.add.at(w, m[keep] + left, h[keep])
    return _SampledIrf(w / w.sum(), left, right, irf_fwhm(h, dt), period_bins)


# --------------------------------------------------------------------------------------------
# Blocks of bins and the model over them
# --------------------------------------------------------------------------------------------


def _block_decay(
    starts: NDArray[np.int64],
    widths: NDArray[np.int64],
    tau: float,
    t0: float,
    period: float,
    irf: _NoIrf | _GaussianIrf | _SampledIrf,
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


@dataclass
class _Problem:
    y: NDArray[np.float64]  # counts per block
    starts: NDArray[np.int64]  # first bin of each block
    widths: NDArray[np.int64]  # bins per block
    period: float  # bins
    irf: _NoIrf | _GaussianIrf | _SampledIrf
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


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def fit_decay(
    counts: ArrayLike,
    microtime_unit_s: float,
    *,
    period_s: float,
    model: Model = "mono",
    irf: ArrayLike | None = None,
    irf_fwhm_s: float | None = DEFAULT_IRF_FWHM_S,
    background: bool = True,
    fit_range: tuple[float, float] | None = None,
    min_counts: int | None = None,
) -> DecayFit:
    """Fit a decay histogram with periodic, IRF-convolved exponentials by Poisson likelihood.

    Parameters
    ----------
    counts
        Decay histogram: photons per microtime bin, bin ``j`` covering
        ``[j, j + 1) * microtime_unit_s`` after the laser sync. Bins beyond the period (a window
        longer than the period) cannot hold photons of this pulse and are left out.
    microtime_unit_s
        Bin width in seconds.
    period_s
        Laser period in seconds (1 / repetition rate). The window may be shorter.
    model
        ``"mono"`` (one exponential) or ``"bi"`` (two, ordered ``tau_1 < tau_2``).
    irf
        Measured IRF on the same microtime grid (any length; normalised here, used as given: take
        off its dark-count floor first, e.g. with :func:`resample_irf`). Time zero of the model is
        its maximum bin. Overrides ``irf_fwhm_s``.
    irf_fwhm_s
        FWHM of a Gaussian IRF when no array is given; None or 0 for no IRF.
    background
        Fit a flat background.
    fit_range
        ``(start_s, stop_s)``: fit only the bins whose centre lies in this part of the window.
        A range that leaves out the rise (a tail fit) holds the decay start at the steepest
        rise of the whole histogram (:func:`estimate_decay_start`); ``shift_stderr_s`` is
        then NaN.
    min_counts
        Fewest photons accepted in the fitted range; default 10 per free parameter.

    Returns
    -------
    DecayFit

    Raises
    ------
    AnalysisError
        Too few photons, an empty histogram, or one without a decay above a flat level.
    """
    if model not in ("mono", "bi"):
        raise ValueError(f"model must be 'mono' or 'bi', got {model!r}")
    y_all = np.asarray(counts, dtype=np.float64)
    if y_all.ndim != 1:
        raise AnalysisError(f"a decay histogram must be 1-D, got shape {y_all.shape}")
    if not np.all(np.isfinite(y_all)) or np.any(y_all < 0):
        raise AnalysisError("the decay histogram must hold finite, non-negative counts")
    for name, v in (("microtime_unit_s", microtime_unit_s), ("period_s", period_s)):
        if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    dt = float(microtime_unit_s)
    period = float(period_s) / dt
    n_window = min(y_all.size, int(math.floor(period + 0.5)))
    if n_window < 8:
        raise AnalysisError(f"a decay histogram needs at least 8 bins, got {n_window}")

    lo, hi = 0, n_window
    if fit_range is not None:
        start, stop = fit_range
        centres = (np.arange(n_window) + 0.5) * dt
        inside = np.flatnonzero((centres >= start) & (centres < stop))
        if inside.size < 8:
            raise AnalysisError(f"the fit range {fit_range} s holds fewer than 8 bins")
        lo, hi = int(inside[0]), int(inside[-1]) + 1

    if irf is not None:
        irf_arr = np.asarray(irf, dtype=np.float64).ravel()
        if irf_arr.size == 0 or not np.all(np.isfinite(irf_arr)) or not irf_arr.max() > 0:
            raise AnalysisError("the IRF must be a non-empty array of finite counts")
        response: _NoIrf | _GaussianIrf | _SampledIrf = _sampled_irf(irf_arr, period, dt)
    elif irf_fwhm_s:
        if not irf_fwhm_s > 0:
            raise ValueError(f"irf_fwhm_s must be positive, got {irf_fwhm_s!r}")
        response = _GaussianIrf(irf_fwhm_s / FWHM_PER_SIGMA / dt, irf_fwhm_s)
        if response.before + response.after(response.sigma) + 1 > period / 4:
            raise AnalysisError(
                f"an IRF of {irf_fwhm_s * 1e9:.3g} ns FWHM is too wide for a "
                f"{period_s * 1e9:.3g} ns period"
            )
    else:
        response = _NoIrf()
    sigma_bins = 0.0 if response.fwhm_s is None else response.fwhm_s / FWHM_PER_SIGMA / dt

    n_comp = 1 if model == "mono" else 2
    y = y_all[lo:hi]
    total = float(y.sum())
    need = 10 * (2 * n_comp + 1 + int(background)) if min_counts is None else int(min_counts)
    if total <= 0:
        raise AnalysisError("the decay histogram is empty")
    if total < need:
        raise AnalysisError(f"too few photons for a {model} decay fit ({total:.0f} < {need})")

    # Lifetimes far below the bin width and the IRF cannot be told apart from zero.
    tau_bounds = (max(0.05, 0.02 * sigma_bins), 100.0 * period)
    t0 = estimate_decay_start(y_all[:n_window], dt) / dt
    reach = response.before + response.after(max(sigma_bins, 1.0)) + max(16.0, 4.0 * sigma_bins)
    starts, widths = _block_layout(lo, hi, t0, period, reach)
    yb = np.add.reduceat(y, starts - lo)
    # A range that leaves out the rise cannot tell the start from the amplitudes: hold the start
    # at the steepest rise of the whole histogram.
    margin = sigma_bins + 1.0
    first = math.ceil((lo - margin - t0) / period)
    sees_rise = t0 + first * period < hi + margin
    held = None if sees_rise else t0
    problem = _Problem(yb, starts, widths, period, response, 1, background, tau_bounds, held)
    theta, dev_best, dev_flat = _start_mono(problem, t0)
    if dev_flat - dev_best < _FLAT_DEVIANCE:
        raise AnalysisError(
            f"no decay above a flat level in the histogram ({total:.0f} photons): nothing to fit"
        )
    theta, dev, converged, iters = _levenberg_marquardt(problem, theta)
    if n_comp == 2:
        n_m, tau_m, t0, b_m = problem.natural(theta)
        problem = problem.with_components(2)
        start = _start_bi(problem, float(n_m[0]), float(tau_m[0]), t0, b_m)
        theta, dev, converged, more = _levenberg_marquardt(problem, start)
        iters += more
    return _result(problem, theta, dev, converged, iters, y_all.size, n_window, dt, model)


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


# --------------------------------------------------------------------------------------------
# The project's fit rule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecayFits:
    """The fits of one decay histogram by :func:`fit_decay_models`.

    Attributes
    ----------
    best
        The project's fit: the bi-exponential where the data demand it, else ``mono``.
    mono
        The mono-exponential fit (the calibration's tau(V) at a static bias).
    """

    best: DecayFit
    mono: DecayFit


def fit_decay_models(
    counts: ArrayLike,
    microtime_unit_s: float,
    *,
    period_s: float,
    irf_fwhm_s: float | None = DEFAULT_IRF_FWHM_S,
) -> DecayFits:
    """Fit a mono- and a bi-exponential, and keep the bi-exponential only where it is needed.

    The bi-exponential wins when it converges, lowers the Poisson deviance by more than
    ``BI_EXP_DEVIANCE_GAIN`` and both its components carry more than ``BI_EXP_MIN_FRACTION``
    of the photons.

    Parameters
    ----------
    counts
        Decay histogram (see :func:`fit_decay`).
    microtime_unit_s, period_s, irf_fwhm_s
        As for :func:`fit_decay`.

    Returns
    -------
    DecayFits

    Raises
    ------
    AnalysisError
        Fewer than ``FIT_MIN_COUNTS`` photons, or a histogram the mono-exponential cannot fit.
    """
    counts = np.asarray(counts)
    if counts.sum() < FIT_MIN_COUNTS:
        raise AnalysisError(
            f"too few photons for a decay fit ({int(counts.sum())} < {FIT_MIN_COUNTS})"
        )
    kw = dict(period_s=period_s, irf_fwhm_s=irf_fwhm_s)
    mono = fit_decay(counts, microtime_unit_s, model="mono", **kw)
    try:
        bi = fit_decay(counts, microtime_unit_s, model="bi", **kw)
    except AnalysisError:
        return DecayFits(mono, mono)
    if (
        bi.converged
        and mono.deviance - bi.deviance > BI_EXP_DEVIANCE_GAIN
        and min(bi.fraction) > BI_EXP_MIN_FRACTION
    ):
        return DecayFits(bi, mono)
    return DecayFits(mono, mono)
