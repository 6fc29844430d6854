"""The live analyzer's GIL-free kernels give the numpy versions' integers."""

from __future__ import annotations

import numpy as np
import pytest

from qd_bluesky.analysis import level_histograms
from qd_bluesky.analysis._live_kernels import level_histograms_nogil


@pytest.mark.parametrize(("unit_s", "period_s"), [(25e-12, 400e-9), (4e-12, 100e-9)])
def test_level_histograms_equal_numpy(unit_s, period_s):
    rng = np.random.default_rng(7)
    bins = int(period_s / unit_s) + 300  # some microtimes beyond the period: dropped
    photons = rng.integers(0, 400, 50).astype(np.int64)
    photons[[3, 17]] = 0  # empty levels
    micro = rng.integers(0, bins, int(photons.sum())).astype(np.uint16)
    want, want_bin = level_histograms(photons, micro, unit_s, period_s)
    got, got_bin = level_histograms_nogil(photons, micro, unit_s, period_s)
    assert got_bin == want_bin
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    # the microtimes beyond the period are the only ones missing
    assert got.sum() < len(micro)


def test_level_histograms_refuse_too_few_microtimes():
    with pytest.raises(ValueError, match="photons in the levels"):
        level_histograms_nogil(np.array([5, 5]), np.zeros(9, np.uint16), 25e-12, 400e-9)
