"""Kernels of the live analyzer's background work that must not hold the GIL.

The live analyzer runs the levels in a background thread beside the time-critical trace and
FLID (``qd_bluesky.callbacks._background``); a numpy pass there holds the GIL and stalls the
reader. These give the same integers as their numpy counterparts.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ._flid import COARSE_BIN_S


@njit(cache=True, nogil=True)
def _level_histograms(photons, microtime, factor, out):
    n_coarse = out.shape[1]
    pos = 0
    for level in range(photons.shape[0]):
        for _ in range(photons[level]):
            c = np.int64(microtime[pos]) // factor
            if c < n_coarse:
                out[level, c] += 1
            pos += 1


def level_histograms_nogil(
    photons: NDArray[np.int64], microtime: NDArray, microtime_unit_s: float, period_s: float
) -> tuple[NDArray[np.uint32], float]:
    """:func:`~qd_bluesky.analysis.level_histograms` in one pass that releases the GIL.

    Level i holds the next ``photons[i]`` microtimes; returns the coarse microtime histogram of
    each level (coarse bins beyond the period dropped) and the coarse bins' width.
    """
    factor = max(1, round(COARSE_BIN_S / microtime_unit_s))
    n_coarse = math.ceil(period_s / (factor * microtime_unit_s) - 1e-9)
    photons = np.ascontiguousarray(photons, dtype=np.int64)
    if int(photons.sum()) > len(microtime):
        raise ValueError(f"{int(photons.sum())} photons in the levels, {len(microtime)} given")
    out = np.zeros((len(photons), n_coarse), dtype=np.uint32)
    _level_histograms(photons, np.ascontiguousarray(microtime), factor, out)
    return out, factor * microtime_unit_s
