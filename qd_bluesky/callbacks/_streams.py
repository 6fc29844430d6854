"""The derived run's streams and the fields of their rows, declared once.

One ``TypedDict`` per stream gives the fields of one row (one event); the analysis engine builds
rows of these types, the live analyzer emits the streams in the order of
:data:`DERIVED_STREAMS`, the replay compares fields named here, and the report reads them.
Scalars stand in for short arrays (the decay components, the g2 peak areas) because Tiled's
SQLite table storage refuses list columns.
"""

from __future__ import annotations

from typing import TypedDict

from numpy.typing import NDArray

#: Peaks of the g2 stream on each side of zero (``peak_m3`` .. ``peak_p3``).
G2_PEAKS = 3


class TraceRow(TypedDict):
    """One ``trace_event_s`` of the intensity trace."""

    time_s: float
    counts: NDArray  # int64 per trace bin, all channels together


class FlidRow(TypedDict):
    """One FLID bin."""

    time_s: float
    intensity_cps: float
    lifetime_ns: float
    lifetime_stderr_ns: float
    photons: int
    segment: int
    bias_v: float


class DecayRow(TypedDict):
    """One segment's decay histogram and its fits (component 2 NaN for a mono-exponential)."""

    segment: int
    bias_v: float
    photons: int
    duration_s: float
    intensity_cps: float
    counts: NDArray
    microtime_unit_ns: float
    model: str
    tau1_ns: float
    tau2_ns: float
    tau1_stderr_ns: float
    tau2_stderr_ns: float
    fraction1: float
    fraction2: float
    background_fraction: float
    decay_start_ns: float
    lifetime_ns: float
    lifetime_stderr_ns: float
    mean_lifetime_ns: float
    mono_lifetime_ns: float
    mono_lifetime_stderr_ns: float


def peak_field(k: int) -> str:
    """Field of the g2 stream holding the coincidences of peak ``k`` (``peak_m1``, ...)."""
    return f"peak_{'m' if k < 0 else 'p' if k > 0 else ''}{abs(k)}"


#: The g2 peak-area fields, ``peak_m3`` .. ``peak_p3``.
G2_PEAK_FIELDS = tuple(peak_field(k) for k in range(-G2_PEAKS, G2_PEAKS + 1))


class G2Row(TypedDict):
    """One segment's g2: g2(0), the peak areas (``G2_PEAK_FIELDS``) and the histogram."""

    segment: int
    bias_v: float
    g2_zero: float
    g2_zero_stderr: float
    period_ns: float
    peak_m3: int
    peak_m2: int
    peak_m1: int
    peak_0: int
    peak_p1: int
    peak_p2: int
    peak_p3: int
    tau_s: NDArray
    counts: NDArray
    g2: NDArray


class BiasDependenceRow(TypedDict):
    """One segment's lifetime and intensity, and their ratios to X0 at 0 V."""

    segment: int
    bias_v: float
    lifetime_ns: float
    intensity_cps: float
    enhancement: float
    intensity_drop: float
    reference_tau_ns: float
    reference_intensity_cps: float
    g2_zero: float


class FlidMapRow(TypedDict):
    """The FLID occurrence histogram (one event at stop)."""

    occurrence: NDArray
    intensity_edges_cps: NDArray
    lifetime_edges_ns: NDArray


class ScalingRow(TypedDict):
    """gammaA/gamma0, X0 and X- from the FLID, and the last state following Eq. 1-2."""

    gamma_ratio: float
    gamma_ratio_stderr: float
    tau_x0_ns: float
    intensity_x0_cps: float
    tau_xm_ns: float
    intensity_xm_cps: float
    last_state_following_model: str


class TomographyRow(TypedDict):
    """One FLID bin of a CV scan with its assigned charge state (-1: none)."""

    time_s: float
    bias_v: float
    intensity_cps: float
    lifetime_ns: float
    charge_state: int


class ReversibilityRow(TypedDict):
    """The start of one cycle of a continuous run: its intensity and lifetime."""

    segment: int
    time_s: float
    bias_v: float
    bins: int
    intensity_cps: float
    lifetime_ns: float


class LevelRow(TypedDict):
    """One intensity level: photons between two change points (Watkins & Yang).

    Times are seconds since the run's first photon (as ``trace`` and ``flid``); a level ends at
    the photon of its closing change point, where the next level starts. ``lifetime_ns`` is NaN
    for a level with too few photons (or T2 data).
    """

    start_s: float
    end_s: float
    photons: int
    intensity_cps: float
    lifetime_ns: float
    lifetime_stderr_ns: float
    segment: int
    bias_v: float


class BlinkingRow(TypedDict):
    """One segment's blinking: its levels grouped by intensity, dwell times and switching.

    ``dim_fraction``: the time fraction of the dimmest group (0 with a single group);
    ``off_fraction``: of the groups below ``threshold_cps`` (midway between the brightest and
    the dimmest group). Exponents are NaN with fewer than ``MIN_TAIL`` dwells.
    """

    segment: int
    bias_v: float
    duration_s: float
    levels: int
    groups: int
    threshold_cps: float
    bright_intensity_cps: float
    dim_intensity_cps: float
    bright_fraction: float
    dim_fraction: float
    off_fraction: float
    switching_rate_hz: float
    on_alpha: float
    on_alpha_stderr: float
    on_xmin_s: float
    on_dwells: int
    off_alpha: float
    off_alpha_stderr: float
    off_xmin_s: float
    off_dwells: int


class SwitchingRow(TypedDict):
    """One time bin after the steps of a bias square wave (``bias_switching``), per edge.

    ``edge``: ``rising`` (the steps to the high bias) or ``falling`` (to the low bias);
    ``time_us`` the bin's start after the step (the card's marker); ``steps`` how many steps
    reached the bin; the intensity is the photons over ``steps`` x the bin width. The lifetime
    is the mean delay after the decay start (NaN in T2), its rate the inverse.
    """

    edge: str
    time_us: float
    steps: int
    photons: int
    intensity_cps: float
    lifetime_ns: float
    lifetime_stderr_ns: float
    decay_rate_per_ns: float


class SwitchingResponseRow(TypedDict):
    """The fitted response to the steps of one edge: intensity against the time since the step,
    ``before + (after - before) (1 - exp(-(t - delay)/tau))``; ``rise_time_us`` = tau ln 9."""

    edge: str
    steps: int
    rise_time_us: float
    rise_time_stderr_us: float
    tau_us: float
    delay_us: float
    intensity_before_cps: float
    intensity_after_cps: float
    problem: str


#: Row type of each stream, in the order the streams of one step are emitted.
ROW_TYPES: dict[str, type] = {
    "trace": TraceRow,
    "flid": FlidRow,
    "decay": DecayRow,
    "g2": G2Row,
    "bias_dependence": BiasDependenceRow,
    "flid_map": FlidMapRow,
    "scaling": ScalingRow,
    "tomography": TomographyRow,
    "reversibility": ReversibilityRow,
    "levels": LevelRow,
    "blinking": BlinkingRow,
    "switching": SwitchingRow,
    "switching_response": SwitchingResponseRow,
}

#: The derived run's streams, in the order in which the streams of one step are emitted.
DERIVED_STREAMS: tuple[str, ...] = tuple(ROW_TYPES)

#: Fields of each stream's rows.
STREAM_FIELDS: dict[str, tuple[str, ...]] = {
    stream: tuple(row.__annotations__) for stream, row in ROW_TYPES.items()
}


#: What must be identical between a live derived run and its replay: stream -> fields.
REPLAY_COMPARED: dict[str, tuple[str, ...]] = {
    "flid": STREAM_FIELDS["flid"],
    "decay": ("segment", "photons", "counts"),
    "g2": ("segment", "counts", *G2_PEAK_FIELDS),
    "reversibility": ("segment", "bins", "intensity_cps", "lifetime_ns"),
    "levels": STREAM_FIELDS["levels"],
    "blinking": ("segment", "levels", "groups", "dim_fraction", "switching_rate_hz"),
    "switching": ("time_us", "steps", "photons", "lifetime_ns"),
    "switching_response": ("steps", "rise_time_us"),
}
