"""Photon-HDF5 (v0.5) reading and writing with h5py, including SWMR streaming.

``_spec`` the layout's names and TITLE texts, ``_layout`` the creation of its nodes,
``_writer`` the streaming (SWMR) writer, ``_write_file`` the one-shot writer of a table,
``_reader`` the reader, ``_swmr`` the read-only open of a file a writer may hold, and
``_markers`` the ``/user`` schemas shared by the TCSPC IOC and its readers (bias markers, FIFO
overruns), ``_validate`` the check of a file against docs/photon-file.md.
"""

from ._markers import (
    BIAS_MARKER_COLUMNS,
    BIAS_MARKER_GROUP,
    BIAS_MARKER_PATH,
    BIAS_MARKER_REQUIRED,
    CARD_MARKER_COLUMNS,
    CARD_MARKER_GROUP,
    CARD_MARKER_PATH,
    OVERFLOW_COLUMNS,
    OVERFLOW_GROUP,
    OVERFLOW_PATH,
)
from ._reader import PhotonHdf5Reader, read_photon_hdf5
from ._spec import FORMAT_NAME, FORMAT_URL, FORMAT_VERSION
from ._swmr import SharedPhotonFile, open_for_reading, open_shared
from ._validate import Validation, validate_photon_file
from ._write_file import write_photon_hdf5
from ._writer import PhotonHdf5Writer

__all__ = [
    "BIAS_MARKER_COLUMNS",
    "BIAS_MARKER_GROUP",
    "BIAS_MARKER_PATH",
    "CARD_MARKER_COLUMNS",
    "CARD_MARKER_GROUP",
    "CARD_MARKER_PATH",
    "BIAS_MARKER_REQUIRED",
    "FORMAT_NAME",
    "FORMAT_URL",
    "FORMAT_VERSION",
    "OVERFLOW_COLUMNS",
    "OVERFLOW_GROUP",
    "OVERFLOW_PATH",
    "PhotonHdf5Reader",
    "PhotonHdf5Writer",
    "SharedPhotonFile",
    "Validation",
    "open_for_reading",
    "open_shared",
    "read_photon_hdf5",
    "validate_photon_file",
    "write_photon_hdf5",
]
