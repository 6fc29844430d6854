"""Photon analysis: readers, streaming numba kernels, estimators and fits.

Pure numpy/numba/scipy/h5py: nothing here knows about bluesky or EPICS.
"""

from ._errors import AnalysisError, PhotonFileError, QdBlueskyError
from ._photons import PhotonTable

# --- readers and writers (_ptu, _photon_hdf5, _io) ---
from ._io import PhotonFileWarning, read_photons
from ._photon_hdf5 import (
    PhotonHdf5Reader,
    PhotonHdf5Writer,
    read_photon_hdf5,
    write_photon_hdf5,
)
from ._ptu import read_ptu

# --- streaming kernels and accumulators (_kernels, _accumulators, _g2, _flid) ---
from ._accumulators import DecayHistogram, IntensityTrace
from ._flid import Flid, FlidResult, flid_lifetimes
from ._g2 import G2Pulsed, G2Result

# --- fits and models (_fit, _irf, _scaling) ---
from ._fit import DecayFit, fit_decay
from ._irf import estimate_decay_start, gaussian_irf, resample_irf
from ._scaling import (
    GammaRatio,
    ScalingModel,
    decay_rate_ratio,
    gamma_ratio_from_flid,
    gamma_ratio_from_pairs,
    quantum_yield,
)

# --- whole-file analysis (_analyze) ---
from ._analyze import analyze_file
from ._pipeline import PhotonAnalysis, StreamUnits

__all__ = [
    "AnalysisError",
    "PhotonFileError",
    # readers and writers
    "PhotonFileWarning",
    "PhotonHdf5Reader",
    "PhotonHdf5Writer",
    "read_photon_hdf5",
    "read_photons",
    "read_ptu",
    "write_photon_hdf5",
    # streaming kernels and accumulators
    "DecayHistogram",
    "Flid",
    "FlidResult",
    "G2Pulsed",
    "G2Result",
    "IntensityTrace",
    "flid_lifetimes",
    # fits and models
    "DecayFit",
    "GammaRatio",
    "ScalingModel",
    "decay_rate_ratio",
    "estimate_decay_start",
    "fit_decay",
    "gamma_ratio_from_flid",
    "gamma_ratio_from_pairs",
    "gaussian_irf",
    "quantum_yield",
    "resample_irf",
    "PhotonTable",
    "QdBlueskyError",
    # whole-file analysis
    "PhotonAnalysis",
    "StreamUnits",
    "analyze_file",
]
