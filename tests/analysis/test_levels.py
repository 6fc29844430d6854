"""Levels between change points and their BIC grouping, against synthetic blinking with truth.

Tolerances. A group's intensity n_g / T_g has the Poisson standard error sqrt(n_g) / T_g; its
lifetime has the Fisher-information standard error that ``flid_lifetimes`` states. Each is
asserted to 4 SE (false-failure rate 6e-5), plus the bias from misplaced change points: each
change point moves about ``scale`` seconds (see test_changepoints.py) of the other state's time
into a level, i.e. up to ``n_cp * scale * |rate difference|`` photons into a group.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from qd_bluesky.analysis._levels import find_levels, group_levels, grouped_levels

sys.path.insert(0, str(Path(__file__).parent))
from blinking_truth import telegraph  # noqa: E402
from synthetic import Synthetic, generate  # noqa: E402
from test_changepoints import localisation_scale  # noqa: E402

BACKGROUND_CPS = 300.0
X0 = (35e3, 125e-9)
X_PLUS = (5e3, 5e-9)  # the dim positive trion: a few ns (PHYSICS.md)


def levels_of(syn: Synthetic, **kw):
    return find_levels(
        syn.macrotime,
        syn.period_s,
        microtime=syn.microtime,
        microtime_unit_s=syn.microtime_unit_s,
        period_s=syn.period_s,
        decay_start_s=syn.decay_start_s,
        background_cps=syn.background_cps,
        irf_fwhm_s=syn.irf_fwhm_s,
        **kw,
    )


@pytest.fixture(scope="module")
def two_state() -> tuple[Synthetic, object]:
    switches = telegraph(60.0, alpha_on=1.8, alpha_off=1.8, xmin_s=0.02, xmax_s=2.0, seed=3)
    syn = generate(60.0, [X0, X_PLUS], switches=switches, background_cps=BACKGROUND_CPS, seed=4)
    return syn, levels_of(syn)


def test_two_groups_with_their_intensity_lifetime_and_time(two_state):
    syn, lv = two_state
    assert len(lv.group_intensity_cps) == 2
    assert lv.group_num_levels.sum() == len(lv)
    assert lv.photons.sum() == len(syn)
    scale = localisation_scale(X0[0], X_PLUS[0])
    truth_fraction = syn.time_fraction()
    for g, (rate, tau) in enumerate((X0, X_PLUS)):
        time_g = lv.group_time_fraction[g] * syn.duration_s
        n_g = lv.group_intensity_cps[g] * time_g
        se = math.sqrt(n_g) / time_g
        bias = len(lv.change_points) * scale * (X0[0] - X_PLUS[0]) / time_g
        expected = rate + BACKGROUND_CPS
        assert abs(lv.group_intensity_cps[g] - expected) < 4 * se + bias, (g, se, bias)
        # lifetime: 4 stated SE, plus the bias of the foreign photons (at most 1 % of the group)
        tau_se = lv.group_lifetime_stderr_s[g]
        assert abs(lv.group_lifetime_s[g] - tau) < 4 * tau_se + 0.01 * tau, (g, tau_se)
        # time fraction: each change point misplaces ~scale seconds
        tol = 5 * len(lv.change_points) * scale / syn.duration_s
        assert abs(lv.group_time_fraction[g] - truth_fraction[g]) < tol


def test_grouped_levels_regroup_found_levels_alike(two_state):
    """Levels known only by their times and photons (the live stream's) group as found."""
    syn, lv = two_state
    again = grouped_levels(lv.start_s, lv.end_s, lv.photons, min_duration_s=syn.period_s)
    np.testing.assert_array_equal(again.group, lv.group)
    np.testing.assert_allclose(again.group_intensity_cps, lv.group_intensity_cps)
    np.testing.assert_allclose(again.group_time_fraction, lv.group_time_fraction)
    np.testing.assert_array_equal(again.change_points_s, lv.end_s[:-1])
    with pytest.raises(ValueError, match="equal-length"):
        grouped_levels([], [], [])


def test_levels_tile_the_recording(two_state):
    syn, lv = two_state
    np.testing.assert_array_equal(lv.start_s[1:], lv.end_s[:-1])
    np.testing.assert_allclose(lv.change_points_s, lv.end_s[:-1])
    assert lv.start_s[0] == syn.macrotime[0] * syn.period_s
    assert lv.end_s[-1] == syn.macrotime[-1] * syn.period_s
    # a level's lifetime exists exactly when it has enough photons
    assert np.all(np.isfinite(lv.lifetime_s[lv.photons >= 40]))
    assert np.all(np.isnan(lv.lifetime_s[lv.photons < 20]))
    # group 0 is the brightest, and levels belong to the group nearer their own intensity
    assert lv.group_intensity_cps[0] > lv.group_intensity_cps[1]


def dominant(lv, min_fraction: float = 0.01) -> np.ndarray:
    """Groups holding at least ``min_fraction`` of the recording.

    Short levels that straddle an unresolved blink (a mixed intensity) or that the change-point
    search cut at an extreme can form a group of their own: BIC treats level intensities as
    random given their group, but the search picks the cuts that maximise the contrast. Such
    groups are a few levels of a few ms (measured: 3 levels, < 0.1 % of the time).
    """
    return np.flatnonzero(lv.group_time_fraction >= min_fraction)


@pytest.mark.parametrize("seed", [11, 13])
def test_three_states_give_three_groups(seed):
    # X0, X- (42 ns, 23 kc/s) and X+: the flickering pair X0/X- has the lowest contrast
    states = [X0, (23e3, 42e-9), X_PLUS]
    syn = generate(60.0, states, dwell_s=0.3, background_cps=BACKGROUND_CPS, seed=seed)
    lv = levels_of(syn)
    main = dominant(lv)
    assert len(main) == 3
    assert lv.group_time_fraction[main].sum() > 0.995
    scale = localisation_scale(35e3, 23e3)
    for g, (rate, tau) in zip(main, states, strict=True):
        time_g = lv.group_time_fraction[g] * syn.duration_s
        se = math.sqrt(lv.group_intensity_cps[g] * time_g) / time_g
        bias = len(lv.change_points) * scale * 30e3 / time_g
        assert abs(lv.group_intensity_cps[g] - (rate + BACKGROUND_CPS)) < 4 * se + bias
        tau_se = lv.group_lifetime_stderr_s[g]
        assert abs(lv.group_lifetime_s[g] - tau) < 4 * tau_se + 0.01 * tau, (g, tau_se)


def test_group_levels_bic_on_exact_levels():
    # levels with Poisson counts from 3 rates: BIC must find 3, with no change-point error
    rng = np.random.default_rng(5)
    rates = np.array([35e3, 20e3, 5e3])
    state = rng.integers(0, 3, 300)
    duration = rng.uniform(0.01, 0.3, 300)
    photons = np.maximum(rng.poisson(rates[state] * duration), 1)
    group, bic = group_levels(photons, duration)
    assert int(np.argmax(bic)) + 1 == 3
    # brightest first, every level in its own state's group
    np.testing.assert_array_equal(group, state)


def test_one_rate_one_group():
    rng = np.random.default_rng(6)
    duration = rng.uniform(0.01, 0.3, 200)
    group, _ = group_levels(rng.poisson(20e3 * duration), duration)
    assert np.all(group == 0)


def test_no_microtimes_no_lifetimes():
    syn = generate(20.0, [X0, X_PLUS], dwell_s=0.3, seed=2)
    lv = find_levels(syn.macrotime, syn.period_s)
    assert np.all(np.isnan(lv.lifetime_s)) and np.all(np.isnan(lv.group_lifetime_s))
    assert len(dominant(lv)) == 2


@pytest.mark.parametrize(
    "kw, match_text",
    [
        (dict(macrotime_unit_s=0.0), "macrotime_unit_s must be positive"),
        (dict(confidence=0.5), "confidence must be one of"),
        (dict(microtime=np.zeros(3)), "differ"),
    ],
)
def test_bad_arguments(kw, match_text):
    args = dict(macrotime=np.arange(100), macrotime_unit_s=1e-6) | kw
    with pytest.raises(ValueError, match=match_text):
        find_levels(args.pop("macrotime"), args.pop("macrotime_unit_s"), **args)


def test_group_levels_rejects_empty_levels():
    with pytest.raises(ValueError, match="at least one photon"):
        group_levels([0, 3], [1.0, 1.0])


def test_analyze_file_levels_schema_and_truth(tmp_path):
    from qd_bluesky.analysis import analyze_file, write_photon_hdf5

    switches = telegraph(30.0, alpha_on=1.8, alpha_off=1.8, xmin_s=0.02, xmax_s=2.0, seed=31)
    syn = generate(30.0, [X0, X_PLUS], switches=switches, background_cps=BACKGROUND_CPS, seed=32)
    path = write_photon_hdf5(tmp_path / "blinking.h5", syn.table())
    result = analyze_file(path, levels=True, confidence=0.99)
    lv = result["levels"]
    assert set(lv) == {"confidence", "change_points_s", "levels", "groups", "blinking"}
    assert lv["confidence"] == 0.99
    assert set(lv["levels"][0]) == {
        "start_s", "end_s", "photons", "intensity_cps", "lifetime_ns", "group"
    }  # fmt: skip
    assert set(lv["groups"][0]) == {
        "group", "intensity_cps", "lifetime_ns", "time_fraction", "num_levels"
    }  # fmt: skip
    assert set(lv["blinking"]) == {"threshold_cps", "on", "off"}
    assert set(lv["blinking"]["on"]) == {"alpha", "alpha_stderr", "xmin_s", "dwells"}
    assert sum(level["photons"] for level in lv["levels"]) == len(syn)
    # the same numbers as the module, with the decay start and background of the file's fit
    assert len(lv["groups"]) == 2
    bright, dim = lv["groups"]
    assert bright["intensity_cps"] > dim["intensity_cps"]
    # lifetimes through the file's own decay fit (its decay start, IRF and background): 4 % and
    # 10 % are > 4 SE of groups of 5e5 and 8e4 photons (0.2 % and 0.5 % relative SE)
    assert abs(bright["lifetime_ns"] - 125.0) < 0.04 * 125.0
    assert abs(dim["lifetime_ns"] - 5.0) < 0.1 * 5.0
    # change points in seconds since macrotime 0: inside the recording, increasing
    cps = np.array(lv["change_points_s"])
    assert np.all(np.diff(cps) > 0) and 0 < cps[0] and cps[-1] < 30.0
    assert "levels" not in analyze_file(path)  # only when asked for


def test_analyze_file_rejects_an_uncalibrated_confidence(tmp_path):
    from qd_bluesky.analysis import analyze_file

    with pytest.raises(ValueError, match="confidence must be one of"):
        analyze_file(tmp_path / "never-read.h5", levels=True, confidence=0.8)
