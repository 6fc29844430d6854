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


def _gmm(points: NDArray, means: NDArray, iters: int = 200) -> tuple[NDArray, NDArray, NDArray]:
    """2-D Gaussian mixture by expectation-maximisation from the given starting means.

    Returns the means, covariances and responsibilities (points x components).
    """
    k = means.shape[0]
    n = points.shape[0]
    floor = 1e-6 * np.eye(2)
    spread = np.cov(points.T) / k**2 + floor
    covs = np.repeat(spread[None], k, axis=0)
    weights = np.full(k, 1.0 / k)
    resp = np.zeros((n, k))
    for _ in range(iters):
        # E step, in logs so that far points do not underflow every component.
        logp = np.empty((n, k))
        for i in range(k):
            d = points - means[i]
            inv = np.linalg.inv(covs[i])
            _, logdet = np.linalg.slogdet(covs[i])
            logp[:, i] = math.log(weights[i] + 1e-300) - 0.5 * (
                np.einsum("nj,jk,nk->n", d, inv, d) + logdet
            )
        logp -= logp.max(axis=1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=1, keepdims=True)
        converged = np.abs(new - resp).max() < 1e-8
        resp = new
        # M step.
        nk = resp.sum(axis=0) + 1e-12
        weights = nk / n
        means = (resp.T @ points) / nk[:, None]
        for i in range(k):
            d = points - means[i]
            covs[i] = (resp[:, i, None] * d).T @ d / nk[i] + floor
        if converged:
            break
    return means, covs, resp


def gamma_ratio_from_flid(
    intensity_cps: ArrayLike,
    lifetime_s: ArrayLike,
    *,
    min_points: int = 10,
) -> GammaRatio:
    """``gamma_A / gamma_0`` from the FLID points of a 0 V trace: the X0 and X- clusters.

    The points are clustered in the log (lifetime, intensity) plane by a three-component Gaussian
    mixture, seeded at the bright long-lived corner (X0), the short-lived end (X+) and in
    between (X-). Eq. 1-2 put every negative state at ``tau_X0 / tau = N I_X0 / I`` (``N``
    electrons; X- at ``N = 2``); the positive trion is dim *and* short (a few ns), far off that
    branch. So the shortest-lived cluster is taken as X+, and left out, when
    ``tau_X0 / tau > 4 I_X0 / I`` (more than 4 electrons at 0 V: not a negative state) and the
    middle cluster holds at least ``min_points``; otherwise (a dot that does not visit X+) a
    two-component mixture, X0 and X-, is used. Each cluster's centre is the median of the
    log-points that belong to it with probability above 0.9 (so bins flickering between X0 and
    X- do not drag it), and the centres go to :func:`gamma_ratio_from_pairs` with the standard
    errors of those medians.

    Parameters
    ----------
    intensity_cps, lifetime_s
        One point per FLID bin; NaN or non-positive points are ignored.
    min_points
        Fewest points a cluster must hold.

    Returns
    -------
    GammaRatio
        With ``x0``, ``xm`` (and ``xp`` when found) cluster centres as ``(lifetime_s, cps)``.
    """
    inten = np.asarray(intensity_cps, dtype=np.float64).ravel()
    life = np.asarray(lifetime_s, dtype=np.float64).ravel()
    if inten.shape != life.shape:
        raise AnalysisError(
            f"intensity and lifetime arrays differ in length ({inten.size} vs {life.size})"
        )
    good = np.isfinite(inten) & np.isfinite(life) & (inten > 0) & (life > 0)
    pts = np.column_stack([np.log(life[good]), np.log(inten[good])])
    if pts.shape[0] < 2 * min_points:
        raise AnalysisError(
            f"too few FLID points to find X0 and X- ({pts.shape[0]} < {2 * min_points})"
        )

    # Seeds: X0 at the bright, long corner; X+ at the short end; X- between them.
    lt, li = pts[:, 0], pts[:, 1]
    x0 = np.array([np.quantile(lt, 0.9), np.quantile(li, 0.9)])
    xp = np.array([np.quantile(lt, 0.02), np.quantile(li, 0.05)])
    xm = np.array([x0[0] - math.log(3.0), x0[1] - math.log(1.5)])
    means, _, resp = _gmm(pts, np.array([x0, xm, xp]))
    order = np.argsort(-means[:, 0])  # longest first: X0, X-, X+
    means, resp = means[order], resp[:, order]
    counts = (resp > 0.9).sum(axis=0)
    gap_tau = means[0, 0] - means[2, 0]
    gap_int = means[0, 1] - means[2, 1]
    is_xp = gap_tau > math.log(4.0) + gap_int and counts[1] >= min_points
    if is_xp:
        xp_centre = _centre(pts, resp[:, 2])
    else:
        # No separate short, dim cluster: two components, X0 and X-.
        means, _, resp = _gmm(pts, np.array([x0, xm]))
        resp = resp[:, np.argsort(-means[:, 0])]
        xp_centre = None
    c0, cm = _centre(pts, resp[:, 0]), _centre(pts, resp[:, 1])
    for name, c in (("X0", c0), ("X-", cm)):
        if c is None or c[2] < min_points:
            raise AnalysisError(f"no clear {name} cluster among the {pts.shape[0]} FLID points")
    est = gamma_ratio_from_pairs(
        math.exp(c0[0][0]),
        math.exp(c0[0][1]),
        math.exp(cm[0][0]),
        math.exp(cm[0][1]),
        tau_x0_err=math.exp(c0[0][0]) * c0[1][0],
        intensity_x0_err=math.exp(c0[0][1]) * c0[1][1],
        tau_xm_err=math.exp(cm[0][0]) * cm[1][0],
        intensity_xm_err=math.exp(cm[0][1]) * cm[1][1],
    )
    as_point = lambda c: (float(math.exp(c[0][0])), float(math.exp(c[0][1])))  # noqa: E731
    return GammaRatio(
        r=est.r,
        stderr=est.stderr,
        from_lifetime=est.from_lifetime,
        from_intensity=est.from_intensity,
        chi2=est.chi2,
        x0=as_point(c0),
        xm=as_point(cm),
        xp=None if xp_centre is None else as_point(xp_centre),
    )


def _centre(pts: NDArray, resp: NDArray) -> tuple[NDArray, NDArray, int] | None:
    """Median, its standard error and the number of the points surely in a cluster.

    The median keeps bins that flicker between two states (spread along the line joining them)
    from pulling the centre; its standard error is ``sqrt(pi/2) sd / sqrt(n)`` for a normal core.
    """
    sel = pts[resp > 0.9]
    if sel.shape[0] < 2:
        return None
    err = math.sqrt(math.pi / 2) * sel.std(axis=0, ddof=1) / math.sqrt(sel.shape[0])
    return np.median(sel, axis=0), err, sel.shape[0]


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
        tolerance: float = 0.25,
        *,
        min_points: int = 5,
    ) -> int:
        """The highest charge state up to which the measured points follow Eq. 1-2.

        Points are given their charge state by lifetime (``assign(..., by="lifetime")``); for
        each state with at least ``min_points`` points the median of
        ``log(I_measured / I_model(state))`` is compared with ``log(1 + tolerance)``. Walking up
        from X0, the answer is the last state before the first one that departs (states with
        too few points are passed over).

        Returns
        -------
        int
            Extra electrons of that state (0 for X0, 1 for X-, ...); -1 when no state qualifies.
        """
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
        inten = np.asarray(intensity_cps, dtype=np.float64).ravel()
        states = self.assign(inten, np.asarray(lifetime_s, dtype=np.float64).ravel(), by="lifetime")
        limit = math.log1p(tolerance)
        last = -1
        for k in range(self.n_max + 1):
            sel = states == k
            if sel.sum() < min_points:
                continue
            resid = np.median(np.log(inten[sel] / self.intensity_cps(k)))
            if abs(resid) > limit:
                break
            last = k
        return last
