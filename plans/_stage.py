"""Stage rasters on the count rate, and finding (and parking on) a dot."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
from bluesky import Msg
from bluesky.protocols import Flyable, Readable
from bluesky.utils import CustomPlanMetadata, MsgGenerator, single_gen
from numpy.typing import NDArray

from . import _validate as check
from ._md import start_md

logger = logging.getLogger(__name__)

#: Event stream of the position ``find_dot`` parked on.
DOT_STREAM = "dot"


@dataclass(frozen=True)
class RasterMap:
    """Count rates on a raster grid.

    Attributes
    ----------
    x_um, y_um : ndarray
        Grid positions of the columns and rows (um).
    rate_cps : ndarray
        ``(len(y_um), len(x_um))`` total count rate (both channels, cps); NaN where not
        measured (e.g. when the plan is not run by a RunEngine).
    """

    x_um: NDArray[np.float64]
    y_um: NDArray[np.float64]
    rate_cps: NDArray[np.float64]


def locate_dot(
    raster: RasterMap, *, refine: bool = True, min_contrast: float = 3.0
) -> tuple[float, float] | None:
    """Where the brightest dot of a raster is, or None if nothing stands out.

    The background is the 10th percentile of the map. The dot's pixel is the one whose
    3 x 3 neighbourhood holds the most counts above the background: a dot that blinked off
    during one pixel's rate gate still has its bright neighbours. A dot is found when that
    pixel or one of its neighbours exceeds ``min_contrast`` times the background. With
    ``refine`` the position is the background-subtracted centroid of the neighbourhood
    (which places the dot between pixels), else the pixel itself.

    Parameters
    ----------
    raster : RasterMap
        The measured map.
    refine : bool
        Use the centroid instead of the pixel.
    min_contrast : float
        Brightest pixel / background needed to call it a dot.
    """
    rate = np.asarray(raster.rate_cps, dtype=float)
    if rate.size == 0 or not np.isfinite(rate).any():
        return None
    background = float(np.nanpercentile(rate, 10))
    excess = np.nan_to_num(rate - background, nan=0.0).clip(min=0.0)
    padded = np.pad(excess, 1)
    ny, nx = rate.shape
    box = sum(padded[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))
    iy, ix = np.unravel_index(int(np.argmax(box)), rate.shape)
    rows = slice(max(iy - 1, 0), iy + 2)
    cols = slice(max(ix - 1, 0), ix + 2)
    if not np.nanmax(rate[rows, cols]) > min_contrast * max(background, 0.0):
        return None
    if not refine:
        return float(raster.x_um[ix]), float(raster.y_um[iy])
    weight = excess[rows, cols]
    yy, xx = np.meshgrid(raster.y_um[rows], raster.x_um[cols], indexing="ij")
    total = weight.sum()
    return float((weight * xx).sum() / total), float((weight * yy).sum() / total)


def _raster_md(
    plan: str,
    plan_args: dict[str, Any],
    stage: Any,
    detectors: list[Any],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    snake: bool,
    user_md: dict[str, Any],
) -> dict[str, Any]:
    # The keys of bluesky's grid_scan, so LiveGrid and the best-effort callback understand it.
    dims = [[list(axis.hints["fields"]), "primary"] for axis in (stage.y, stage.x)]
    return start_md(
        plan,
        plan_args,
        detectors=detectors,
        motors=[stage.y, stage.x],
        num_points=len(xs) * len(ys),
        user_md=user_md,
        hints={"dimensions": dims, "gridding": "rectilinear"},
        shape=[len(ys), len(xs)],
        extents=[[float(ys[0]), float(ys[-1])], [float(xs[0]), float(xs[-1])]],
        snaking=[False, bool(snake)],
    )


def _check_raster(
    stage: Any, tcspc: Any, x_range: Any, y_range: Any, step: Any, readables: Any, plan: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, list[Any]]:
    check.stage(stage, plan)
    check.photon_card(tcspc, plan)
    step = check.positive(step, "step", plan, "um")
    xs = check.raster_axis(stage.x, x_range, step, "x_range", plan)
    ys = check.raster_axis(stage.y, y_range, step, "y_range", plan)
    check.raster_points(len(xs), len(ys), plan)
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, stage, stage.x, stage.y))
    return xs, ys, step, extra


def _grid(
    stage: Any,
    tcspc: Any,
    extra: list[Any],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    snake: bool,
    md: dict[str, Any],
    rate: NDArray[np.float64],
) -> MsgGenerator[str]:
    """bluesky's ``grid_scan`` of the raster (one run); fills ``rate`` (cps) point by point.

    At every point the stage moves, then the rate meters are triggered, which waits for a
    gate measured entirely after the move, and read with the stage position.
    """
    rate_keys = [tcspc.rates.count_rate0.name, tcspc.rates.count_rate1.name]

    def per_step(detectors, step, pos_cache):
        yield from bps.move_per_step(step, pos_cache)
        readings = yield from bps.trigger_and_read([*detectors, *step])
        if readings:  # None when not run by a RunEngine
            iy = int(np.argmin(np.abs(ys - step[stage.y])))
            ix = int(np.argmin(np.abs(xs - step[stage.x])))
            rate[iy, ix] = sum(float(readings[k]["value"]) for k in rate_keys)

    return (
        yield from bp.grid_scan(
            [tcspc.rates, *extra],
            stage.y,
            float(ys[0]),
            float(ys[-1]),
            len(ys),
            stage.x,
            float(xs[0]),
            float(xs[-1]),
            len(xs),
            snake_axes=bool(snake),
            per_step=per_step,
            md=md,
        )
    )


@check.checks_at_call
def raster_scan(
    stage: Readable,
    tcspc: Flyable,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    step: float,
    readables: Sequence[Readable] = (),
    snake: bool = True,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[RasterMap]:
    """Raster the stage over a grid and read the count rate at every point.

    bluesky's ``grid_scan`` (with its start-document keys ``shape``, ``extents``,
    ``snaking`` and hints) with a ``per_step`` that keeps the rates: y is the slow axis, x
    the fast one (snaking by default). At every point the stage moves, the rate meters are
    triggered (which waits for a 0.5 s gate measured entirely after the move, so a point
    takes 0.5 to 1 s) and read with the stage position into ``primary``. No photons are
    recorded. The stage stays at the last point. Positions are absolute (um).

    Parameters
    ----------
    stage : Readable
        The piezo stage (:class:`qd_bluesky.devices.PiezoStage`, with ``x`` and ``y`` axes).
    tcspc : Flyable
        The TCSPC card, whose rate meters are the detector.
    x_range, y_range : (float, float)
        First and last position (um) of each axis, start <= stop, inside the stage's limits;
        the grid runs from start in steps of ``step`` up to stop.
    step : float
        Grid spacing (um), > 0.
    readables : sequence of Readable, optional
        Extra devices read at every point.
    snake : bool, optional
        Scan every other row backwards (fewer long moves).
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    RasterMap
        The grid and its count rates (when composed with ``yield from``).

    Raises
    ------
    ValueError
        A non-positive step, an empty or reversed range, a range outside the stage's limits,
        or more than 10 000 points, at the call.
    """
    plan = "raster_scan"
    xs, ys, step, extra = _check_raster(stage, tcspc, x_range, y_range, step, readables, plan)
    _md = _raster_md(
        plan,
        {
            "stage": repr(stage),
            "tcspc": repr(tcspc),
            "x_range": [float(v) for v in x_range],
            "y_range": [float(v) for v in y_range],
            "step": step,
            "readables": list(map(repr, extra)),
            "snake": bool(snake),
        },
        stage,
        [tcspc.rates, *extra],
        xs,
        ys,
        snake,
        check.metadata(md, plan),
    )

    def run() -> MsgGenerator[RasterMap]:
        rate = np.full((len(ys), len(xs)), np.nan)
        yield from _grid(stage, tcspc, extra, xs, ys, snake, _md, rate)
        return RasterMap(x_um=xs, y_um=ys, rate_cps=rate)

    return run()


@check.checks_at_call
def find_dot(
    stage: Readable,
    tcspc: Flyable,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    step: float,
    readables: Sequence[Readable] = (),
    snake: bool = True,
    refine: bool = True,
    min_contrast: float = 3.0,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[tuple[float, float] | None]:
    """Raster the stage on the count rate, then park on the brightest dot.

    One run: the raster of :func:`raster_scan` in ``primary``; then the position of the
    brightest pixel, refined to the centroid of its 3 x 3 neighbourhood (see
    :func:`locate_dot`); the stage moves there and one event in the stream ``dot`` records
    the parked position and the count rate there. If no pixel stands out from the
    background by ``min_contrast``, the stage goes back to where it was before the plan,
    no ``dot`` event is recorded, and the plan returns None.

    The confocal spot is small (PSF sigma ~0.1 um): use a step of about 0.1 um around where
    the dot should be.

    Parameters
    ----------
    stage : Readable
        The piezo stage (:class:`qd_bluesky.devices.PiezoStage`).
    tcspc : Flyable
        The TCSPC card, whose rate meters are the detector.
    x_range, y_range : (float, float)
        First and last raster position of each axis (um).
    step : float
        Grid spacing (um), > 0.
    readables : sequence of Readable, optional
        Extra devices read at every point.
    snake : bool, optional
        Scan every other row backwards.
    refine : bool, optional
        Park on the centroid around the brightest pixel instead of the pixel itself.
    min_contrast : float, optional
        Brightest pixel / background (10th percentile of the map) needed to call it a dot.
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    (float, float) or None
        Where the stage parked (x, y in um), or None if no dot was found.

    Raises
    ------
    ValueError
        Bad raster arguments or ``min_contrast`` <= 0, at the call.
    """
    plan = "find_dot"
    xs, ys, step, extra = _check_raster(stage, tcspc, x_range, y_range, step, readables, plan)
    min_contrast = check.positive(min_contrast, "min_contrast", plan)
    _md = _raster_md(
        plan,
        {
            "stage": repr(stage),
            "tcspc": repr(tcspc),
            "x_range": [float(v) for v in x_range],
            "y_range": [float(v) for v in y_range],
            "step": step,
            "readables": list(map(repr, extra)),
            "snake": bool(snake),
            "refine": bool(refine),
            "min_contrast": min_contrast,
        },
        stage,
        [tcspc.rates, *extra],
        xs,
        ys,
        snake,
        check.metadata(md, plan),
    )

    def run() -> MsgGenerator[tuple[float, float] | None]:
        x0 = yield from bps.rd(stage.x)
        y0 = yield from bps.rd(stage.y)
        rate = np.full((len(ys), len(xs)), np.nan)
        found: list[tuple[float, float] | None] = [None]

        def park() -> MsgGenerator[None]:
            where = locate_dot(RasterMap(xs, ys, rate), refine=refine, min_contrast=min_contrast)
            if where is None:
                logger.warning(
                    "%s: no dot in the raster (no pixel above %g x the background); the stage "
                    "returns to (%g, %g) um",
                    plan,
                    min_contrast,
                    x0,
                    y0,
                )
                yield from bps.mv(stage.x, x0, stage.y, y0)
                return
            yield from bps.mv(stage.x, where[0], stage.y, where[1])
            yield from bps.trigger_and_read(
                [stage.x, stage.y, tcspc.rates, *extra], name=DOT_STREAM
            )
            found[0] = where

        def park_before_close(msg: Msg):
            # The parking and the dot event belong to the raster's run: insert them before
            # grid_scan's close_run.
            if msg.command == "close_run":
                return bpp.pchain(park(), single_gen(msg)), None
            return None, None

        grid = _grid(stage, tcspc, extra, xs, ys, snake, _md, rate)
        yield from bpp.plan_mutator(grid, park_before_close)
        return found[0]

    return run()
