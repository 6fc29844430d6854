"""The entry points: :func:`fit_decay`, and the project's fit rule :func:`fit_decay_models`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._errors import AnalysisError
from .._irf import FWHM_PER_SIGMA, estimate_decay_start
from ._blocks import _block_layout
from ._irf_models import _GaussianIrf, _NoIrf, _sampled_irf, _SampledIrf
from ._result import DecayFit, _result
from ._solver import _levenberg_marquardt, _Problem, _start_bi, _start_mono

Model = Literal["mono", "bi"]

#: A decay must beat the best flat histogram by this much deviance (~5 sigma) to be fitted.
_FLAT_DEVIANCE = 25.0

#: IRF assumed when none is measured: the TCSPC + APD response of the paper's set-up.
DEFAULT_IRF_FWHM_S = 0.4e-9
#: A whole-decay fit (:func:`fit_decay_models`) needs this many photons.
FIT_MIN_COUNTS = 200
#: A bi-exponential replaces the mono-exponential when the Poisson deviance drops by more than this
#: (a likelihood-ratio test with 2 extra parameters at p ~ 1e-6) and both components carry weight.
BI_EXP_DEVIANCE_GAIN = 30.0
BI_EXP_MIN_FRACTION = 0.03


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
