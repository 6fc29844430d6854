"""Argument checks that run when a plan is called, before it exists as a generator.

They read no device state: a bias is checked against the potentiostat's client-side window
here, and against the IOC's limits (read with ``bps.rd``) inside the plan, before any move
(:func:`bias_window`). Every check raises a ``ValueError`` (or the devices'
:class:`UnsafeBiasError`, itself a ``ValueError``) whose one-line message starts with the plan's
name and names the argument.
"""

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import MsgGenerator

PlanFunction = TypeVar("PlanFunction", bound=Callable[..., Any])

#: Largest raster accepted (points); at >= 0.5 s per point (one rate-meter gate) 10 000 points
#: already take 1.4 h, so more is almost certainly a wrong step or range.
MAX_RASTER_POINTS = 10_000


def checks_at_call(func: PlanFunction) -> PlanFunction:
    """Mark a plan that checks its arguments when called and returns its message generator.

    Such a function is not a generator function, so it carries bluesky's plan marker
    (``bluesky.utils.is_plan``), by which bluesky-queueserver lists plans. Nothing is
    wrapped: the signature and annotations stay the function's own.
    """
    func._is_plan_ = True  # type: ignore[attr-defined]
    return func


def number(value: Any, name: str, plan: str, unit: str = "") -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{plan}: {name} must be a number{_in(unit)}, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{plan}: {name} must be finite, not {value}")
    return value


def positive(value: Any, name: str, plan: str, unit: str = "") -> float:
    """``value`` as a finite float > 0."""
    value = number(value, name, plan, unit)
    if value <= 0:
        raise ValueError(f"{plan}: {name} must be > 0{_sp(unit)}, not {value:g}")
    return value


def non_negative(value: Any, name: str, plan: str, unit: str = "") -> float:
    """``value`` as a finite float >= 0."""
    value = number(value, name, plan, unit)
    if value < 0:
        raise ValueError(f"{plan}: {name} must be >= 0{_sp(unit)}, not {value:g}")
    return value


def whole(value: Any, name: str, plan: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (an integral float such as 2.0 is accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{plan}: {name} must be a whole number >= {minimum}, not {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number == int(number) and number >= minimum):
        raise ValueError(f"{plan}: {name} must be a whole number >= {minimum}, not {value!r}")
    return int(number)


def bias(
    potentiostat: Any,
    value: Any,
    name: str,
    plan: str,
    window: tuple[float, float] | None = None,
) -> float:
    """``value`` as a float inside the safe window (``UnsafeBiasError`` if not).

    ``window``: the safe window (V); default the potentiostat's client-side one (reads nothing).
    """
    value = number(value, name, plan, "V")
    try:
        potentiostat.check_value(
            value, what=name, limits=potentiostat.window() if window is None else window
        )
    except ValueError as exc:  # UnsafeBiasError is one; keep its type, add the plan
        raise type(exc)(f"{plan}: {exc}") from None
    return value


def biases(
    potentiostat: Any, values: Any, plan: str, window: tuple[float, float] | None = None
) -> list[float]:
    """A non-empty sequence of safe biases, as floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{plan}: biases must be a sequence of biases (V), not {values!r}")
    if len(values) == 0:
        raise ValueError(f"{plan}: biases is empty: give at least one bias (V)")
    return [bias(potentiostat, v, f"biases[{i}]", plan, window) for i, v in enumerate(values)]


def dwells(value: Any, count: int, plan: str) -> list[float]:
    """One dwell (s) per bias: a number for all, or a sequence of ``count`` positive numbers."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes)):
        if len(value) != count:
            raise ValueError(
                f"{plan}: dwell has {len(value)} values for {count} biases: give one number, "
                "or one dwell (s) per bias"
            )
        return [positive(v, f"dwell[{i}]", plan, "s") for i, v in enumerate(value)]
    return [positive(value, "dwell", plan, "s")] * count


def bias_window(
    potentiostat: Any, named_biases: Sequence[tuple[str, float]], plan: str
) -> MsgGenerator[None]:
    """Read the IOC's bias limits (``bps.rd``) and refuse any bias outside the narrowed window.

    Runs inside the plan, before anything moves; without a RunEngine (``list(plan)``) nothing
    is read and only the client-side window (checked at the call) applies.
    """
    low = yield from bps.rd(potentiostat.bias_low_limit, default_value=None)
    high = yield from bps.rd(potentiostat.bias_high_limit, default_value=None)
    if low is None or high is None:
        return
    window = potentiostat.window((low, high))
    for name, value in named_biases:
        bias(potentiostat, value, name, plan, window)


def photon_card(tcspc: Any, plan: str) -> None:
    """``tcspc`` looks like a :class:`~qd_bluesky.devices.TcspcCard` (a flyer with rate meters)."""
    needed = ("kickoff", "complete", "describe_collect", "collect_asset_docs", "rates", "data_keys")
    missing = [attr for attr in needed if not hasattr(tcspc, attr)]
    if not missing and not hasattr(tcspc.rates, "num_photons"):
        missing = ["rates.num_photons"]
    if missing:
        raise ValueError(
            f"{plan}: tcspc must be the TCSPC card (a flyer with rate meters, e.g. "
            f"qd_bluesky.devices.TcspcCard); {_name(tcspc)} has no {', '.join(missing)}"
        )


def potentiostat(pot: Any, plan: str, *, cv: bool = False, switching: bool = False) -> None:
    """``pot`` looks like a :class:`~qd_bluesky.devices.Potentiostat` (and has ``cv`` or
    ``switching`` if asked)."""
    needed = ("set", "check_value", "window", "bias_low_limit", "bias_high_limit", "readback")
    needed += ("cv", "current") if cv else ()
    needed += ("switching", "current") if switching else ()
    missing = [attr for attr in needed if not hasattr(pot, attr)]
    if missing:
        raise ValueError(
            f"{plan}: potentiostat must be a potentiostat (e.g. qd_bluesky.devices."
            f"Potentiostat); {_name(pot)} has no {', '.join(missing)}"
        )


def readables(values: Any, plan: str, *, taken: Sequence[Any]) -> list[Any]:
    """Extra readables: a sequence of readable devices, none of which the plan reads already."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{plan}: readables must be a sequence of devices, not {values!r}")
    values = list(values)
    for i, dev in enumerate(values):
        if not (hasattr(dev, "read") and hasattr(dev, "describe")):
            raise ValueError(f"{plan}: readables[{i}] ({_name(dev)}) is not readable")
        if any(dev is t for t in taken):
            raise ValueError(
                f"{plan}: readables[{i}] ({_name(dev)}) is read by the plan already; leave it out"
            )
    return values


def metadata(md: Any, plan: str) -> dict[str, Any]:
    """User metadata: a mapping that does not override the plan's ``qd`` block."""
    if md is None:
        return {}
    if not isinstance(md, dict):
        raise ValueError(f"{plan}: md must be a dict, not {type(md).__name__}")
    if "qd" in md:
        raise ValueError(
            f"{plan}: md['qd'] is reserved (the plan describes its photon stream there); "
            "use another key"
        )
    return md


def stage(stage: Any, plan: str) -> None:
    """``stage`` has movable ``x`` and ``y`` axes."""
    for axis in ("x", "y"):
        if not hasattr(getattr(stage, axis, None), "set"):
            raise ValueError(
                f"{plan}: stage must have movable x and y axes (e.g. qd_bluesky.devices."
                f"PiezoStage); {_name(stage)}.{axis} is missing or not movable"
            )


def raster_axis(axis: Any, span: Any, step: float, name: str, plan: str) -> np.ndarray:
    """The positions of one raster axis: ``lo, lo + step, ...`` up to ``hi`` (um)."""
    if isinstance(span, (str, bytes)) or not isinstance(span, (Sequence, np.ndarray)):
        raise ValueError(f"{plan}: {name} must be (start, stop) in um, not {span!r}")
    if len(span) != 2:
        raise ValueError(f"{plan}: {name} must be (start, stop) in um, not {span!r}")
    lo, hi = (number(v, f"{name}[{i}]", plan, "um") for i, v in enumerate(span))
    if hi < lo:
        raise ValueError(f"{plan}: {name} must be increasing (start <= stop), not ({lo}, {hi})")
    # (1e-9 of a step: a range written as start + step is not a float-exact multiple)
    if hi > lo and step > (hi - lo) + 1e-9 * step:
        raise ValueError(
            f"{plan}: step {step:g} um is larger than {name} ({lo:g} to {hi:g} um): nothing "
            "to raster"
        )
    for end in (lo, hi):
        try:
            axis.check_value(end)
        except ValueError as exc:
            raise ValueError(f"{plan}: {name}: {exc}") from None
    # A range that is not a multiple of the step stops at the last point inside it.
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    return lo + step * np.arange(n)


def raster_points(nx: int, ny: int, plan: str) -> None:
    """Refuse rasters so large they are almost certainly a mistake."""
    if nx * ny > MAX_RASTER_POINTS:
        raise ValueError(
            f"{plan}: {ny} x {nx} = {nx * ny} raster points is more than {MAX_RASTER_POINTS} "
            "(at >= 0.5 s per point); use a larger step or a smaller range"
        )


def _name(obj: Any) -> str:
    return getattr(obj, "name", None) or repr(obj)


def _in(unit: str) -> str:
    return f" (in {unit})" if unit else ""


def _sp(unit: str) -> str:
    return f" {unit}" if unit else ""
