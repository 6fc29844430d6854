"""A photon-correlation (g2) measurement: photons for a while, at one bias if asked."""

from collections.abc import Sequence

from bluesky.protocols import Flyable, Movable, Readable
from bluesky.utils import CustomPlanMetadata, MsgGenerator

from . import _validate as check
from ._md import qd_block, read_photon_mode, start_md
from ._run import photon_run
from ._stubs import acquire_photons, mark_segment, restoring_bias, set_bias


@check.checks_at_call
def g2_measurement(
    tcspc: Flyable,
    duration: float,
    *,
    potentiostat: Movable | None = None,
    bias: float | None = None,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Record photons for ``duration`` seconds for a g2 (antibunching) measurement.

    Both APDs behind the 50/50 splitter record into one photon file; the analyzer computes
    g2 from it. One run with one segment: the acquisition starts, the bias (if given) is set
    and has settled, one marker event is recorded in ``primary`` (photon index, bias and
    current if a potentiostat is given, rate meters), and photons are collected for
    ``duration`` seconds. With ``bias`` the potentiostat returns to its previous bias
    afterwards; without it the bias is only recorded.

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    duration : float
        Seconds of photons, > 0.
    potentiostat : Movable, optional
        The potentiostat: its bias is recorded in the marker (and set, with ``bias``).
    bias : float, optional
        Bias (V) to hold during the measurement; needs ``potentiostat``.
    readables : sequence of Readable, optional
        Extra devices read in the marker event.
    collect_period : float, optional
        Seconds between announcements of new photon rows.
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    str
        The run's uid.

    Raises
    ------
    UnsafeBiasError
        ``bias`` outside the client-side safe window, at the call; outside the IOC's limits
        (read first in the plan), before the run opens and anything moves.
    ValueError
        ``duration`` <= 0, ``bias`` without a potentiostat, ..., at the call.
    """
    plan = "g2_measurement"
    check.photon_card(tcspc, plan)
    if potentiostat is not None:
        check.potentiostat(potentiostat, plan)
    if bias is not None:
        if potentiostat is None:
            raise ValueError(f"{plan}: bias={bias!r} needs a potentiostat (potentiostat=pot)")
        bias = check.bias(potentiostat, bias, "bias", plan)
    duration = check.positive(duration, "duration", plan, "s")
    collect_period = check.positive(collect_period, "collect_period", plan, "s")
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, potentiostat))
    user_md = check.metadata(md, plan)
    plan_args = {
        "tcspc": repr(tcspc),
        "duration": duration,
        "potentiostat": repr(potentiostat) if potentiostat is not None else None,
        "bias": bias,
        "readables": list(map(repr, extra)),
        "collect_period": collect_period,
    }

    def measure() -> MsgGenerator[None]:
        if bias is not None and potentiostat is not None:  # checked together above
            yield from set_bias(potentiostat, bias)
        yield from mark_segment(tcspc, potentiostat, extra)
        yield from acquire_photons(tcspc, duration, collect_period)

    def run() -> MsgGenerator[str]:
        if bias is not None:
            yield from check.bias_window(potentiostat, [("bias", bias)], plan)
        mode = yield from read_photon_mode(tcspc)
        _md = start_md(
            plan,
            plan_args,
            detectors=[tcspc, *extra],
            num_points=1,
            user_md=user_md,
            qd=qd_block(
                tcspc,
                potentiostat,
                segments="steps",
                bias_setpoints=None if bias is None else [bias],
                mode=mode,
            ),
        )
        measured = photon_run(tcspc, measure(), _md)
        if bias is None or potentiostat is None:
            return (yield from measured)
        return (yield from restoring_bias(potentiostat, measured))

    return run()
