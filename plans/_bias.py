"""Static bias steps with photons over each dwell."""

from collections.abc import Sequence

from bluesky.protocols import Flyable, Movable, Readable
from bluesky.utils import CustomPlanMetadata, MsgGenerator

from . import _validate as check
from ._md import qd_block, read_photon_mode, start_md
from ._run import photon_run
from ._stubs import acquire_photons, mark_segment, restoring_bias, set_bias


@check.checks_at_call
def bias_steps(
    tcspc: Flyable,
    potentiostat: Movable,
    biases: Sequence[float],
    dwell: float | Sequence[float],
    *,
    readables: Sequence[Readable] = (),
    collect_period: float = 0.5,
    md: CustomPlanMetadata | None = None,
) -> MsgGenerator[str]:
    """Hold the dot at each bias for its dwell while photons are recorded.

    One run, one photon file. The acquisition starts first; then for every bias: move and
    wait until it has settled, record a marker event in ``primary`` (the photon index, the
    settled bias and current, the rate meters, ``readables``), and collect photons every
    ``collect_period`` seconds over the dwell. Segment k holds the photon rows from marker k
    to marker k + 1 (the last ones to the end of the file); the photons recorded while
    moving to the first bias belong to no segment. Afterwards the bias returns to where it
    was before the plan, also when the plan fails or is aborted.

    The paper: 60 s per bias at 0, -1.4, -1.7, -1.8 and -2 V::

        RE(bias_steps(tcspc, pot, [0, -1.4, -1.7, -1.8, -2.0], 60))

    A dwell per bias, e.g. a long 0 V segment whose FLID holds enough of the rare X- visits
    for gammaA/gamma0, and shorter charged ones::

        RE(bias_steps(tcspc, pot, [0, -1.4, -2.0], [60, 20, 20]))

    Parameters
    ----------
    tcspc : Flyable
        The TCSPC card (:class:`qd_bluesky.devices.TcspcCard`).
    potentiostat : Movable
        The potentiostat (:class:`qd_bluesky.devices.Potentiostat`).
    biases : sequence of float
        Biases (V vs the quasi-reference), in order; each must lie in the potentiostat's
        safe window.
    dwell : float or sequence of float
        Seconds of photons at each bias (after it has settled): one number for every bias, or
        one per bias.
    readables : sequence of Readable, optional
        Extra devices read in every marker event (e.g. the laser).
    collect_period : float, optional
        Seconds between announcements of new photon rows (the live analysis' latency).
    md : dict, optional
        Metadata for the start document.

    Returns
    -------
    str
        The run's uid.

    Raises
    ------
    UnsafeBiasError
        A bias outside the client-side safe window, at the call; outside the IOC's limits
        (read first in the plan), before the run opens and anything moves.
    ValueError
        Bad arguments (empty ``biases``, a dwell or ``collect_period`` <= 0, a ``dwell``
        sequence whose length differs from ``biases``, ...), at the call.
    """
    plan = "bias_steps"
    check.photon_card(tcspc, plan)
    check.potentiostat(potentiostat, plan)
    setpoints = check.biases(potentiostat, biases, plan)
    dwells = check.dwells(dwell, len(setpoints), plan)
    collect_period = check.positive(collect_period, "collect_period", plan, "s")
    extra = check.readables(readables, plan, taken=(tcspc, tcspc.rates, potentiostat))
    user_md = check.metadata(md, plan)
    plan_args = {
        "tcspc": repr(tcspc),
        "potentiostat": repr(potentiostat),
        "biases": setpoints,
        "dwell": dwells if len(set(dwells)) > 1 else dwells[0],
        "readables": list(map(repr, extra)),
        "collect_period": collect_period,
    }

    def steps() -> MsgGenerator[None]:
        for bias, seconds in zip(setpoints, dwells, strict=True):
            yield from set_bias(potentiostat, bias)
            yield from mark_segment(tcspc, potentiostat, extra)
            yield from acquire_photons(tcspc, seconds, collect_period)

    def run() -> MsgGenerator[str]:
        named = [(f"biases[{i}]", bias) for i, bias in enumerate(setpoints)]
        yield from check.bias_window(potentiostat, named, plan)
        mode = yield from read_photon_mode(tcspc)
        _md = start_md(
            plan,
            plan_args,
            detectors=[tcspc, *extra],
            motors=[potentiostat],
            num_points=len(setpoints),
            user_md=user_md,
            hints={"dimensions": [[[potentiostat.readback.name], "primary"]]},
            qd=qd_block(tcspc, potentiostat, segments="steps", bias_setpoints=setpoints, mode=mode),
        )
        return (yield from restoring_bias(potentiostat, photon_run(tcspc, steps(), _md)))

    return run()
