"""The survey's field: its population, each site's truth against the physics, bleaching."""

import math

import numpy as np
import pytest

from qd_bluesky.sim import (
    CLASS_FRACTIONS,
    CLUSTER_FRACTION,
    PRESETS,
    Sample,
    SingleDot,
    concatenate_chunks,
    draw_field,
    steady_state,
)
from qd_bluesky.sim._field import BLEACHING_FRACTION, CLUSTER_SPACING_UM, SITE_SEPARATION_UM


def _within_binomial(k: int, n: int, p: float, z: float = 3.5) -> bool:
    return abs(k / n - p) <= z * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def big_field():
    return draw_field(300, seed=7, half_width_um=25.0)


def test_the_population_has_the_documented_fractions(big_field):
    sites, _ = big_field
    singles = [s for s in sites if s.truth != "cluster"]
    assert _within_binomial(len(sites) - len(singles), len(sites), CLUSTER_FRACTION)
    for cls, p in CLASS_FRACTIONS.items():
        assert _within_binomial(sum(s.truth == cls for s in singles), len(singles), p), cls
    assert _within_binomial(sum(s.bleaches for s in singles), len(singles), BLEACHING_FRACTION)
    # Both batches, with a spread of X0 lifetimes and brightness.
    assert {s.batch for s in singles} == {1, 2}
    for batch, preset in ((1, "qd1"), (2, "qd2")):
        taus = np.array([s.params.tau_x0_s for s in singles if s.batch == batch])
        assert np.std(np.log(taus)) == pytest.approx(0.15, rel=0.3)
        assert np.exp(np.mean(np.log(taus))) == pytest.approx(PRESETS[preset].tau_x0_s, rel=0.05)
    eff = np.array([s.params.detection_efficiency for s in singles if s.batch == 1])
    assert np.std(np.log(eff)) == pytest.approx(0.3, rel=0.3)


def test_each_class_is_what_the_physics_makes_of_it(big_field):
    """The truth by construction against the steady state at the CV's far end (-2 V)."""
    sites, _ = big_field
    for s in sites[:120]:
        if s.truth == "cluster":
            continue
        end, zero = steady_state(s.params, -2.0), steady_state(s.params, 0.0)
        beyond_x2 = end.occupation[end.charges <= -3].sum()
        charged = end.occupation[end.charges <= -1].sum()
        brighter = end.rate_cps / zero.rate_cps
        if s.truth == "deep":
            assert beyond_x2 > 0.9, s
        elif s.truth == "shallow":
            assert charged > 0.9 and beyond_x2 < 0.1, s
        else:  # none and brightening: only the photo-charged X- of 0 V
            assert charged < 0.3, s
            assert (brighter > 1.5) == (s.truth == "brightening"), s


def test_clusters_fail_the_single_photon_test(big_field):
    sites, dots = big_field
    for s in sites:
        if s.truth != "cluster":
            continue
        (a, xyz_a), (b, xyz_b) = dots[s.dots[0]], dots[s.dots[1]]
        assert math.dist(xyz_a, xyz_b) == pytest.approx(CLUSTER_SPACING_UM)
        assert a.with_(name="") == b.with_(name="")  # matched: g2(0) = 0.5 + g2_one(0) / 2
        assert 0.5 + steady_state(a, 0.0).g2_zero / 2 > 0.55


def test_the_field_is_seeded_and_its_sites_apart():
    sample = Sample(seed=3, field=12, field_size_um=4.5)
    again = Sample(seed=3, field=12, field_size_um=4.5)
    assert sample.sites == again.sites
    assert Sample(seed=4, field=12, field_size_um=4.5).sites != sample.sites
    xy = np.array([(s.x_um, s.y_um) for s in sample.sites])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(xy), 1)].min() >= SITE_SEPARATION_UM
    assert np.abs(xy).max() <= 4.5
    assert sample.home_um == (0.0, 0.0, 0.0)
    n_dots = sum(len(s.dots) for s in sample.sites)
    assert len(sample.dot_positions_um) == n_dots
    # The default sample is still the preset dot in its field of 24.
    assert len(Sample().dot_positions_um) == 24 and Sample().sites == []


def test_a_bleaching_dot_goes_dark_at_its_dose_whatever_the_chunks():
    params = PRESETS["qd1"].with_(bleach_dose_s=0.7)
    one = SingleDot(params, seed=2).advance(1.5)
    dot = SingleDot(params, seed=2)
    many = concatenate_chunks([dot.advance(t) for t in np.arange(0.1, 1.51, 0.1)])
    last = one.macrotime[one.source == 0].max() / one.rep_rate_hz
    assert last == pytest.approx(0.7, abs=0.01)  # in the focus centre: 0.7 s of light
    assert np.array_equal(one.macrotime, many.macrotime)
    assert np.array_equal(one.source, many.source)
    # Afterwards only background and dark counts.
    assert (one.source[one.macrotime / one.rep_rate_hz > 0.71] < 0).all()
