"""A physics simulator of charged single quantum dots under electrochemical bias.

Pure numpy/numba: no EPICS, no bluesky. The dots behave like those of Morozov et al. (presets
``qd1`` and ``qd2``); photons come out as T3 time tags (sync count, microtime, channel) of a
TimeHarp-like card behind two APDs. Biases are in volts against the Pt quasi-reference electrode
(+57 mV vs Ag/AgCl). See docs/physics.md for the model.

Typical use::

    from qd_bluesky.sim import SingleDot

    dot = SingleDot("qd1", seed=1, bias_v=-1.7)
    chunk = dot.advance(1.0)            # photons of the first second
    chunk.macrotime, chunk.microtime, chunk.channel
"""

from ._cell import (
    ITO_DAMAGE_BIAS_V,
    PHYSICAL_BIAS_LIMIT_V,
    SAFE_BIAS_HIGH_V,
    SAFE_BIAS_LOW_V,
    CellParameters,
    ElectrochemicalCell,
)
from ._charging import rate_matrix, stationary_distribution
from ._dot import (
    NO_DOT_STATE,
    PT_QRE_VS_AGAGCL_V,
    REFERENCE_POWER_W,
    REFERENCE_REP_RATE_HZ,
    DotParameters,
    StateTable,
    emission_probabilities,
)
from ._field import CLASS_FRACTIONS, CLUSTER_FRACTION, FieldSite, default_area_um, draw_field
from ._predict import SteadyState, steady_state
from ._presets import PRESETS, resolve_preset
from ._sample import Sample
from ._stream import (
    BIAS_RISE_TIME_S,
    SOURCE_BACKGROUND,
    SOURCE_DARK,
    Detection,
    LaserSettings,
    PhotonChunk,
    PhotonEngine,
    SingleDot,
    concatenate_chunks,
)
from ._switching import SwitchingWaveform
from ._warmup import warm_up
from ._waveform import CvWaveform

__all__ = [
    "warm_up",
    "BIAS_RISE_TIME_S",
    "CLASS_FRACTIONS",
    "CLUSTER_FRACTION",
    "FieldSite",
    "default_area_um",
    "draw_field",
    "ITO_DAMAGE_BIAS_V",
    "NO_DOT_STATE",
    "PHYSICAL_BIAS_LIMIT_V",
    "PRESETS",
    "PT_QRE_VS_AGAGCL_V",
    "REFERENCE_POWER_W",
    "REFERENCE_REP_RATE_HZ",
    "SAFE_BIAS_HIGH_V",
    "SAFE_BIAS_LOW_V",
    "SOURCE_BACKGROUND",
    "SOURCE_DARK",
    "CellParameters",
    "CvWaveform",
    "Detection",
    "DotParameters",
    "ElectrochemicalCell",
    "LaserSettings",
    "PhotonChunk",
    "PhotonEngine",
    "Sample",
    "SingleDot",
    "StateTable",
    "SteadyState",
    "SwitchingWaveform",
    "concatenate_chunks",
    "emission_probabilities",
    "rate_matrix",
    "resolve_preset",
    "stationary_distribution",
    "steady_state",
]
