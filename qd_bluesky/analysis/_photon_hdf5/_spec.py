"""The Photon-HDF5 (v0.5) layout this package writes: names, TITLE texts, field lists.

Layout written (single spot, ``measurement_type="generic"``)::

    /photon_data/timestamps              int64   macrotime
    /photon_data/detectors               uint8   channel (pixel id)
    /photon_data/nanotimes               uint16  microtime (T3 only)
    /photon_data/timestamps_specs/timestamps_unit
    /photon_data/nanotimes_specs/{tcspc_unit, tcspc_num_bins, tcspc_range}
    /photon_data/measurement_specs/{measurement_type, laser_repetition_rate, detectors_specs/}
    /setup/..., /identity/..., /provenance/..., /sample/..., /description, /acquisition_duration
    /user/<group>/<name>                 free-form (simulator ground truth, bias markers)

Every spec field carries the TITLE attribute the spec prescribes, as the reference
validator (phconvert) checks it.
"""

from __future__ import annotations

FORMAT_NAME = "Photon-HDF5"
FORMAT_VERSION = "0.5"
FORMAT_URL = "http://photon-hdf5.org/"

# The spec's field descriptions, stored as each node's TITLE attribute.
TITLES: dict[str, str] = {
    "/": "A file format for photon-counting detector based single-molecule spectroscopy "
    "experiments.",
    "/acquisition_duration": "Measurement duration in seconds.",
    "/description": "A user-defined comment describing the data file.",
    "/format_name": "Name of the file format.",
    "/format_version": "Version for the Photon-HDF5 format.",
    "/identity": "Information about the Photon-HDF5 data file.",
    "/identity/creation_time": "Creation time of the current Photon-HDF5 file.",
    "/identity/filename": "Original file name of the current Photon-HDF5 file (i.e. file name "
    "at creation time).",
    "/identity/filename_full": "Original file name (with full path) of the current Photon-HDF5 "
    "file (i.e. full file name at creation time).",
    "/identity/format_name": "Name of the file format.",
    "/identity/format_url": "Official URL for the Photon-HDF5 format.",
    "/identity/format_version": "Version for the Photon-HDF5 format.",
    "/identity/software": "Name of the software used to create the current Photon-HDF5 file.",
    "/identity/software_version": "Version of the software used to create current the "
    "Photon-HDF5 file.",
    "/photon_data": "Group containing arrays of photon-data.",
    "/photon_data/timestamps": "Array of photon timestamps. Units specified in timestamps_units "
    "(defined in timestamps_specs/).",
    "/photon_data/detectors": "Array of pixel IDs for each timestamp.",
    "/photon_data/nanotimes": "TCSPC photon arrival time (nanotimes). Units and other "
    "specifications are in nanotimes_specs group.",
    "/photon_data/timestamps_specs": "Specifications for timestamps.",
    "/photon_data/timestamps_specs/timestamps_unit": "Value of 1-unit timestamp-increment in "
    "seconds.",
    "/photon_data/nanotimes_specs": "Group for nanotime-specific data.",
    "/photon_data/nanotimes_specs/tcspc_unit": "Value of 1-unit nanotime-increment in seconds "
    "(TCSPC bin size).",
    "/photon_data/nanotimes_specs/tcspc_num_bins": "Number of TCSPC bins.",
    "/photon_data/nanotimes_specs/tcspc_range": "TCSPC full-scale range in seconds.",
    "/photon_data/measurement_specs": "Metadata necessary for interpretation of the particular "
    "type of measurement.",
    "/photon_data/measurement_specs/measurement_type": "Name of the measurement the data "
    "represents.",
    "/photon_data/measurement_specs/laser_repetition_rate": "Repetition rate of the pulsed "
    "excitation laser (in Hertz).",
    "/photon_data/measurement_specs/detectors_specs": "Mapping between the pixel IDs and the "
    "detection channels.",
    "/photon_data/measurement_specs/detectors_specs/spectral_ch1": "Pixel IDs for the first "
    "spectral channel (i.e. donor in a 2-color smFRET measurement).",
    "/setup": "Information about the experimental setup.",
    "/setup/num_pixels": "Total number of detector pixels.",
    "/setup/num_spots": 'Number of excitation (or detection) "spots" in the sample.',
    "/setup/num_spectral_ch": "Number of distinct spectral bands which are acquired.",
    "/setup/num_polarization_ch": "Number of distinct polarization states which are acquired.",
    "/setup/num_split_ch": "Number of distinct detection channels detecting the same spectral "
    "band and polarization. This value is > 1 when using a non-polarizing beam splitter.",
    "/setup/modulated_excitation": "True (i.e. 1) if there is any form of excitation "
    "modulation of excitation wavelength (as in us-ALEX or PAX) or polarization. This field is "
    "also True for pulse-interleaved excitation (PIE) or ns-ALEX measurements.",
    "/setup/lifetime": "True (i.e. 1) if the measurement includes a nanotimes array of photon "
    "arrival times with respect to a laser pulse (as in TCSPC measurements).",
    "/setup/excitation_alternated": "New in version 0.5. Indicates whether each excitation "
    "source is alternated (True, or 1) or not alternated (False, or 0).",
    "/setup/excitation_cw": "For each excitation source, this field indicates whether "
    "excitation is continuous wave (CW), True (i.e. 1), or pulsed, False (i.e. 0).",
    "/setup/laser_repetition_rates": "Repetition rates in Hz for each laser. CW lasers have a "
    "value of 0.",
    "/setup/excitation_wavelengths": "List of excitation wavelengths (center wavelength if "
    "broad-band) in increasing order (unit: meter).",
    "/setup/detection_wavelengths": "Reference wavelengths (units: meter) for each detected "
    "spectral band.",
    "/setup/detectors": "Metadata relative to each detector's pixel. Each field is an array "
    "with size equal to the number of the detectors.",
    "/setup/detectors/id": "Detector IDs as they appear on /photon_data/detectors.",
    "/setup/detectors/counts": "Total number of counts detected by each detector.",
    "/sample": "Information about the measured sample.",
    "/sample/sample_name": "A descriptive name for the sample.",
    "/sample/dye_names": "String containing a comma-separated list of dye or fluorophore names.",
    "/sample/buffer_name": "A descriptive name for the buffer.",
    "/sample/num_dyes": "Number of different dyes present in the samples.",
    "/provenance": "Information about the original data file.",
    "/provenance/filename": "File name of the original data file before conversion to Photon-HDF5.",
    "/provenance/filename_full": "File name (with full path) of the original data file before "
    "conversion to Photon-HDF5.",
    "/provenance/creation_time": "Creation time of the original data file.",
    "/provenance/modification_time": "Time of last modification of the original data file.",
    "/provenance/software": "Software used to save the original data file.",
    "/provenance/software_version": "Version of the software used to save the original data file.",
}

SAMPLE_FIELDS = ("sample_name", "dye_names", "buffer_name", "num_dyes")
PROVENANCE_FIELDS = (
    "filename",
    "filename_full",
    "creation_time",
    "modification_time",
    "software",
    "software_version",
)
# Ordinals exactly as the reference validator (phconvert 0.10) spells them in the TITLE of
# split_chN, misspelling included, so that its strict description check passes.
_ORDINALS = {
    1: "first",
    2: "second",
    3: "thrid",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
}
#: HDF5 chunk length of the growable ``/user/<group>/`` columns.
USER_CHUNK_ROWS = 4096
#: ``/user`` group of a table's markers (the spec has no place for them).
TABLE_MARKERS_GROUP = "markers"


def split_ch_title(n: int) -> str:
    """TITLE of ``detectors_specs/split_ch<n>``, as phconvert spells it."""
    ordinal = _ORDINALS.get(n) or (
        f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}[n % 10] }" if n % 10 in (1, 2, 3) else str(n)
    )
    return f"Pixel IDs for the {ordinal} channel split through a non-polarizing beam splitter."
