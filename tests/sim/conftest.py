"""Shared simulations and measurements for the simulator tests.

Measurements go through the analysis engine (``qd_bluesky.analysis``) the way the paper analyses
its data: decay histograms and Poisson maximum-likelihood fits, 20 ms FLID, pulsed g2. The
expensive simulations are session fixtures, shared by the test files.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from qd_bluesky.analysis import (
    DecayHistogram,
    Flid,
    FlidResult,
    G2Pulsed,
    G2Result,
    IntensityTrace,
    estimate_decay_start,
    fit_decay,
)
from qd_bluesky.sim import Detection, PhotonChunk, SingleDot, concatenate_chunks

#: Flat count rate that is not the dot: background + dark counts of both APDs (what an off-dot
#: measurement gives; the FLID estimator and the intensity model take it as known).
DETECTION = Detection()
BACKGROUND_CPS = DETECTION.background_cps + 2 * DETECTION.dark_cps
IRF_FWHM_S = DETECTION.irf_fwhm_s


def simulate(
    preset: str, bias_v: float, duration_s: float, seed: int, chunk_s: float = 5.0
) -> PhotonChunk:
    """Photons of one dot at a static bias, generated chunk by chunk as an IOC would."""
    dot = SingleDot(preset, seed=seed, bias_v=bias_v)
    ends = np.append(np.arange(chunk_s, duration_s, chunk_s), duration_s)
    return concatenate_chunks([dot.advance(float(t)) for t in ends])


@dataclass
class Measured:
    """One simulated measurement and the analyses of it."""

    chunk: PhotonChunk

    @property
    def period_s(self) -> float:
        return 1.0 / self.chunk.rep_rate_hz

    @property
    def duration_s(self) -> float:
        return self.chunk.t_stop_s - self.chunk.t_start_s

    @property
    def rate_cps(self) -> float:
        return len(self.chunk) / self.duration_s

    def decay(self, mask: np.ndarray | None = None) -> np.ndarray:
        c = self.chunk
        h = DecayHistogram(c.microtime_bins)
        sel = slice(None) if mask is None else mask
        h.add(c.microtime[sel], c.channel[sel])
        return h.summed

    def fit(self, mask: np.ndarray | None = None, model: str = "mono"):
        return fit_decay(
            self.decay(mask),
            self.chunk.microtime_unit_s,
            period_s=self.period_s,
            model=model,
            irf_fwhm_s=IRF_FWHM_S,
        )

    def windows(self, charge: int, dot: int = 0) -> tuple[np.ndarray, float]:
        """Photons (of any source) recorded while the dot was in ``charge``, and that time.

        The ground-truth trajectory plays the part of the paper's hand-picked time windows.
        """
        c = self.chunk
        t_jump, q_jump = c.transitions.get(dot, (np.empty(0), np.empty(0, np.int8)))
        starts = np.concatenate(([c.t_start_s], t_jump))
        states = np.concatenate(([c.charge_at_start[dot]], q_jump))
        ends = np.append(starts[1:], c.t_stop_s)
        t_photon = c.macrotime / c.rep_rate_hz
        inside = states[np.searchsorted(starts, t_photon, side="right") - 1] == charge
        return inside, float(np.sum((ends - starts)[states == charge]))

    def flid(self, bin_s: float = 0.02) -> FlidResult:
        c = self.chunk
        f = Flid(bin_s, self.period_s, c.microtime_unit_s, c.microtime_bins)
        f.add(c.macrotime, c.microtime)
        start = estimate_decay_start(self.decay(), c.microtime_unit_s)
        return f.result(
            decay_start_s=start,
            background_cps=BACKGROUND_CPS,
            period_s=self.period_s,
            irf_fwhm_s=IRF_FWHM_S,
        )

    def g2(self) -> G2Result:
        c = self.chunk
        g = G2Pulsed(0, 1, macrotime_unit_s=self.period_s, microtime_unit_s=c.microtime_unit_s)
        g.add(c.macrotime, c.microtime, c.channel)
        return g.result()

    def trace(self, bin_s: float = 1e-3) -> np.ndarray:
        """Counts per bin, both APDs (the paper's 1 ms intensity trace)."""
        c = self.chunk
        t = IntensityTrace(bin_s, self.period_s)
        t.add(c.macrotime, c.channel)
        return t.total


def measure(preset: str, bias_v: float, duration_s: float, seed: int) -> Measured:
    return Measured(simulate(preset, bias_v, duration_s, seed))


@pytest.fixture(scope="session")
def lab() -> SimpleNamespace:
    """The helpers of this file, for test modules (conftest is not importable by name)."""
    return SimpleNamespace(
        simulate=simulate,
        measure=measure,
        Measured=Measured,
        BACKGROUND_CPS=BACKGROUND_CPS,
        IRF_FWHM_S=IRF_FWHM_S,
        DETECTION=DETECTION,
    )


# Static-bias measurements shared by several tests (seeded; durations from the statistics each
# test needs, see the comments there).
@pytest.fixture(scope="session")
def qd1_0v() -> Measured:
    return measure("qd1", 0.0, 30.0, seed=11)


@pytest.fixture(scope="session")
def qd1_m2v() -> Measured:
    return measure("qd1", -2.0, 20.0, seed=12)


@pytest.fixture(scope="session")
def qd2_0v() -> Measured:
    return measure("qd2", 0.0, 30.0, seed=21)


@pytest.fixture(scope="session")
def qd2_m2v() -> Measured:
    return measure("qd2", -2.0, 20.0, seed=22)
