"""The documented PVs of each IOC: one table that docs/hardware.md and the conformance checks
share (a unit test keeps the page's tables equal to it). Adding a PV to an IOC adds one row.
"""

from __future__ import annotations

from typing import NamedTuple


class DocumentedPv(NamedTuple):
    """One PV an IOC must serve, as ``{P}{ioc}:{name}``."""

    ioc: str
    """``pot``, ``tcspc``, ``laser`` or ``stage``."""
    name: str
    """The PV's name after the IOC's prefix."""
    kind: str
    """CA type: ``DOUBLE``, ``LONG``, ``ENUM`` or ``CHAR`` (a long-string waveform)."""
    enum_strings: tuple[str, ...] = ()
    """The exact choices of an ENUM whose strings are fixed (empty: the IOC's own list)."""


OFF_ON = ("off", "on")

DOCUMENTED_PVS: tuple[DocumentedPv, ...] = (
    # potentiostat {P}pot:
    DocumentedPv("pot", "bias", "DOUBLE"),
    DocumentedPv("pot", "bias_rbv", "DOUBLE"),
    DocumentedPv("pot", "current", "DOUBLE"),
    DocumentedPv("pot", "mode", "ENUM", ("static", "CV")),
    DocumentedPv("pot", "cell_on", "ENUM", OFF_ON),
    DocumentedPv("pot", "slew_rate", "DOUBLE"),
    DocumentedPv("pot", "settle_time", "DOUBLE"),
    DocumentedPv("pot", "bias_low_limit", "DOUBLE"),
    DocumentedPv("pot", "bias_high_limit", "DOUBLE"),
    DocumentedPv("pot", "abort", "LONG"),
    DocumentedPv("pot", "busy", "LONG"),
    DocumentedPv("pot", "status", "CHAR"),
    DocumentedPv("pot", "limit_violation", "LONG"),
    DocumentedPv("pot", "cv_start", "DOUBLE"),
    DocumentedPv("pot", "cv_vertex", "DOUBLE"),
    DocumentedPv("pot", "cv_end", "DOUBLE"),
    DocumentedPv("pot", "cv_rate", "DOUBLE"),
    DocumentedPv("pot", "cv_cycles", "LONG"),
    DocumentedPv("pot", "cv_run", "LONG"),
    DocumentedPv("pot", "cv_running", "LONG"),
    DocumentedPv("pot", "cv_progress", "DOUBLE"),
    DocumentedPv("pot", "cv_elapsed", "DOUBLE"),
    DocumentedPv("pot", "cv_duration", "DOUBLE"),
    DocumentedPv("pot", "cv_cycle", "LONG"),
    DocumentedPv("pot", "current_range", "ENUM"),
    DocumentedPv("pot", "autorange", "ENUM", OFF_ON),
    DocumentedPv("pot", "compliance", "DOUBLE"),
    DocumentedPv("pot", "ir_comp", "ENUM", OFF_ON),
    DocumentedPv("pot", "ir_comp_resistance", "DOUBLE"),
    DocumentedPv("pot", "reference", "CHAR"),
    DocumentedPv("pot", "reference_offset", "DOUBLE"),
    DocumentedPv("pot", "trigger_output", "ENUM", OFF_ON),
    DocumentedPv("pot", "trigger_count", "LONG"),
    DocumentedPv("pot", "sw_low", "DOUBLE"),
    DocumentedPv("pot", "sw_high", "DOUBLE"),
    DocumentedPv("pot", "sw_period", "DOUBLE"),
    DocumentedPv("pot", "sw_cycles", "LONG"),
    DocumentedPv("pot", "sw_run", "LONG"),
    DocumentedPv("pot", "sw_running", "LONG"),
    DocumentedPv("pot", "sw_progress", "DOUBLE"),
    DocumentedPv("pot", "sw_elapsed", "DOUBLE"),
    DocumentedPv("pot", "sw_duration", "DOUBLE"),
    # TCSPC card {P}tcspc:
    DocumentedPv("tcspc", "mode", "ENUM", ("T2", "T3")),
    DocumentedPv("tcspc", "resolution", "DOUBLE"),
    DocumentedPv("tcspc", "sync_rate", "DOUBLE"),
    DocumentedPv("tcspc", "count_rate0", "DOUBLE"),
    DocumentedPv("tcspc", "count_rate1", "DOUBLE"),
    DocumentedPv("tcspc", "rate_gate", "LONG"),
    DocumentedPv("tcspc", "rate_period", "DOUBLE"),
    DocumentedPv("tcspc", "acquire", "LONG"),
    DocumentedPv("tcspc", "acquire_time", "DOUBLE"),
    DocumentedPv("tcspc", "acquiring", "LONG"),
    DocumentedPv("tcspc", "elapsed", "DOUBLE"),
    DocumentedPv("tcspc", "data_dir", "CHAR"),
    DocumentedPv("tcspc", "file_path", "CHAR"),
    DocumentedPv("tcspc", "num_photons", "LONG"),
    DocumentedPv("tcspc", "chunk_rows", "LONG"),
    DocumentedPv("tcspc", "overflow", "LONG"),
    DocumentedPv("tcspc", "error", "CHAR"),
    DocumentedPv("tcspc", "sync_divider", "LONG"),
    DocumentedPv("tcspc", "sync_level", "DOUBLE"),
    DocumentedPv("tcspc", "sync_zero_cross", "DOUBLE"),
    DocumentedPv("tcspc", "sync_offset", "DOUBLE"),
    DocumentedPv("tcspc", "input_level0", "DOUBLE"),
    DocumentedPv("tcspc", "input_level1", "DOUBLE"),
    DocumentedPv("tcspc", "input_zero_cross0", "DOUBLE"),
    DocumentedPv("tcspc", "input_zero_cross1", "DOUBLE"),
    DocumentedPv("tcspc", "input_offset0", "DOUBLE"),
    DocumentedPv("tcspc", "input_offset1", "DOUBLE"),
    DocumentedPv("tcspc", "input_enable0", "LONG"),
    DocumentedPv("tcspc", "input_enable1", "LONG"),
    DocumentedPv("tcspc", "dead_time0", "LONG"),
    DocumentedPv("tcspc", "dead_time1", "LONG"),
    DocumentedPv("tcspc", "marker_edges", "LONG"),
    DocumentedPv("tcspc", "marker_enable", "LONG"),
    DocumentedPv("tcspc", "marker_holdoff", "DOUBLE"),
    DocumentedPv("tcspc", "binning", "LONG"),
    DocumentedPv("tcspc", "warnings", "LONG"),
    DocumentedPv("tcspc", "warnings_text", "CHAR"),
    DocumentedPv("tcspc", "flags", "LONG"),
    DocumentedPv("tcspc", "flags_text", "CHAR"),
    DocumentedPv("tcspc", "fifo_full", "LONG"),
    # laser {P}laser:
    DocumentedPv("laser", "emission", "ENUM", OFF_ON),
    DocumentedPv("laser", "power", "DOUBLE"),
    DocumentedPv("laser", "intensity", "LONG"),
    DocumentedPv("laser", "rep_rate", "DOUBLE"),
    DocumentedPv("laser", "frequency", "ENUM"),
    DocumentedPv("laser", "interlock", "ENUM", ("closed", "open")),
    DocumentedPv("laser", "interlock_cause", "ENUM", ("none", "key", "power failure")),
    DocumentedPv("laser", "soft_lock", "ENUM", OFF_ON),
    DocumentedPv("laser", "wavelength", "DOUBLE"),
    DocumentedPv("laser", "status", "CHAR"),
    # piezo stage {P}stage: three motor records (their fields: EpicsMotor connects to them)
    DocumentedPv("stage", "x", "DOUBLE"),
    DocumentedPv("stage", "y", "DOUBLE"),
    DocumentedPv("stage", "z", "DOUBLE"),
    DocumentedPv("stage", "status", "CHAR"),
)


def documented_pvs(ioc: str) -> tuple[DocumentedPv, ...]:
    """The rows of one IOC (``pot``, ``tcspc``, ``laser``, ``stage``)."""
    return tuple(pv for pv in DOCUMENTED_PVS if pv.ioc == ioc)
