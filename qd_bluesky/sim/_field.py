"""A field worth surveying: a seeded population of dots, each with its class (issue 13).

Every site of the field is one dot or, with :data:`CLUSTER_FRACTION`, a cluster of two matched
dots closer than the confocal spot resolves (their g2(0) is 0.5 + g2(0)/2 of one dot: they
fail the single-photon test). A single dot is drawn from one of two batches (:data:`BATCHES`,
the presets ``qd1`` and ``qd2``) with a spread of X0 lifetime (log-normal, 15 %), detection
efficiency (30 %) and absorption (20 %), then given one class with the probabilities of
:data:`CLASS_FRACTIONS`:

``deep``
    charges beyond X2- within the CV window (the paper: about 30 % of the dots): the
    conduction-band edge of its batch, +- 50 mV;
``shallow``
    reaches X- and X2- at -2 V, not X3- (the electrode's Fermi level 10-40 % of the way from the
    second to the third level at -2 V). Batch 1 only: the levels of batch 2 lie 1.7 kT apart,
    so a shallow batch-2 dot would be a thermal mix reaching X3- anyway;
``none``
    no lifetime-intensity dip: the window never reaches its conduction band (edge at -2.6 V);
``brightening``
    no dip, but 1.7 to 2.9 times brighter below -0.5 to -1 V (traps passivated), as the paper
    reports for some dots.

With :data:`BLEACHING_FRACTION` a single dot also photobleaches after 2-6 s of light in the
focus. The truth of every site is :class:`FieldSite`; the same seed gives the same field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._dot import DotParameters
from ._presets import PRESETS

#: The two batches of the paper and their presets: batch 1 (10.6 nm) and batch 2 shells.
BATCHES = {1: "qd1", 2: "qd2"}
#: Classes of single dots and their probabilities.
CLASS_FRACTIONS = {"deep": 0.30, "shallow": 0.15, "none": 0.40, "brightening": 0.15}
#: Sites that hold two dots instead of one.
CLUSTER_FRACTION = 0.1
#: Single dots that photobleach during the survey.
BLEACHING_FRACTION = 0.1
#: Distance between the two dots of a cluster (um): far below the PSF's 0.11 um.
CLUSTER_SPACING_UM = 0.02
#: Closest distance between two sites (um) and their margin from the field's edge.
SITE_SEPARATION_UM = 1.5
EDGE_MARGIN_UM = 0.4
#: Bias at the far end of the CV window the classes are defined for (V).
CV_LIMIT_V = -2.0


@dataclass(frozen=True)
class FieldSite:
    """One site of the field and its truth.

    Attributes
    ----------
    site : int
        Index of the site.
    x_um, y_um : float
        Where it is.
    truth : str
        ``deep``, ``shallow``, ``none``, ``brightening`` or ``cluster``.
    batch : int
        1 or 2.
    dots : tuple of int
        Indices of its dots in the sample (two for a cluster).
    bleaches : bool
        Whether it photobleaches (after ``bleach_dose_s`` of light).
    params : DotParameters
        Of its (first) dot.
    """

    site: int
    x_um: float
    y_um: float
    truth: str
    batch: int
    dots: tuple[int, ...]
    bleaches: bool
    params: DotParameters

    @property
    def charges_beyond_x2(self) -> bool:
        return self.truth == "deep"


def default_area_um(n_sites: int) -> float:
    """Side of a square field (um) that holds ``n_sites`` sites comfortably."""
    return round(2 * EDGE_MARGIN_UM + 2.6 * math.sqrt(n_sites), 1)


def draw_field(
    n_sites: int, seed: int, half_width_um: float
) -> tuple[list[FieldSite], list[tuple[DotParameters, tuple[float, float, float]]]]:
    """The sites of a seeded field and the dots to simulate (parameters, position).

    Parameters
    ----------
    n_sites
        Sites (single dots or clusters), >= 1.
    seed
        Seed of the population and the layout.
    half_width_um
        Sites lie within ``[-half_width_um + margin, half_width_um - margin]``.

    Raises
    ------
    ValueError
        Too many sites for the area (they must be :data:`SITE_SEPARATION_UM` apart).
    """
    rng = np.random.default_rng([int(seed), 0xF1E1D])
    xy = _place_sites(rng, int(n_sites), float(half_width_um) - EDGE_MARGIN_UM)
    sites: list[FieldSite] = []
    dots: list[tuple[DotParameters, tuple[float, float, float]]] = []
    classes = list(CLASS_FRACTIONS)
    weights = np.array([CLASS_FRACTIONS[c] for c in classes])
    for k, (x, y) in enumerate(xy):
        cluster = rng.random() < CLUSTER_FRACTION
        truth = "cluster" if cluster else classes[rng.choice(len(classes), p=weights)]
        batch = 1 if truth == "shallow" else int(rng.integers(1, 3))
        params = _dot_of(rng, truth, batch, f"site{k}")
        bleaches = not cluster and rng.random() < BLEACHING_FRACTION
        if bleaches:
            params = params.with_(bleach_dose_s=float(rng.uniform(2.0, 6.0)))
        members = [(params, (float(x), float(y), 0.0))]
        if cluster:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            dx, dy = CLUSTER_SPACING_UM * np.cos(angle), CLUSTER_SPACING_UM * np.sin(angle)
            members.append((params.with_(name=f"site{k}-b"), (float(x + dx), float(y + dy), 0.0)))
        index = tuple(range(len(dots), len(dots) + len(members)))
        dots.extend(members)
        sites.append(FieldSite(k, float(x), float(y), truth, batch, index, bleaches, params))
    return sites, dots


def _place_sites(rng: np.random.Generator, n: int, half_width: float) -> NDArray[np.float64]:
    if half_width <= 0:
        raise ValueError("the field is too small for its edge margin")
    xy = np.empty((n, 2))
    k = tries = 0
    while k < n:
        p = rng.uniform(-half_width, half_width, 2)
        tries += 1
        if np.all(np.hypot(*(xy[:k] - p).T) >= SITE_SEPARATION_UM):
            xy[k] = p
            k += 1
        elif tries > 1000 * n:
            side = 2.0 * (half_width + EDGE_MARGIN_UM)
            raise ValueError(
                f"{n} sites {SITE_SEPARATION_UM} um apart do not fit a {side:g} um field; "
                "make the area larger"
            )
    return xy


def _dot_of(rng: np.random.Generator, truth: str, batch: int, name: str) -> DotParameters:
    base = PRESETS[BATCHES[batch]]

    def spread(sigma: float) -> float:
        return float(np.exp(rng.normal(0.0, sigma)))

    changes: dict = {
        "name": f"{name}-{truth}",
        "tau_x0_s": base.tau_x0_s * spread(0.15),
        "detection_efficiency": base.detection_efficiency * spread(0.3),
        "excitations_at_reference": base.excitations_at_reference * spread(0.2),
    }
    if truth == "deep":
        changes["cb_edge_bias_v"] = base.cb_edge_bias_v + rng.normal(0.0, 0.05)
    elif truth == "shallow":
        e = base.level_energies_ev()
        mu = e[1] + rng.uniform(0.1, 0.4) * (e[2] - e[1])  # Fermi level at CV_LIMIT_V
        changes["cb_edge_bias_v"] = CV_LIMIT_V + mu / base.lever_arm
    else:
        changes["cb_edge_bias_v"] = -2.6 + rng.normal(0.0, 0.1)
    if truth == "brightening":
        changes["trap_brightness"] = float(rng.uniform(0.35, 0.6))
        changes["brightening_bias_v"] = float(rng.uniform(-1.0, -0.5))
    return base.with_(**changes)
