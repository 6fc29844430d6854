"""The ``qd`` block of the start document: how to map each photon to its bias.

Its layout is the contract between the plans and the live analyzer
(``qd_bluesky.callbacks``); see ``docs/`` and :func:`qd_block`.
"""

from collections.abc import Sequence
from typing import Any, Literal

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

#: Version of the ``qd`` block layout.
QD_SCHEMA = 1
#: Stream of the photon rows (the flyer's stream).
PHOTON_STREAM = "photons"
#: Stream of the segment markers (bias and photon index at each segment start).
MARKER_STREAM = "primary"
#: The photon fields a TCSPC card may write, in the ``photon_keys`` of the block.
PHOTON_FIELDS = ("timestamps", "nanotimes", "detectors")


def qd_block(
    tcspc: Any,
    potentiostat: Any | None,
    *,
    segments: Literal["steps", "continuous"],
    bias_setpoints: Sequence[float] | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """The ``qd`` entry of the start document of a run that records photons.

    Reads nothing: the plan reads the card's mode first (:func:`read_photon_mode`).

    Parameters
    ----------
    tcspc
        The TCSPC card (its ``data_keys`` and rate meters name the keys).
    potentiostat
        The potentiostat whose readback the markers carry, or None (no bias recorded).
    segments
        ``"steps"``: each marker starts a segment at a static bias; ``"continuous"``: the
        bias of each photon comes from the photon file's ``/user/bias`` markers (CV).
    bias_setpoints
        The requested biases in segment order (static steps), else None.
    mode
        The card's mode: only T3 records microtimes, so any other mode (T2) gets
        ``"nanotimes": None``; None (unknown, e.g. without a RunEngine) counts as T3.
    """
    keys = tcspc.data_keys
    t3 = mode is None or mode == "T3"
    return {
        "schema": QD_SCHEMA,
        "photon_stream": PHOTON_STREAM,
        "photon_keys": {
            field: keys.get(field) if t3 or field != "nanotimes" else None
            for field in PHOTON_FIELDS
        },
        "marker_stream": MARKER_STREAM,
        "photon_index_key": tcspc.rates.num_photons.name,
        "bias_key": potentiostat.readback.name if potentiostat is not None else None,
        "segments": segments,
        "bias_setpoints": None if bias_setpoints is None else [float(v) for v in bias_setpoints],
    }


def read_photon_mode(tcspc: Any) -> MsgGenerator[str | None]:
    """The card's mode (``"T3"``, ``"T2"``), read with ``bps.rd``; None without a RunEngine."""
    return (yield from bps.rd(tcspc.mode, default_value=None))


def start_md(
    plan_name: str,
    plan_args: dict[str, Any],
    *,
    detectors: Sequence[Any],
    user_md: dict[str, Any],
    motors: Sequence[Any] = (),
    num_points: int | None = None,
    qd: dict[str, Any] | None = None,
    hints: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The start document's metadata, in the way of ``bluesky.plans``.

    The plan's own keys first, then ``user_md`` (which wins, as in bluesky, except for
    ``qd``, refused earlier); ``hints`` are merged so that user hints add to the plan's.
    """
    md: dict[str, Any] = {
        "plan_name": plan_name,
        "plan_args": plan_args,
        "detectors": [d.name for d in detectors],
        "hints": dict(hints or {}),
        **extra,
    }
    if motors:
        md["motors"] = [m.name for m in motors]
    if num_points is not None:
        md["num_points"] = num_points
        md["num_intervals"] = num_points - 1
    user = dict(user_md)
    user_hints = user.pop("hints", None)
    md.update(user)
    if user_hints:
        md["hints"].update(user_hints)
    if qd is not None:
        md["qd"] = qd
    return md
