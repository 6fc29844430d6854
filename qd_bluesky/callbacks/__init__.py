"""Live photon analysis of raw qd runs, the derived runs it writes, and their replay.

Example::

    from qd_bluesky.callbacks import replay, subscribe_live_analysis
    from qd_bluesky.catalog import open_catalog

    catalog = open_catalog()
    analyzer = subscribe_live_analysis(RE, catalog.writer)  # raw and derived runs -> catalog
    (uid,) = RE(bias_steps(...))
    analyzer.wait(10)                                       # the derived run is complete
    replay(catalog, uid).matches_live                       # True
"""

from ._engine import AnalysisSettings, Calibration, RunAnalysis
from ._live import (
    LiveAnalyzer,
    RunOutcome,
    SerializedCallback,
    photon_file_path,
    subscribe_live_analysis,
)
from ._plots import LivePhotonPlots
from ._probe import PROBE_FIELDS, PhotonProbe
from ._reanalyze import ReanalysisResult, parse_since, reanalyze, select_raw_runs
from ._replay import ReplayResult, compare_derived_runs, find_live_derived, replay
from ._streams import DERIVED_STREAMS, STREAM_FIELDS

__all__ = [
    "DERIVED_STREAMS",
    "AnalysisSettings",
    "Calibration",
    "LiveAnalyzer",
    "LivePhotonPlots",
    "ReanalysisResult",
    "PROBE_FIELDS",
    "PhotonProbe",
    "ReplayResult",
    "RunAnalysis",
    "RunOutcome",
    "STREAM_FIELDS",
    "SerializedCallback",
    "compare_derived_runs",
    "find_live_derived",
    "parse_since",
    "photon_file_path",
    "reanalyze",
    "replay",
    "select_raw_runs",
    "subscribe_live_analysis",
]
