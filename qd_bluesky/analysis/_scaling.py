"""The statistical scaling model of negatively charged excitons (Eq. 1-2 of Morozov et al.).

A charged exciton with ``N`` electrons and one hole (``N = n_extra + 1``: X0, X-, X2-, ...) decays
radiatively at ``N gamma_0`` and by Auger recombination at ``N (N - 1) gamma_A``. With
``r = gamma_A / gamma_0``::

    gamma_{N-1} / gamma_0 = N [1 + r (N - 1)]          (Eq. 1)
    QY_{N-1} = 1 / [1 + r (N - 1)]                     (Eq. 2)

Lifetimes scale as ``1 / gamma`` and detected intensities as the quantum yield (the excitation
per pulse does not change with charge). So for the trion ``tau_X0 / tau_X- = 2 (1 + r)`` and
``I_X0 / I_X- = 1 + r``: the ratio ``r`` follows from either pair, and from both together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._errors import AnalysisError


def decay_rate_ratio(n_extra: ArrayLike, r: float) -> NDArray[np.float64] | float:
    """Decay-rate enhancement ``gamma_{N-1} / gamma_0 = N [1 + r (N - 1)]`` (Eq. 1).

    Parameters
    ----------
    n_extra
        Extra electrons (0 for X0, 1 for X-, ...); non-integers give the smooth curve.
    r
        ``gamma_A / gamma_0``.
    """
    n = np.asarray(n_extra, dtype=np.float64) + 1.0
    out = n * (1.0 + r * (n - 1.0))
    return float(out) if out.ndim == 0 else out


def quantum_yield(n_extra: ArrayLike, r: float) -> NDArray[np.float64] | float:
    """Quantum yield relative to the neutral exciton, ``1 / [1 + r (N - 1)]`` (Eq. 2)."""
    n = np.asarray(n_extra, dtype=np.float64) + 1.0
    out = 1.0 / (1.0 + r * (n - 1.0))
    return float(out) if out.ndim == 0 else out


def state_label(n_extra: int) -> str:
    """``"X0"``, ``"X-"``, ``"X2-"``, ... for 0, 1, 2, ... extra electrons."""
    n_extra = int(n_extra)
    if n_extra < 0:
        raise ValueError(f"n_extra must be >= 0, got {n_extra}")
    return {0: "X0", 1: "X-"}.get(n_extra, f"X{n_extra}-")


@dataclass(frozen=True)
class GammaRatio:
    """An estimate of ``r = gamma_A / gamma_0`` from the X0 and X- states.

    ``r`` combines the lifetime estimate ``tau_X0 / (2 tau_X-) - 1`` and the intensity estimate
    ``I_X0 / I_X- - 1`` (see :func:`gamma_ratio_from_pairs`). Unpacks as ``r, stderr``.
    """

    r: float
    stderr: float
    from_lifetime: float
    from_intensity: float
    #: Chi-square (1 degree of freedom) of the two estimates against their combination.
    chi2: float
    #: Cluster centres ``(lifetime_s, intensity_cps)`` when estimated from FLID points.
    x0: tuple[float, float] | None = None
    xm: tuple[float, float] | None = None
    #: The positive trion's cluster, excluded from the estimate, when one was found.
    xp: tuple[float, float] | None = None

    def __iter__(self):
        yield self.r
        yield self.stderr


def gamma_ratio_from_pairs(
    tau_x0: float,
    intensity_x0: float,
    tau_xm: float,
    intensity_xm: float,
    *,
    tau_x0_err: float | None = None,
    intensity_x0_err: float | None = None,
    tau_xm_err: float | None = None,
    intensity_xm_err: float | None = None,
) -> GammaRatio:
    """``gamma_A / gamma_0`` from the lifetimes and intensities of X0 and X- (Eq. 1-2).

    Eq. 1-2 put X- at ``log(tau_X0 / tau_X-) = log 2 + log(1 + r)`` and
    ``log(I_X0 / I_X-) = log(1 + r)``. Both observed log-ratios therefore measure
    ``x = log(1 + r)``; they are combined by weighted least squares in this log
    (lifetime, intensity) plane, i.e. the fit of Eq. 1-2 through the two points with X0 as anchor.
    The weights are the inverse variances of the log-ratios, from the given uncertainties (any
    units, the same as their values); without uncertainties the two get equal weight and the
    standard error is taken from their disagreement, ``|x_tau - x_I| / 2``. With uncertainties,
    the standard error is scaled up by ``sqrt(chi2)`` when the two disagree more than their
    errors allow (the Birge ratio).

    Returns
    -------
    GammaRatio
        ``r``, its standard error, and the separate lifetime and intensity estimates.
    """
    values = (tau_x0, intensity_x0, tau_xm, intensity_xm)
    if not all(
        isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0 for v in values
    ):
        raise AnalysisError(
            f"lifetimes and intensities of X0 and X- must be positive numbers, got {values}"
        )
    x_tau = math.log(tau_x0 / tau_xm) - math.log(2.0)
    x_int = math.log(intensity_x0 / intensity_xm)
    errs = (tau_x0_err, intensity_x0_err, tau_xm_err, intensity_xm_err)
    if all(e is not None for e in errs):
        var_tau = (tau_x0_err / tau_x0) ** 2 + (tau_xm_err / tau_xm) ** 2
        var_int = (intensity_x0_err / intensity_x0) ** 2 + (intensity_xm_err / intensity_xm) ** 2
        if not (var_tau > 0 and var_int > 0):
            raise AnalysisError("the uncertainties of X0 and X- must be positive")
        w_tau, w_int = 1.0 / var_tau, 1.0 / var_int
        x = (w_tau * x_tau + w_int * x_int) / (w_tau + w_int)
        chi2 = w_tau * (x_tau - x) ** 2 + w_int * (x_int - x) ** 2
        x_err = math.sqrt(1.0 / (w_tau + w_int)) * max(1.0, math.sqrt(chi2))
    elif any(e is not None for e in errs):
        raise ValueError("give the uncertainties of all four quantities, or none")
    else:
        x = 0.5 * (x_tau + x_int)
        x_err = 0.5 * abs(x_tau - x_int)
        chi2 = math.nan
    r = math.expm1(x)
    return GammaRatio(
        r=r,
        stderr=(1.0 + r) * x_err,  # dr/dx = exp(x) = 1 + r
        from_lifetime=math.expm1(x_tau),
        from_intensity=math.expm1(x_int),
        chi2=chi2,
    )


# --------------------------------------------------------------------------------------------
# FLID clusters
# --------------------------------------------------------------------------------------------


#: X- lies at least log 2 below X0 in log lifetime (Eq. 1 with r >= 0); modes closer than
#: about three bandwidths blur into one, so wider kernels would hide X- in X0.
_MAX_BANDWIDTH = math.log(2.0) / 3


def _density_modes(pts: NDArray, h: float, min_points: int) -> NDArray:
    """Modes of the kernel density estimate (Gaussian, bandwidth ``h``) of 2-D points.

    The points are binned on a grid of ``h / 4`` cells and smoothed by the kernel; the modes
    are the grid's local maxima (to within ``h / 8``; binning adds only ``(h/4)^2 / 12`` to the
    kernel variance) where the density could hold a cluster of ``min_points``. Maxima closer
    than ``h / 2`` are one mode. Returns the modes, densest first.
    """
    from scipy import ndimage  # only this estimator needs ndimage: import it on first use

    # The grid spans all but the most extreme 0.1 % on each side (failed fits can sit decades
    # away), and at most 1024 cells per axis.
    lo = np.quantile(pts, 0.001, axis=0) - 4 * h
    hi = np.quantile(pts, 0.999, axis=0) + 4 * h
    n_cells = np.minimum(np.ceil((hi - lo) / (h / 4)), 1024).astype(int)
    hist, ex, ey = np.histogram2d(
        pts[:, 0], pts[:, 1], bins=n_cells, range=np.column_stack([lo, hi])
    )
    sigma = h / np.array([ex[1] - ex[0], ey[1] - ey[0]])
    dens = ndimage.gaussian_filter(hist, sigma, mode="constant", truncate=4.0)
    # In points per cell: a cluster of min_points with a spread up to ~sqrt(3) h peaks above
    # this floor, so fainter maxima (stray bins) are no candidates.
    floor = min_points / (2 * math.pi * sigma[0] * sigma[1]) / 4
    ix, iy = np.nonzero((dens == ndimage.maximum_filter(dens, size=3)) & (dens > floor))
    order = np.argsort(-dens[ix, iy])[:200]  # pathological data: the 200 highest suffice
    peaks = np.column_stack([(ex[:-1] + ex[1:])[ix[order]], (ey[:-1] + ey[1:])[iy[order]]]) / 2
    kept: list[NDArray] = []
    for p in peaks:
        if all(np.hypot(*(p - k)) > h / 2 for k in kept):
            kept.append(p)
    return np.array(kept).reshape(-1, 2)


def gamma_ratio_from_flid(
    intensity_cps: ArrayLike,
    lifetime_s: ArrayLike,
    *,
    min_points: int = 10,
    bandwidth: float = 0.08,
) -> GammaRatio:
    """``gamma_A / gamma_0`` from the FLID points of a 0 V trace: the X0 and X- clusters.

    The points are placed in the plane of log lifetime and log intensity. There Eq. 1-2 give
    every negative state the same radiative-rate ratio whatever ``r``,
    ``(I / I_X0) (tau_X0 / tau) = N`` (the radiative rate counts the ``N`` electrons), so X- lies
    on the line ``N = 2`` and ``r`` only sets how far along it. The positive trion, dim *and*
    short (a few ns), lies far off that branch (``N`` about 6 for the paper's dots).

    1. The clusters are the modes of a kernel density estimate of the points (Gaussian kernel
       of width ``bandwidth``, evaluated on a fine grid). Unlike the components of a fitted
       mixture, density modes cannot collapse into an empty region, and bins that mix two
       states within one FLID bin, spread thinly between the modes, do not drag them.
    2. X0 is the brightest, longest-lived mode (largest ``log tau + log I``) among those holding
       at least ``min_points`` points and 5 % of the largest cluster: by Eq. 1-2 every other
       state, and every mixture of states, is both dimmer and shorter.
    3. X- is the most populated mode whose ``N`` is nearer 2 than 1 or 3
       (``sqrt 2 < N < sqrt 6``).
    4. X+ (reported, not used) is the most populated mode with ``N > 4`` and
       ``tau < tau_X0 / 4``: no negative state at 0 V has more than 4 electrons.
    5. Each cluster's centre is the median of the points nearer its mode than any other and
       within two bandwidths of it; the centres of X0 and X- go to
       :func:`gamma_ratio_from_pairs` with the standard errors of those medians.

    Parameters
    ----------
    intensity_cps, lifetime_s
        One point per FLID bin; NaN or non-positive points are ignored.
    min_points
        Fewest points a cluster must hold.
    bandwidth
        Smoothing scale of the density in natural-log units (0.08: 8 % in lifetime and
        intensity, about the scatter of a 20 ms bin). From 0.03 to 0.2 the simulated 0 V
        traces give the same ``r``; at most ``log(2) / 3``, since X- lies at least ``log 2``
        below X0 in log lifetime and wider kernels merge the two.

    Returns
    -------
    GammaRatio
        With ``x0``, ``xm`` (and ``xp`` when found) cluster centres as ``(lifetime_s, cps)``.

    Raises
    ------
    AnalysisError
        When the points hold no X0 cluster or no X- cluster beside it.
    """
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 2):
        raise ValueError(f"min_points must be an integer >= 2, got {min_points!r}")
    if not (0 < bandwidth <= _MAX_BANDWIDTH):
        raise ValueError(
            f"bandwidth must be in (0, {_MAX_BANDWIDTH:.2f}] (log units), got {bandwidth!r}"
        )
    inten = np.asarray(intensity_cps, dtype=np.float64).ravel()
    life = np.asarray(lifetime_s, dtype=np.float64).ravel()
    if inten.shape != life.shape:
        raise AnalysisError(
            f"intensity and lifetime arrays differ in length ({inten.size} vs {life.size})"
        )
    good = np.isfinite(inten) & np.isfinite(life) & (inten > 0) & (life > 0)
    pts = np.column_stack([np.log(life[good]), np.log(inten[good])])
    n = pts.shape[0]
    if n < 2 * min_points:
        raise AnalysisError(f"too few FLID points to find X0 and X- ({n} < {2 * min_points})")

    h = float(bandwidth)
    modes = _density_modes(pts, h, min_points)
    if modes.shape[0] == 0:
        raise AnalysisError(f"no clear X0 cluster among the {n} FLID points")
    # Members: the points nearer a mode than any other, within two bandwidths of it.
    d2 = ((pts[:, None, :] - modes[None, :, :]) ** 2).sum(axis=-1)
    nearest = d2.argmin(axis=1)
    member = (nearest[:, None] == np.arange(modes.shape[0])) & (d2 < (2 * h) ** 2)
    counts = member.sum(axis=0)

    big = counts >= max(min_points, 0.05 * counts.max())
    if not big.any():
        raise AnalysisError(f"no clear X0 cluster among the {n} FLID points")
    k0 = np.flatnonzero(big)[np.argmax(modes[big].sum(axis=1))]
    # log of the radiative-rate ratio N = (I / I_X0) (tau_X0 / tau) of each mode.
    log_tau_ratio = modes[k0, 0] - modes[:, 0]
    log_n = log_tau_ratio - (modes[k0, 1] - modes[:, 1])
    populated = counts >= min_points
    is_xm = populated & (log_n > 0.5 * math.log(2.0)) & (log_n < 0.5 * math.log(6.0))
    is_xp = populated & (log_n > math.log(4.0)) & (log_tau_ratio > math.log(4.0))
    if not is_xm.any():
        x0 = np.exp(modes[k0])
        raise AnalysisError(
            f"no X- cluster beside X0 ({x0[0] * 1e9:.3g} ns, {x0[1]:.4g} cps) among the {n} "
            f"FLID points"
        )
    km = np.flatnonzero(is_xm)[np.argmax(counts[is_xm])]
    kp = np.flatnonzero(is_xp)[np.argmax(counts[is_xp])] if is_xp.any() else None

    c0, cm = _centre(pts[member[:, k0]]), _centre(pts[member[:, km]])
    tau0, i0, taum, im = (math.exp(v) for v in (*c0[0], *cm[0]))
    est = gamma_ratio_from_pairs(
        tau0,
        i0,
        taum,
        im,
        tau_x0_err=tau0 * c0[1][0],
        intensity_x0_err=i0 * c0[1][1],
        tau_xm_err=taum * cm[1][0],
        intensity_xm_err=im * cm[1][1],
    )
    xp = None
    if kp is not None:
        cp = np.exp(_centre(pts[member[:, kp]])[0])
        xp = (float(cp[0]), float(cp[1]))
    return GammaRatio(
        r=est.r,
        stderr=est.stderr,
        from_lifetime=est.from_lifetime,
        from_intensity=est.from_intensity,
        chi2=est.chi2,
        x0=(tau0, i0),
        xm=(taum, im),
        xp=xp,
    )


def _centre(sel: NDArray) -> tuple[NDArray, NDArray]:
    """Median of a cluster's log-points and its standard error.

    The median keeps the few bins that mix two states (spread along the line joining them)
    from pulling the centre; its standard error is ``sqrt(pi/2) sd / sqrt(n)`` for a normal
    core.
    """
    err = math.sqrt(math.pi / 2) * sel.std(axis=0, ddof=1) / math.sqrt(sel.shape[0])
    return np.median(sel, axis=0), err


# --------------------------------------------------------------------------------------------
# The model as a map of charge states
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingModel:
    """Eq. 1-2 anchored at a dot's neutral exciton: where X0, X-, X2-, ... sit in the FLID.

    Parameters
    ----------
    gamma_ratio
        ``r = gamma_A / gamma_0``.
    tau_x0_s
        Lifetime of the neutral exciton in seconds.
    intensity_x0_cps
        Detected intensity of the neutral exciton in counts per second.
    n_max
        Highest number of extra electrons considered (the paper estimates ~20 reachable states).
    """

    gamma_ratio: float
    tau_x0_s: float
    intensity_x0_cps: float
    n_max: int = 20

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gamma_ratio) and self.gamma_ratio >= 0):
            raise ValueError(f"gamma_ratio must be >= 0, got {self.gamma_ratio!r}")
        for name in ("tau_x0_s", "intensity_x0_cps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be positive, got {v!r}")
        if self.n_max < 0:
            raise ValueError(f"n_max must be >= 0, got {self.n_max}")

    @property
    def labels(self) -> list[str]:
        """Names of the states 0 .. n_max extra electrons: ``["X0", "X-", "X2-", ...]``."""
        return [state_label(k) for k in range(self.n_max + 1)]

    def lifetime_s(self, n_extra: ArrayLike) -> NDArray[np.float64] | float:
        """Lifetime of the state with ``n_extra`` electrons (continuous values allowed)."""
        return self.tau_x0_s / decay_rate_ratio(n_extra, self.gamma_ratio)

    def intensity_cps(self, n_extra: ArrayLike) -> NDArray[np.float64] | float:
        """Detected intensity of the state with ``n_extra`` electrons."""
        return self.intensity_x0_cps * quantum_yield(n_extra, self.gamma_ratio)

    def state_points(self, n_max: int | None = None) -> tuple[NDArray, NDArray]:
        """``(lifetime_s, intensity_cps)`` of X0, X-, ..., X{n_max}-."""
        k = np.arange((self.n_max if n_max is None else int(n_max)) + 1, dtype=np.float64)
        return np.asarray(self.lifetime_s(k)), np.asarray(self.intensity_cps(k))

    def curve(self, n_max: float | None = None, n_points: int = 200) -> tuple[NDArray, NDArray]:
        """A smooth ``(lifetime_s, intensity_cps)`` curve through the states, for plots."""
        k = np.linspace(0.0, self.n_max if n_max is None else float(n_max), int(n_points))
        return np.asarray(self.lifetime_s(k)), np.asarray(self.intensity_cps(k))

    def n_extra_from_lifetime(self, lifetime_s: ArrayLike) -> NDArray[np.float64]:
        """Continuous ``n_extra`` whose Eq. 1 lifetime is ``lifetime_s`` (inverse of Eq. 1)."""
        g = self.tau_x0_s / np.asarray(lifetime_s, dtype=np.float64)
        r = self.gamma_ratio
        if r == 0:
            return g - 1.0
        # r N^2 + (1 - r) N - g = 0, the positive root.
        n = (-(1.0 - r) + np.sqrt((1.0 - r) ** 2 + 4.0 * r * g)) / (2.0 * r)
        return n - 1.0

    def assign(
        self,
        intensity_cps: ArrayLike,
        lifetime_s: ArrayLike,
        *,
        by: str = "both",
    ) -> NDArray[np.int64]:
        """Charge state (extra electrons) of each FLID point; -1 where a value is NaN or <= 0.

        ``by="both"``: the nearest state point in the log-lifetime / log-intensity plane.
        ``by="lifetime"``: the state whose Eq. 1 lifetime is nearest in log (the intensity is the
        quantity that departs from Eq. 2 at high charge, the lifetime still counts electrons).
        """
        inten = np.asarray(intensity_cps, dtype=np.float64)
        life = np.asarray(lifetime_s, dtype=np.float64)
        if inten.shape != life.shape:
            raise AnalysisError(
                f"intensity and lifetime arrays differ in shape ({inten.shape} vs {life.shape})"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            bad = ~(np.isfinite(inten) & np.isfinite(life) & (inten > 0) & (life > 0))
            ll = np.log(np.where(bad, 1.0, life))
            li = np.log(np.where(bad, 1.0, inten))
        st, si = self.state_points()
        d2 = (ll[..., None] - np.log(st)) ** 2
        if by == "both":
            d2 = d2 + (li[..., None] - np.log(si)) ** 2
        elif by != "lifetime":
            raise ValueError(f"by must be 'both' or 'lifetime', got {by!r}")
        out = np.argmin(d2, axis=-1).astype(np.int64)
        out[bad] = -1
        return out

    def last_state_following_model(
        self,
        intensity_cps: ArrayLike,
        lifetime_s: ArrayLike,
        tolerance: float = 0.1,
        *,
        min_points: int = 5,
        n_sigma: float = 2.0,
    ) -> int:
        """The highest charge state up to which the measured points follow Eq. 1-2.

        Points are given their charge state by lifetime (``assign(..., by="lifetime")``); for
        each state with at least ``min_points`` points, the median ``m`` of
        ``log(I_measured / I_model(state))`` is taken with its standard error ``s`` (from the
        points' own scatter, ``1.2533 * 1.4826 MAD / sqrt(n)``). The state departs from the
        model when ``|m|`` exceeds both ``log(1 + tolerance)`` and ``n_sigma * s``: the
        tolerance is the physical threshold, the second condition keeps a sparse, noisy state
        from ending the walk by chance. Walking up from X0, the answer is the last state before
        the first one that departs (states with too few points are passed over).

        The default tolerance, 10 %, suits both kinds of input. Per-state intensities (each
        state's photons fitted separately) follow Eq. 1-2 to a few % until the departure, which
        is then -30 % or more. In a 20 ms FLID of a CV scan the dot switches among neighbouring
        states within every bin, so the bins that a lifetime assigns to the first departing
        state are diluted by the state below: in simulated CV scans of the batch-2 dot, its
        -43 % at X13- shows as only -5 to -14 % (X14-: -14 to -23 %), while X0 to X11- stay
        within 3 % and X12- within 7 %. The former default, 25 %, then answered one or two
        states too high; 7 % can stop one state early. From a FLID, expect the true answer or
        one more. (Comparing each state with the trend of the states below it instead would
        not help: the departure is diluted, not offset, and a trend would absorb a gradual
        departure.)

        Parameters
        ----------
        intensity_cps, lifetime_s
            The points (background subtracted, as the model's intensities are).
        tolerance
            Largest relative intensity deviation of a state that follows the model.
        min_points
            Fewest points a state needs to be judged.
        n_sigma
            A departure must also exceed this many standard errors of the state's median.

        Returns
        -------
        int
            Extra electrons of that state (0 for X0, 1 for X-, ...); -1 when no state qualifies.
        """
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
        if not n_sigma >= 0:
            raise ValueError(f"n_sigma must be >= 0, got {n_sigma!r}")
        inten = np.asarray(intensity_cps, dtype=np.float64).ravel()
        states = self.assign(inten, np.asarray(lifetime_s, dtype=np.float64).ravel(), by="lifetime")
        limit = math.log1p(tolerance)
        last = -1
        for k in range(self.n_max + 1):
            sel = states == k
            n = int(sel.sum())
            if n < min_points:
                continue
            resid = np.log(inten[sel] / self.intensity_cps(k))
            med = float(np.median(resid))
            # Standard error of a median, from the robust (MAD) scatter of a normal core.
            stderr = 1.2533 * 1.4826 * float(np.median(np.abs(resid - med))) / math.sqrt(n)
            if abs(med) > max(limit, n_sigma * stderr):
                break
            last = k
        return last
