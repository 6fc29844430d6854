"""Bad arguments fail at the call, before a generator exists: no message, no run, no IOC."""

import numpy as np
import pytest

from qd_bluesky.devices import UnsafeBiasError
from qd_bluesky.plans import (
    RasterMap,
    bias_cycling,
    bias_steps,
    cv_scan,
    find_dot,
    g2_measurement,
    locate_dot,
    raster_scan,
    set_bias,
)


def _cases():
    """(id, plan factory(inst), expected error, message pattern)."""
    unsafe = UnsafeBiasError
    return [
        (
            "bias_steps-unsafe-bias",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0, -2.5], 1.0),
            unsafe,
            r"^bias_steps: pot: biases\[1\] -2\.500 V is outside the safe window "
            r"\[-2\.000, \+1\.000\] V; nothing was sent",
        ),
        (
            "bias_steps-negative-dwell",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0], -1.0),
            ValueError,
            r"^bias_steps: dwell must be > 0 s, not -1$",
        ),
        (
            "bias_steps-zero-dwell",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0], 0),
            ValueError,
            r"^bias_steps: dwell must be > 0 s, not 0$",
        ),
        (
            "bias_steps-dwells-per-bias-mismatch",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0, -1.0], [60.0]),
            ValueError,
            r"^bias_steps: dwell has 1 values for 2 biases: give one number, or one dwell",
        ),
        (
            "bias_steps-dwells-per-bias-negative",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0, -1.0], [60.0, -1]),
            ValueError,
            r"^bias_steps: dwell\[1\] must be > 0 s, not -1$",
        ),
        (
            "bias_steps-no-biases",
            lambda i: bias_steps(i.tcspc, i.pot, [], 1.0),
            ValueError,
            r"^bias_steps: biases is empty",
        ),
        (
            "bias_steps-nan-bias",
            lambda i: bias_steps(i.tcspc, i.pot, [float("nan")], 1.0),
            ValueError,
            r"^bias_steps: biases\[0\] must be finite",
        ),
        (
            "bias_steps-swapped-devices",
            lambda i: bias_steps(i.pot, i.tcspc, [0.0], 1.0),
            ValueError,
            r"^bias_steps: tcspc must be the TCSPC card .*; pot has no kickoff",
        ),
        (
            "bias_steps-reads-rates-twice",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0], 1.0, readables=[i.tcspc.rates]),
            ValueError,
            r"^bias_steps: readables\[0\] \(tcspc_rates\) is read by the plan already",
        ),
        (
            "bias_steps-md-qd-reserved",
            lambda i: bias_steps(i.tcspc, i.pot, [0.0], 1.0, md={"qd": 1}),
            ValueError,
            r"^bias_steps: md\['qd'\] is reserved",
        ),
        (
            "cv_scan-zero-cycles",
            lambda i: cv_scan(i.tcspc, i.pot, 0, -1, 0, 0.2, 0),
            ValueError,
            r"^cv_scan: cycles must be a whole number >= 1, not 0$",
        ),
        (
            "cv_scan-fractional-cycles",
            lambda i: cv_scan(i.tcspc, i.pot, 0, -1, 0, 0.2, 1.5),
            ValueError,
            r"^cv_scan: cycles must be a whole number >= 1, not 1\.5$",
        ),
        (
            "cv_scan-zero-rate",
            lambda i: cv_scan(i.tcspc, i.pot, 0, -1, 0, 0.0, 1),
            ValueError,
            r"^cv_scan: rate must be > 0 V/s, not 0$",
        ),
        (
            "cv_scan-unsafe-vertex",
            lambda i: cv_scan(i.tcspc, i.pot, 0, -3, 0, 0.2, 1),
            unsafe,
            r"^cv_scan: pot: vertex -3\.000 V is outside the safe window",
        ),
        (
            "cv_scan-flat-waveform",
            lambda i: cv_scan(i.tcspc, i.pot, -0.5, -0.5, -0.5, 0.2, 1),
            ValueError,
            r"^cv_scan: start, vertex and end are all -0\.5 V: nothing to sweep",
        ),
        (
            "bias_cycling-zero-cycles",
            lambda i: bias_cycling(i.tcspc, i.pot, 0),
            ValueError,
            r"^bias_cycling: cycles must be a whole number >= 1, not 0$",
        ),
        (
            "bias_cycling-unsafe-end",
            lambda i: bias_cycling(i.tcspc, i.pot, 3, end=1.5),
            unsafe,
            r"^bias_cycling: pot: end \+1\.500 V is outside the safe window",
        ),
        (
            "g2-bias-without-potentiostat",
            lambda i: g2_measurement(i.tcspc, 1.0, bias=-1.0),
            ValueError,
            r"^g2_measurement: bias=-1\.0 needs a potentiostat",
        ),
        (
            "g2-zero-duration",
            lambda i: g2_measurement(i.tcspc, 0.0),
            ValueError,
            r"^g2_measurement: duration must be > 0 s, not 0$",
        ),
        (
            "set_bias-unsafe",
            lambda i: set_bias(i.pot, 1.2),
            unsafe,
            r"^set_bias: pot: bias \+1\.200 V is outside the safe window",
        ),
        (
            "raster-zero-step",
            lambda i: raster_scan(i.stage, i.tcspc, x_range=(0, 1), y_range=(0, 1), step=0),
            ValueError,
            r"^raster_scan: step must be > 0 um, not 0$",
        ),
        (
            "raster-reversed-range",
            lambda i: raster_scan(i.stage, i.tcspc, x_range=(1, 0), y_range=(0, 1), step=0.1),
            ValueError,
            r"^raster_scan: x_range must be increasing",
        ),
        (
            "raster-outside-the-travel",
            lambda i: raster_scan(i.stage, i.tcspc, x_range=(0, 1), y_range=(90, 110), step=1),
            ValueError,
            r"^raster_scan: y_range: stage_y: 110 um is outside the soft limits \[-100, 100\]",
        ),
        (
            "raster-step-larger-than-range",
            lambda i: raster_scan(i.stage, i.tcspc, x_range=(0, 0.5), y_range=(0, 1), step=0.8),
            ValueError,
            r"^raster_scan: step 0\.8 um is larger than x_range",
        ),
        (
            "raster-too-many-points",
            lambda i: find_dot(i.stage, i.tcspc, x_range=(-50, 50), y_range=(-50, 50), step=0.5),
            ValueError,
            r"^find_dot: 201 x 201 = 40401 raster points is more than 10000",
        ),
        (
            "raster-not-a-pair",
            lambda i: find_dot(i.stage, i.tcspc, x_range=3.0, y_range=(0, 1), step=0.5),
            ValueError,
            r"^find_dot: x_range must be \(start, stop\) in um, not 3\.0$",
        ),
    ]


CASES = _cases()


@pytest.mark.parametrize(
    ("factory", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_arguments_fail_at_the_call(inst, factory, error, pattern):
    # The call raises: not a single message (a read, a move, an open_run) can be yielded.
    with pytest.raises(error, match=pattern):
        factory(inst)


# -- locate_dot (pure) -------------------------------------------------------------------------


def _gaussian_map(x0, y0, *, peak=3e4, background=250.0, sigma=0.1, step=0.1, n=7, seed=0):
    """A raster of a Gaussian spot with Poisson counts in 0.5 s gates (the rate meter)."""
    rng = np.random.default_rng(seed)
    xs = np.arange(n) * step
    ys = np.arange(n) * step
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    rate = background + peak * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    return RasterMap(xs, ys, rng.poisson(rate * 0.5) / 0.5)


def test_locate_dot_refines_between_pixels():
    # A dot 0.3 step off the nearest grid point in x and y. For a Gaussian of sigma = step
    # sampled at -1, 0, +1 step, the centroid of that window is 0.163 step from the centre
    # pixel for a true offset of 0.3 step: 0.137 step short per axis, 0.194 step in all;
    # Poisson noise (15 000 counts at the peak) adds < 0.01 step. Allow 0.25 step.
    truth = (0.33, 0.27)
    raster = _gaussian_map(*truth)
    x, y = locate_dot(raster)
    error = np.hypot(x - truth[0], y - truth[1])
    assert error < 0.25 * 0.1
    # Without refinement: the brightest pixel, the grid point nearest the dot (0.042 um off).
    assert locate_dot(raster, refine=False) == pytest.approx((0.3, 0.3))
    assert error < np.hypot(0.03, 0.03)


def test_locate_dot_finds_nothing_in_background():
    raster = _gaussian_map(5.0, 5.0)  # the spot is far outside the raster
    assert locate_dot(raster) is None
    nothing = RasterMap(np.arange(3.0), np.arange(2.0), np.full((2, 3), np.nan))
    assert locate_dot(nothing) is None
