"""Fixtures of the live-analyzer tests: simulated photons, and one real catalog for the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers in rawrun.py

from rawrun import Photons, simulate_steps  # noqa: E402

from qd_bluesky.callbacks import AnalysisSettings  # noqa: E402


@pytest.fixture(scope="session")
def steps_photons() -> Photons:
    """qd1-markov held 3 s at 0 V, then 3 s at -2 V (about 100 000 photons).

    The Markov dot: its X- holds 17 % of 0 V, so 3 s hold the FLID's X0 and X- clusters that
    the tolerances of test_live.py were derived for (the power-law qd1 needs ~45 s there).
    """
    return simulate_steps([0.0, -2.0], 3.0, seed=7, preset="qd1-markov")


@pytest.fixture(scope="session")
def settings() -> AnalysisSettings:
    """Small calibration and 1 s windows, so that the tests cross both boundaries."""
    return AnalysisSettings(calibration_photons=20_000, window_s=1.0)


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    """A real embedded Tiled catalog (its creation costs seconds: one per session)."""
    from qd_bluesky.catalog import open_catalog

    with open_catalog(tmp_path_factory.mktemp("qd-data")) as cat:
        yield cat
