"""The Sample: a field of dots on ITO, driven as the simulated IOCs drive it (sim_contract)."""

from __future__ import annotations

import numpy as np
import pytest

from qd_bluesky.sim import (
    NO_DOT_STATE,
    PRESETS,
    SOURCE_BACKGROUND,
    SOURCE_DARK,
    Detection,
    Sample,
    concatenate_chunks,
    steady_state,
)

DET = Detection()
FLAT_CPS = DET.background_cps + 2 * DET.dark_cps


@pytest.fixture(scope="module")
def sample() -> Sample:
    return Sample(preset="qd1", seed=0)


def test_contract_attributes(sample: Sample) -> None:
    x, y, z = sample.home_um
    half = sample.field_size_um
    assert abs(x) <= half and abs(y) <= half and z == 0.0
    assert np.all(np.abs(sample.dot_positions_um[:, :2]) <= half)
    assert sample.microtime_unit_s == 25e-12
    assert sample.microtime_bins == 16000 and sample.rep_rate_hz == 2.5e6
    assert sample.dots[0] == PRESETS["qd1"]
    assert not sample.cell.damaged
    # The cell current: C dV/dt of the 4 uF double layer, far from the faradaic onsets (-1.9 V,
    # +1.0 V; 0.5 uA at the onset, e-fold per 0.1 V: < 1 nA at -1.0 V), plus 2 nA white noise.
    # Tolerance: 5 sd of the noise plus the residual faradaic current.
    noise = sample.cell.params.noise_a
    assert noise == 2e-9
    for rate in (0.2, -0.2, 0.0):
        i = sample.cell.current_a(-1.0, rate, 1.0)
        assert isinstance(i, float)
        assert i == pytest.approx(4e-6 * rate, abs=5 * noise + 1e-9)
    # at the cathodic onset: -0.5 uA at a static bias, and the sweep adds C dV/dt
    assert sample.cell.current_a(-1.9, 0.0, 2.0) == pytest.approx(-0.5e-6, abs=5 * noise)
    assert sample.cell.current_a(-1.9, -0.1, 2.0) == pytest.approx(-0.9e-6, abs=5 * noise)
    # noise: successive readings scatter by 2 nA (sd of 400 readings: 3.5 %; 5 of those)
    readings = [sample.cell.current_a(0.0, 0.0, 3.0) for _ in range(400)]
    assert np.std(readings, ddof=1) == pytest.approx(noise, rel=5 * 0.035)


def test_parked_on_the_preset_dot() -> None:
    """At start the stage is on the qd1 dot: the rate is the dot's (steady state + flat
    background), Poisson 4 sigma over 10 s; the photons come from dot 0, background, dark."""
    s = Sample("qd1", seed=1)
    c = concatenate_chunks([s.advance(t) for t in np.arange(0.5, 10.01, 0.5)])
    expected = steady_state("qd1", 0.0).rate_cps
    assert s.expected_rate_cps(*s.home_um) == pytest.approx(expected, rel=1e-9)
    # 0 V blinking (dwell ~0.5 s) makes 10 s averages scatter by ~5 %: that, not Poisson,
    # sets the tolerance (15 %, 3 sigma).
    assert len(c) / 10.0 == pytest.approx(expected, rel=0.15)
    assert set(np.unique(c.source).tolist()) <= {0, SOURCE_BACKGROUND, SOURCE_DARK}
    assert np.all(c.charge_state[c.source < 0] == NO_DOT_STATE)


def test_off_dot_background_only() -> None:
    """Between dots only the ITO/solvent background and dark counts: 250 c/s (Poisson 4 sigma)."""
    s = Sample("qd1", seed=2)
    pos = s.dot_positions_um
    # A point at least 1 um from every dot.
    grid = np.array([(x, y) for x in np.linspace(-9, 9, 37) for y in np.linspace(-9, 9, 37)])
    d = np.min(np.hypot(*(grid[:, None, :] - pos[None, :, :2]).transpose(2, 0, 1)), axis=1)
    x, y = grid[np.argmax(d)]
    assert d.max() > 1.0
    assert s.expected_rate_cps(x, y, 0.0) == pytest.approx(FLAT_CPS)
    s.set_position(x, y, 0.0, 0.0)
    c = s.advance(20.0)
    assert abs(len(c) - FLAT_CPS * 20) < 4 * np.sqrt(FLAT_CPS * 20)
    assert np.all(c.source < 0)


def test_raster_scan_finds_the_dots(sample: Sample) -> None:
    """A coarse raster of expected rates (no photons) peaks on the dots: every pixel brighter
    than 10x background lies within 0.3 um (3 PSF sigma) of a dot."""
    xs = np.arange(-10.0, 10.0, 0.1)
    img = np.array([[sample.expected_rate_cps(x, y, 0.0) for x in xs] for y in xs])
    pos = sample.dot_positions_um
    yy, xx = np.nonzero(img > 10 * FLAT_CPS)
    dist = np.min(np.hypot(xs[xx][:, None] - pos[:, 0], xs[yy][:, None] - pos[:, 1]), axis=1)
    assert len(dist) > 0 and dist.max() < 0.3


def test_moving_between_dots_changes_the_source() -> None:
    s = Sample("qd1", seed=3)
    other = s.dot_positions_um[1]
    s.set_position(other[0], other[1], 0.0, 1.0)
    s.advance(1.0)
    c = s.advance(3.0)
    assert set(np.unique(c.source[c.source >= 0]).tolist()) == {1}


def test_field_population() -> None:
    """~30 % of the dots charge beyond X2- at -2 V; the rest show no lifetime-intensity dip;
    some brighten under negative bias. 60 dots: binomial sigma = sqrt(0.3 * 0.7 / 59) = 0.06,
    asserted within 3 sigma."""
    s = Sample("qd1", seed=4, n_dots=60, field_size_um=25.0)
    field = s.dots[1:]
    states = [steady_state(p, -2.0) for p in field]
    charging = np.array([st.mean_charge < -2 for st in states])
    assert abs(charging.mean() - 0.3) < 3 * 0.06
    for p, st, q in zip(field, states, charging, strict=True):
        if not q:
            # No dip: still X0-like lifetime and intensity at -2 V.
            assert st.mean_charge > -0.5
            assert st.mean_lifetime_s > 0.5 * p.tau_x0_s
    brighter = [p.brightness(-1.5) / p.brightness(0.0) for p in field]
    assert 0 < sum(b > 1.5 for b in brighter) < len(field)


def test_laser_off_leaves_dark_counts() -> None:
    s = Sample("qd1", seed=5)
    s.set_laser(emission=False, power_w=30e-9, rep_rate_hz=2.5e6, t_s=0.0)
    c = s.advance(10.0)
    assert s.expected_rate_cps(*s.home_um) == pytest.approx(2 * DET.dark_cps)
    assert np.all(c.source == SOURCE_DARK)


def test_controls_at_the_same_time_and_in_the_past() -> None:
    """Several controls stamped before the last advance (clock jitter) apply at once, in call
    order; advancing backwards is refused."""
    s = Sample("qd1", seed=6)
    s.advance(1.0)
    s.set_laser(power_w=60e-9, t_s=0.999)
    s.set_laser(rep_rate_hz=5e6, t_s=0.999)
    assert s.laser.power_w == 60e-9 and s.laser.rep_rate_hz == 5e6
    c = s.advance(2.0)
    assert c.rep_rate_hz == 5e6 and c.microtime_bins == 8000
    with pytest.raises(ValueError, match="needs a time >= the last one"):
        s.advance(1.5)


def test_sample_chunking_does_not_change_the_photons() -> None:
    """With stage moves between dots, bias and laser changes: random chunk boundaries give the
    photons of one call per control."""

    def run(cuts: list[float]):
        s = Sample("qd1", seed=7)
        home, other = s.home_um, s.dot_positions_um[1]
        ops = [
            (0.3, lambda: s.set_position(other[0], other[1], 0.0, 0.3)),
            (0.7, lambda: s.set_bias(-1.6, 0.7)),
            (1.1, lambda: s.set_position(*home, 1.1)),
            (1.4, lambda: s.set_laser(power_w=90e-9, t_s=1.4)),
        ]
        out = []
        for cut in cuts:
            while ops and ops[0][0] <= cut:
                ops.pop(0)[1]()
            out.append(s.advance(cut))
        return concatenate_chunks(out)

    one = run([0.3, 0.7, 1.1, 1.4, 2.0])
    rng = np.random.default_rng(3)
    many = run(sorted(set(rng.uniform(0, 2.0, 30).round(7)) | {2.0}))
    assert len(one) > 20_000
    for k in ("macrotime", "microtime", "channel", "charge_state", "source"):
        assert np.array_equal(getattr(one, k), getattr(many, k))
    assert set(np.unique(one.source[one.source >= 0]).tolist()) == {0, 1}
