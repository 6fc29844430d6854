"""Instrument responses: how a periodic decay looks through none, a Gaussian or a measured one.

* a Gaussian IRF is convolved analytically (the exponentially modified Gaussian);
* a measured IRF is read as a piecewise-constant density on its bins and convolved as such
  (locally, or with an FFT when it is wide);
* without IRF, the bin integrals of the bare decay.

Each implements ``_blocks._Response``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve
from scipy.special import erfc, erfcx, ndtr

from .._irf import irf_fwhm
from ._blocks import _block_decay, _raw_decay

#: Kernels wider than this (bins, both sides) are convolved with an FFT instead of locally.
_LOCAL_KERNEL_MAX = 512


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
