"""A multi-dot survey: find the dots of a field, then test and classify each one (issue 13)."""

import logging
import math
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky import Msg
from bluesky.protocols import Flyable, Movable, Readable
from bluesky.utils import (
    CustomPlanMetadata,
    FailedPause,
    MsgGenerator,
    RequestAbort,
    RequestStop,
    single_gen,
)
from numpy.typing import NDArray

from . import _validate as check
from ._classify import classify_cv
from ._cv import cv_scan
from ._g2 import g2_measurement
from ._md import start_md
from ._stage import _check_raster, _grid, _raster_md

logger = logging.getLogger(__name__)

#: Stream of ``find_dots`` with one event per dot found (refined position, count rate).
DOTS_STREAM = "dots"
#: Stream of ``find_dots`` with the refining line scans.
REFINE_STREAM = "refine"
#: Run key of the survey's own run, open while the dots' runs come and go.
SURVEY_RUN_KEY = "survey"
#: Lateral PSF sigma of the confocal spot (um): spots closer than 4 sigma are one spot.
PSF_SIGMA_UM = 0.11
#: Fields of a survey row (the survey run's ``dots`` stream), in order.
SURVEY_FIELDS = (
    "dot_id",
    "x_um",
    "y_um",
    "status",
    "count_rate_cps",
    "g2_zero",
    "background_cps",
    "g2_zero_corrected",
    "single",
    "charging",
    "last_state",
    "max_enhancement",
    "intensity_ratio",
    "raw_uids",
)
#: A dot whose count rate after its CV scan stays below this fraction of its rate on arrival
#: for :data:`BLEACH_READS` gates has bleached (or left the focus). X+, the dimmest state a
#: dot may sit in for a second at 0 V, gives ~15 %; a bleached dot the background, ~1 %.
BLEACHED_FRACTION = 0.1
BLEACH_READS = 4
#: Smallest share of the dot in the count rate for which g2(0) is corrected for the background
#: (below it the correction divides the noise by less than 0.1).
MIN_SIGNAL_FRACTION = 0.3


@dataclass(frozen=True)
class Spot:
    """A dot found by :func:`find_dots`: refined position (um), count rate there and the
    raster's background rate (cps)."""

    x_um: float
    y_um: float
    rate_cps: float
    background_cps: float = 0.0


def background_corrected_g2(g2_zero: float, rate_cps: float, background_cps: float) -> float:
    """g2(0) of the dot alone, from g2(0) measured on the dot plus an uncorrelated background.

    With ``rho`` the dot's share of the count rate, the measured value is
    ``rho**2 g2 + 1 - rho**2`` (Brouri et al., Opt. Lett. 25, 1294 (2000)); solved for ``g2``.
    NaN when the dot gives less than :data:`MIN_SIGNAL_FRACTION` of the rate (or no rate).
    """
    if not (rate_cps > 0 and background_cps >= 0 and math.isfinite(g2_zero)):
        return math.nan
    rho = (rate_cps - background_cps) / rate_cps
    if rho < MIN_SIGNAL_FRACTION:
        return math.nan
    return (g2_zero - (1.0 - rho**2)) / rho**2


def find_spots(
    x_um: NDArray[np.float64],
    y_um: NDArray[np.float64],
    rate_cps: NDArray[np.float64],
    *,
    min_contrast: float = 5.0,
    min_separation_um: float = 4 * PSF_SIGMA_UM,
) -> list[tuple[float, float, float]]:
    """Local maxima of a raster above the background, brightest first, ``min_separation`` apart.

    The background is the map's median (a field is mostly empty). A pixel is a spot when no
    neighbour of its 3 x 3 box is brighter and it exceeds ``min_contrast`` times the
    background; of spots closer than ``min_separation_um`` only the brightest is kept (the
    confocal spot does not resolve them). Returns ``(x, y, rate)`` of the pixels.
    """
    rate = np.nan_to_num(np.asarray(rate_cps, dtype=float), nan=0.0)
    if rate.size == 0:
        return []
    background = max(float(np.median(rate)), 1.0)
    padded = np.pad(rate, 1, constant_values=-np.inf)
    ny, nx = rate.shape
    neighbours = np.max(
        [padded[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3)], axis=0
    )
    iy, ix = np.nonzero((rate >= neighbours) & (rate > min_contrast * background))
    order = np.argsort(-rate[iy, ix], kind="stable")
    kept: list[tuple[float, float, float]] = []
    for k in order:
        x, y = float(x_um[ix[k]]), float(y_um[iy[k]])
        if all(math.hypot(x - kx, y - ky) >= min_separation_um for kx, ky, _ in kept):
            kept.append((x, y, float(rate[iy[k], ix[k]])))
    return kept


def peak_position(pos: NDArray[np.float64], rate: NDArray[np.float64], background: float) -> float:
    """Where a line scan across a spot peaks: the vertex of a parabola through the log of the
    three background-subtracted rates around the maximum (exact for a Gaussian spot)."""
    i = int(np.nanargmax(rate))
    if i == 0 or i == len(rate) - 1:
        return float(pos[i])
    lo, mid, hi = np.log(np.maximum(rate[i - 1 : i + 2] - background, 1.0))
    curvature = lo - 2 * mid + hi
    if not curvature < 0:
        return float(pos[i])
    shift = 0.5 * (lo - hi) / curvature
    return float(pos[i] + np.clip(shift, -1.0, 1.0) * (pos[i + 1] - pos[i]))


def _read_rate(tcspc: Any) -> MsgGenerator[float]:
    """A fresh gate of the rate meters, both channels (cps), without an event."""
    yield from bps.trigger(tcspc.rates, wait=True)
    r0 = yield from bps.rd(tcspc.rates.count_rate0)
    r1 = yield from bps.rd(tcspc.rates.count_rate1)
    return float(r0) + float(r1)


def _bleached(tcspc: Any, arrival_cps: float) -> MsgGenerator[bool]:
    """Whether the rate stays below :data:`BLEACHED_FRACTION` of ``arrival_cps`` for
    :data:`BLEACH_READS` gates (a dot in X+ comes back within them)."""
    for _ in range(BLEACH_READS):
        rate = yield from _read_rate(tcspc)
        if not rate < BLEACHED_FRACTION * arrival_cps:
            return False
    return True


def _with_rate_period(tcspc: Any, gate: float, plan: MsgGenerator[Any]) -> MsgGenerator[Any]:
    """Run ``plan`` with the rate meters gated at ``gate`` s, then restore the gate."""
    before = yield from bps.rd(tcspc.rates.rate_period)

    def restore() -> MsgGenerator[None]:
        if before is not None:
            yield from bps.mv(tcspc.rates.rate_period, before)

    yield from bps.mv(tcspc.rates.rate_period, gate)
    return (yield from bpp.finalize_wrapper(plan, restore()))


@check.checks_at_call
def find_dots(
    stage: Readable,
    tcspc: Flyable,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    step: float,
    gate: float = 0.1,
    min_contrast: float = 5.0,
    psf_sigma: float = PSF_SIGMA_UM,
    refine: bool = True,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[list[Spot]]:
    """Raster a field, find every dot in it and refine each dot's position.

    One run. The coarse raster of :func:`raster_scan` goes into ``primary`` with the rate
    meters gated at ``gate`` seconds (restored afterwards). Spots are the local maxima above
    ``min_contrast`` times the background (the map's median), at least 4 ``psf_sigma`` apart
    (:func:`find_spots`). With ``refine`` each spot gets two line scans of 7 points a quarter
    ``step`` apart, along x then y (stream ``refine``), whose peaks (:func:`peak_position`)
    give its position. The stage then visits each dot and one event per dot in the stream
    ``dots`` records where it is and its count rate.

    A coarse ``step`` of about 2 ``psf_sigma`` (0.2-0.25 um) finds every dot: between pixels
    a dot still gives a tenth of its peak rate, far above the background.

    Parameters
    ----------
    stage : Readable
        The piezo stage (:class:`qd_bluesky.devices.PiezoStage`).
    tcspc : Flyable
        The TCSPC card, whose rate meters are the detector.
    x_range, y_range : (float, float)
        First and last raster position of each axis (um).
    step : float
        Coarse grid spacing (um), > 0.
    gate : float, optional
        Rate-meter gate during the plan (s, 0.05 to 1): a point takes one to two gates.
    min_contrast : float, optional
        A spot's rate over the background needed to call it a dot, > 0.
    psf_sigma : float, optional
        Lateral PSF sigma (um), > 0: sets the separation below which spots merge.
    refine : bool, optional
        Refine the positions with line scans (else the coarse pixels).
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    list of Spot
        The dots, brightest first (when composed with ``yield from``).

    Raises
    ------
    ValueError
        Bad raster arguments, a gate outside [0.05, 1] s, ``min_contrast`` or ``psf_sigma``
        <= 0, at the call.
    """
    plan = "find_dots"
    xs, ys, step, extra = _check_raster(stage, tcspc, x_range, y_range, step, (), plan)
    gate = check.positive(gate, "gate", plan, "s")
    if not 0.05 <= gate <= 1.0:
        raise ValueError(f"{plan}: gate must be in [0.05, 1] s, got {gate}")
    min_contrast = check.positive(min_contrast, "min_contrast", plan)
    psf_sigma = check.positive(psf_sigma, "psf_sigma", plan, "um")
    _md = _raster_md(
        plan,
        {
            "stage": repr(stage),
            "tcspc": repr(tcspc),
            "x_range": [float(v) for v in x_range],
            "y_range": [float(v) for v in y_range],
            "step": step,
            "gate": gate,
            "min_contrast": min_contrast,
            "psf_sigma": psf_sigma,
            "refine": bool(refine),
        },
        stage,
        [tcspc.rates],
        xs,
        ys,
        True,
        check.metadata(md, plan),
    )
    detectors = [stage.x, stage.y, tcspc.rates]

    def total_rate(readings: dict | None) -> float:
        """Both channels' rates of a reading (NaN when not run by a RunEngine)."""
        if not readings:
            return math.nan
        channels = (tcspc.rates.count_rate0, tcspc.rates.count_rate1)
        return sum(float(readings[c.name]["value"]) for c in channels)

    def line(axis: Any, centre: float, background: float) -> MsgGenerator[float]:
        positions = centre + step * 0.25 * np.arange(-3, 4)
        rates = np.full(len(positions), np.nan)
        for i, p in enumerate(positions):
            yield from bps.mv(axis, float(p))
            readings = yield from bps.trigger_and_read(detectors, name=REFINE_STREAM)
            rates[i] = total_rate(readings)
        if not np.isfinite(rates).any():
            return centre
        return peak_position(positions, rates, background)

    def run() -> MsgGenerator[list[Spot]]:
        rate = np.full((len(ys), len(xs)), np.nan)
        found: list[Spot] = []

        def visit() -> MsgGenerator[None]:
            spots = find_spots(
                xs, ys, rate, min_contrast=min_contrast, min_separation_um=4 * psf_sigma
            )
            background = float(np.nanmedian(rate)) if np.isfinite(rate).any() else 0.0
            logger.info("%s: %d spots in the raster", plan, len(spots))
            for x, y, _ in spots:
                if refine:
                    yield from bps.mv(stage.y, y)
                    x = yield from line(stage.x, x, background)
                    yield from bps.mv(stage.x, x)
                    y = yield from line(stage.y, y, background)
                yield from bps.mv(stage.x, x, stage.y, y)
                readings = yield from bps.trigger_and_read(detectors, name=DOTS_STREAM)
                found.append(Spot(float(x), float(y), total_rate(readings), background))

        def visit_before_close(msg: Msg):
            if msg.command == "close_run":
                return bpp.pchain(visit(), single_gen(msg)), None
            return None, None

        grid = _grid(stage, tcspc, extra, xs, ys, True, _md, rate)
        yield from _with_rate_period(tcspc, gate, bpp.plan_mutator(grid, visit_before_close))
        return found

    return run()


class AnalysisResults(Protocol):
    """How a survey gets the live analysis of a run it recorded.

    ``finished(uid)`` is awaited by the RunEngine (``bps.wait_for``), so the plan yields only
    messages while the analysis catches up; ``derived(uid)`` then returns the derived run as
    stream -> field -> array, or None if the analysis failed.
    """

    def finished(self, raw_uid: str) -> Awaitable[Any]: ...

    def derived(self, raw_uid: str) -> Mapping[str, Mapping[str, Any]] | None: ...


class _Row:
    """One survey row as a readable, so that it becomes an event of the survey run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parent = None
        self.values: dict[str, Any] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {k: {"value": v, "timestamp": now} for k, v in self.values.items()}

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            k: {"source": "survey", "dtype": _DTYPES.get(type(v), "number"), "shape": []}
            for k, v in self.values.items()
        }


_DTYPES = {str: "string", bool: "boolean", int: "integer"}


def _failure(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


@check.checks_at_call
def survey(
    stage: Readable,
    tcspc: Flyable,
    potentiostat: Movable,
    dots: Sequence[tuple[float, float]],
    analysis: AnalysisResults,
    *,
    g2_duration: float = 5.0,
    cv_rate: float = 1.0,
    cv_low: float = -2.0,
    cv_cycles: int = 2,
    single_limit: float = 0.5,
    background_cps: float | None = None,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[list[dict[str, Any]]]:
    """Visit each dot: is it a single emitter, and how does it charge?

    The survey's own run (run key ``survey``) stays open throughout and gets one event per dot
    in its stream ``dots`` (fields :data:`SURVEY_FIELDS`) as soon as the dot is done, so an
    abort (Ctrl-C) keeps every finished row. At each dot:

    1. the stage parks on it and the rate meters read its count rate;
    2. :func:`g2_measurement` at 0 V (a run of its own); a dot whose g2(0), corrected for
       the background (:func:`background_corrected_g2`, when the dot gives at least
       :data:`MIN_SIGNAL_FRACTION` of its count rate), is above ``single_limit`` is not a
       single emitter (``status="not single"``) and is left;
    3. :func:`cv_scan` 0 -> ``cv_low`` -> 0 V at ``cv_rate``, ``cv_cycles`` times;
    4. its class from the CV scan's derived run (:func:`classify_cv`: a charge state counts
       when the dot takes it at the bottom of every cycle).

    Each dot's runs carry ``dot_id``, ``dot_x_um`` and ``dot_y_um`` in their start documents.
    The live analysis is awaited through ``analysis`` (:class:`AnalysisResults`). A dot whose
    rate after the CV stays below :data:`BLEACHED_FRACTION` of its arrival rate is
    ``bleached``; a move that fails is ``unreachable``, a plan that fails ``failed: ...``; the
    survey goes on.

    Parameters
    ----------
    stage : Readable
        The piezo stage.
    tcspc : Flyable
        The TCSPC card.
    potentiostat : Movable
        The potentiostat (with ``cv``).
    dots : sequence of (float, float)
        The dots' positions (um), e.g. from :func:`find_dots`.
    analysis : AnalysisResults
        Gives the derived run of each recorded run.
    g2_duration : float, optional
        Seconds of the g2 measurement, > 0.
    cv_rate : float, optional
        Scan rate of the CV (V/s), > 0.
    cv_low : float, optional
        Far end of the CV (V), inside the safe window.
    cv_cycles : int, optional
        Cycles of the CV, >= 1. Two tell electrochemical charging (every cycle) from a
        photo-charged X- that happened to last through one visit of the bottom.
    single_limit : float, optional
        Largest g2(0) of a single emitter (0.5: two equal emitters give 0.5 and more).
    background_cps : float, optional
        Count rate (cps) of the field away from any dot, >= 0. Default: each
        :class:`Spot`'s (the raster's median), 0 for plain positions.
    md : dict, optional
        Metadata for every run's start document.

    Returns
    -------
    list of dict
        The rows of the survey table.

    Raises
    ------
    ValueError
        Bad positions, durations or rates, an ``analysis`` without ``finished`` and
        ``derived``, at the call.
    UnsafeBiasError
        ``cv_low`` outside the safe window, at the call.
    """
    plan = "survey"
    check.stage(stage, plan)
    check.photon_card(tcspc, plan)
    check.potentiostat(potentiostat, plan, cv=True)
    if isinstance(dots, (str, bytes)) or not isinstance(dots, Sequence):
        raise ValueError(f"{plan}: dots must be a sequence of (x, y) positions, not {dots!r}")
    if background_cps is not None:
        background_cps = check.non_negative(background_cps, "background_cps", plan, "cps")
    positions = []
    backgrounds = []
    for i, d in enumerate(dots):
        spot_background = d.background_cps if isinstance(d, Spot) else 0.0
        backgrounds.append(spot_background if background_cps is None else background_cps)
        xy = (d.x_um, d.y_um) if isinstance(d, Spot) else d
        if isinstance(xy, (str, bytes)) or len(xy) != 2:
            raise ValueError(f"{plan}: dots[{i}] must be an (x, y) position, not {d!r}")
        positions.append(
            tuple(check.number(v, f"dots[{i}]", plan, "um") for v in xy)  # type: ignore[arg-type]
        )
    if not all(callable(getattr(analysis, a, None)) for a in ("finished", "derived")):
        raise ValueError(f"{plan}: analysis must have finished(uid) and derived(uid) methods")
    g2_duration = check.positive(g2_duration, "g2_duration", plan, "s")
    cv_rate = check.positive(cv_rate, "cv_rate", plan, "V/s")
    cv_low = check.bias(potentiostat, cv_low, "cv_low", plan)
    cv_cycles = check.whole(cv_cycles, "cv_cycles", plan)
    single_limit = check.positive(single_limit, "single_limit", plan)
    user_md = check.metadata(md, plan)
    _md = start_md(
        plan,
        {
            "stage": repr(stage),
            "tcspc": repr(tcspc),
            "potentiostat": repr(potentiostat),
            "dots": [list(p) for p in positions],
            "analysis": repr(analysis),
            "g2_duration": g2_duration,
            "cv_rate": cv_rate,
            "cv_low": cv_low,
            "cv_cycles": cv_cycles,
            "single_limit": single_limit,
            "background_cps": background_cps,
        },
        detectors=[],
        num_points=len(positions),
        user_md=user_md,
    )

    def analysed(uid: str) -> MsgGenerator[Mapping[str, Mapping[str, Any]] | None]:
        yield from bps.wait_for([lambda: analysis.finished(uid)])
        return analysis.derived(uid)

    def measure(k: int, x: float, y: float, row: dict[str, Any]) -> MsgGenerator[None]:
        dot_md = {**user_md, "dot_id": k, "dot_x_um": x, "dot_y_um": y}
        uids: list[str] = []
        try:
            yield from bps.mv(stage.x, x, stage.y, y)
        except (RequestAbort, RequestStop, FailedPause):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the survey goes on
            row["status"] = f"unreachable: {_failure(exc)}"
            return
        try:
            arrival = yield from _read_rate(tcspc)
            row["count_rate_cps"] = arrival
            uid = yield from g2_measurement(
                tcspc, g2_duration, potentiostat=potentiostat, bias=0.0, md=dot_md
            )
            uids.append(uid or "")
            derived = (yield from analysed(uid)) if uid else None
            g2 = (derived or {}).get("g2") or {}
            g2_zero = float(g2["g2_zero"][0]) if len(g2.get("g2_zero", ())) else math.nan
            row["g2_zero"] = g2_zero
            corrected = background_corrected_g2(g2_zero, arrival, row["background_cps"])
            row["g2_zero_corrected"] = corrected
            row["single"] = bool(
                (corrected if math.isfinite(corrected) else g2_zero) <= single_limit
            )
            if not math.isfinite(g2_zero):  # no photons of a dot to correlate
                row["status"] = "bleached" if (yield from _bleached(tcspc, arrival)) else "no g2"
                return
            if not row["single"]:
                row["status"] = "not single"
                return
            uid = yield from cv_scan(
                tcspc, potentiostat, 0.0, cv_low, 0.0, cv_rate, cv_cycles, md=dot_md
            )
            uids.append(uid or "")
            derived = (yield from analysed(uid)) if uid else None
            if (yield from _bleached(tcspc, arrival)):
                row["status"] = "bleached"
                return
            if derived is None:
                row["status"] = "analysis failed"
                return
            verdict = classify_cv(derived)
            row.update(
                charging=verdict.charging,
                last_state=verdict.last_state,
                max_enhancement=verdict.max_enhancement,
                intensity_ratio=verdict.intensity_ratio,
                status="measured",
            )
        except (RequestAbort, RequestStop, FailedPause):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the survey goes on
            row["status"] = f"failed: {_failure(exc)}"
        finally:
            row["raw_uids"] = ",".join(u for u in uids if u)

    def run() -> MsgGenerator[list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        record = _Row("survey")
        yield from bpp.set_run_key_wrapper(bps.open_run(_md), SURVEY_RUN_KEY)
        for k, (x, y) in enumerate(positions):
            row: dict[str, Any] = {
                "dot_id": k,
                "x_um": x,
                "y_um": y,
                "status": "",
                "count_rate_cps": math.nan,
                "g2_zero": math.nan,
                "background_cps": backgrounds[k],
                "g2_zero_corrected": math.nan,
                "single": False,
                "charging": "",
                "last_state": "",
                "max_enhancement": math.nan,
                "intensity_ratio": math.nan,
                "raw_uids": "",
            }
            yield from measure(k, x, y, row)
            logger.info(
                "%s: dot %d at (%.2f, %.2f) um: %s %s",
                plan,
                k,
                x,
                y,
                row["status"],
                row["charging"],
            )
            record.values = {f: row[f] for f in SURVEY_FIELDS}
            yield from bpp.set_run_key_wrapper(
                bps.trigger_and_read([record], name=DOTS_STREAM), SURVEY_RUN_KEY
            )
            rows.append(row)
        yield from bpp.set_run_key_wrapper(bps.close_run(), SURVEY_RUN_KEY)
        return rows

    return run()
