"""Photon analysis: readers, streaming numba kernels, estimators and fits.

Pure numpy/numba/scipy/h5py: nothing here knows about bluesky or EPICS.
"""

from ._accumulators import DecayHistogram, IntensityTrace
from ._analyze import analyze_file
from ._blinking import power_law_summary
from ._changepoints import ChangePoints, find_change_points
from ._dwell import (
    Blinking,
    PowerLawFit,
    SegmentBlinking,
    blinking_statistics,
    dwell_times,
    fit_power_law,
    segment_blinking,
)
from ._errors import AnalysisError, PhotonFileError, QdBlueskyError
from ._files import PhotonFileWarning
from ._fit import DecayFit, DecayFits, fit_decay, fit_decay_models
from ._flid import Flid, FlidResult, flid_lifetimes
from ._g2 import G2Pulsed, G2Result
from ._io import read_photons
from ._irf import estimate_decay_start, gaussian_irf, resample_irf
from ._levels import Levels, find_levels, group_levels, grouped_levels, level_histograms
from ._photon_hdf5 import (
    PhotonHdf5Reader,
    PhotonHdf5Writer,
    Validation,
    read_photon_hdf5,
    validate_photon_file,
    write_photon_hdf5,
)
from ._photons import PhotonTable
from ._picoquant import read_picoquant_legacy
from ._pipeline import (
    DEFAULT_CHANNELS,
    Binned,
    FitResults,
    FlidCalibration,
    PhotonAnalysis,
    PhotonSettings,
    StreamUnits,
    StretchAccumulator,
    add_photons,
    fit_accumulated,
    flid_accumulator,
    per_bin_arrays,
    trace_accumulator,
)
from ._ptu import read_ptu
from ._scaling import (
    GammaRatio,
    ScalingModel,
    decay_rate_ratio,
    gamma_ratio_from_flid,
    gamma_ratio_from_pairs,
    quantum_yield,
)
from ._spc import read_spc

__all__ = [
    "AnalysisError",
    "PhotonFileError",
    # readers and writers
    "PhotonFileWarning",
    "PhotonHdf5Reader",
    "PhotonHdf5Writer",
    "read_photon_hdf5",
    "validate_photon_file",
    "Validation",
    "read_photons",
    "read_picoquant_legacy",
    "read_ptu",
    "read_spc",
    "write_photon_hdf5",
    # streaming kernels and accumulators
    "DecayHistogram",
    "Flid",
    "FlidResult",
    "G2Pulsed",
    "G2Result",
    "Binned",
    "IntensityTrace",
    "StretchAccumulator",
    "add_photons",
    "flid_accumulator",
    "flid_lifetimes",
    "per_bin_arrays",
    "trace_accumulator",
    # fits and models
    "DecayFit",
    "DecayFits",
    "FitResults",
    "FlidCalibration",
    "GammaRatio",
    "ScalingModel",
    "decay_rate_ratio",
    "estimate_decay_start",
    "fit_accumulated",
    "fit_decay",
    "fit_decay_models",
    "gamma_ratio_from_flid",
    "gamma_ratio_from_pairs",
    "gaussian_irf",
    "quantum_yield",
    "resample_irf",
    "PhotonTable",
    "QdBlueskyError",
    # blinking: change points, levels, dwells
    "Blinking",
    "ChangePoints",
    "Levels",
    "PowerLawFit",
    "SegmentBlinking",
    "blinking_statistics",
    "dwell_times",
    "find_change_points",
    "find_levels",
    "fit_power_law",
    "group_levels",
    "grouped_levels",
    "level_histograms",
    "segment_blinking",
    "power_law_summary",
    # whole-file analysis
    "DEFAULT_CHANNELS",
    "PhotonAnalysis",
    "PhotonSettings",
    "StreamUnits",
    "analyze_file",
]
