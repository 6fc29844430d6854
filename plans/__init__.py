"""Bluesky plans of the single-dot experiment, and their plan stubs.

Plans open one run each. They check their plain arguments when called, before a generator
exists, and read device state (the IOC's bias limits, the card's mode, the bias to return to)
only through messages (``bps.rd``), so their messages can be listed without an IOC
(``bluesky.simulators.RunEngineSimulator``) and suspenders see every read::

    from qd_bluesky.plans import bias_steps, cv_scan

    RE(bias_steps(tcspc, pot, [0, -1.4, -1.7, -1.8, -2.0], dwell=60))
    RE(cv_scan(tcspc, pot, 0, -2, 0, rate=0.2, cycles=1))

Runs that record photons carry a ``qd`` block in their start document (how to map each
photon to its bias; see :func:`qd_block`), a ``primary`` stream of segment markers and a
``photons`` stream announced by the TCSPC card.
"""

from ._adaptive import ADAPTIVE_STREAM, adaptive_bias_map
from ._bias import bias_steps
from ._classify import CLASSES, Verdict, classify_cv
from ._cv import bias_cycling, cv_scan
from ._g2 import g2_measurement
from ._md import MARKER_STREAM, PHOTON_STREAM, QD_SCHEMA, qd_block
from ._stage import DOT_STREAM, RasterMap, find_dot, locate_dot, raster_scan
from ._stubs import (
    acquire_photons,
    collect_until_done,
    finish_photons,
    mark_segment,
    run_cv,
    set_bias,
    start_photons,
    stop_cv,
)
from ._survey import (
    DOTS_STREAM,
    SURVEY_FIELDS,
    SURVEY_RUN_KEY,
    AnalysisResults,
    Spot,
    background_corrected_g2,
    find_dots,
    find_spots,
    survey,
)
from ._switching import bias_switching
from ._validate import MAX_RASTER_POINTS

__all__ = [
    "ADAPTIVE_STREAM",
    "CLASSES",
    "DOTS_STREAM",
    "SURVEY_FIELDS",
    "SURVEY_RUN_KEY",
    "AnalysisResults",
    "Spot",
    "Verdict",
    "background_corrected_g2",
    "classify_cv",
    "find_dots",
    "find_spots",
    "survey",
    "DOT_STREAM",
    "MARKER_STREAM",
    "MAX_RASTER_POINTS",
    "PHOTON_STREAM",
    "QD_SCHEMA",
    "RasterMap",
    "acquire_photons",
    "adaptive_bias_map",
    "bias_cycling",
    "bias_steps",
    "bias_switching",
    "collect_until_done",
    "cv_scan",
    "find_dot",
    "finish_photons",
    "g2_measurement",
    "locate_dot",
    "mark_segment",
    "qd_block",
    "raster_scan",
    "run_cv",
    "set_bias",
    "start_photons",
    "stop_cv",
]
