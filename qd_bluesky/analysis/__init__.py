"""Photon analysis: readers, streaming numba kernels, estimators and fits.

Pure numpy/numba/scipy/h5py: nothing here knows about bluesky or EPICS.
"""

from ._errors import AnalysisError, PhotonFileError, QdBlueskyError
from ._photons import PhotonTable

# --- readers and writers (_ptu, _photon_hdf5, _io) ---

# --- streaming kernels and accumulators (_kernels, _accumulators, _g2, _flid) ---

# --- fits and models (_fit, _irf, _scaling) ---

# --- whole-file analysis (_analyze) ---

__all__ = [
    "AnalysisError",
    "PhotonFileError",
    "PhotonTable",
    "QdBlueskyError",
]
