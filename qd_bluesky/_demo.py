"""``qd-bluesky demo``: the paper's experiment on the simulated instrument, end to end.

Starts the simulated IOCs in a child process, finds the dot, steps the bias through the paper's
values, runs a CV scan and a g2 measurement with the live analyzer writing derived runs, stores
everything in the catalog, and writes a report. The IOCs are stopped on the way out, also on
Ctrl-C or an error.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The paper's bias steps (V vs the Pt quasi-reference).
PAPER_BIASES = (0.0, -1.4, -1.7, -1.8, -2.0)


@dataclass(frozen=True)
class DemoSettings:
    """Durations of the demo's plans; :meth:`quick` is the ~2 min version."""

    dwell_s: float = 30.0
    #: The 0 V dwell: X- visits take ~2 % of the time at 0 V, so the X0 and X- clusters of
    #: the FLID (gammaA/gamma0, tau(X0)) need the paper's 60 s; 45 s still finds both.
    zero_bias_dwell_s: float = 60.0
    cv_rate_v_per_s: float = 0.2  # 0 -> -2 -> 0 V in 20 s, as in the paper
    g2_duration_s: float = 20.0
    raster_half_width_um: float = 1.5
    raster_step_um: float = 0.75

    def dwells(self) -> list[float]:
        """The dwell (s) at each of :data:`PAPER_BIASES`."""
        return [self.zero_bias_dwell_s if b == 0.0 else self.dwell_s for b in PAPER_BIASES]

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(
            dwell_s=8.0,
            zero_bias_dwell_s=45.0,
            cv_rate_v_per_s=1.0,
            g2_duration_s=5.0,
            raster_half_width_um=1.0,
            raster_step_um=1.0,
        )


@dataclass
class DemoResult:
    """What the demo did: the raw runs, their derived runs and the report."""

    data_dir: Path
    raw_uids: dict[str, str] = field(default_factory=dict)
    derived_uids: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class PlanProgress:
    """A progress bar per plan: one tick per marker event (bias step, raster point)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None
        self._descriptors: set[str] = set()

    def __call__(self, name: str, doc: dict) -> None:
        if not self.enabled or "raw_uid" in doc:
            return
        if name == "start":
            from tqdm import tqdm

            total = doc.get("num_points")
            self._bar = tqdm(
                total=total if isinstance(total, int) and total > 0 else None,
                desc=doc.get("plan_name", "plan"),
                unit="step",
                leave=True,
                file=sys.stderr,
            )
        elif name == "descriptor" and doc.get("name") in ("primary",):
            self._descriptors.add(doc["uid"])
        elif name == "event" and self._bar is not None and doc["descriptor"] in self._descriptors:
            self._bar.update(1)
        elif name == "stop" and self._bar is not None:
            self._bar.set_postfix_str(doc.get("exit_status", ""))
            self._bar.close()
            self._bar = None


def run_demo(
    data_dir: str | Path | None = None,
    *,
    port: int | None = None,
    settings: DemoSettings | None = None,
    seed: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    field: int | None = None,
) -> DemoResult:
    """Run the demo; see the module docstring.

    Parameters
    ----------
    data_dir
        Data directory of the embedded catalog (default: ``$QD_BLUESKY_DATA`` or the per-user
        directory).
    port
        CA port of the simulated IOCs (default: a free loopback port).
    settings
        Durations; default :class:`DemoSettings` (about 5 minutes).
    seed
        Seed of the simulated sample.
    progress
        Progress bars on stderr.
    echo
        Where the narration goes.
    field
        Run on a survey field of this many dots (``qd-bluesky sim --field``): ``find_dots``
        rasters it first and the experiment runs on the brightest dot found.
    """
    from bluesky.utils import RunEngineInterrupted

    from . import plans
    from ._errors import QdBlueskyError
    from ._session import ctrl_c_pauses, open_session
    from .catalog import DataLayout, resolve_data_dir
    from .iocs import SimulatedInstrumentProcess
    from .report import derived_from_run, write_report

    settings = settings or DemoSettings()
    t_start = time.monotonic()
    result = DemoResult(resolve_data_dir(data_dir))
    layout = DataLayout(result.data_dir)
    layout.create()
    echo(f"catalog: {result.data_dir}")
    area = None
    if field is not None:
        from .sim import default_area_um

        area = default_area_um(field)
    ioc = SimulatedInstrumentProcess(
        layout.photons, seed=seed, port=port, prefix=None, field=field, area_um=area
    )
    echo("starting the simulated instrument (potentiostat, TCSPC card, laser, stage) ...")
    with ioc:
        echo(f"  serving {ioc.prefix}* on 127.0.0.1:{ioc.port}")
        # Ctrl-C stops the demo at once (bluesky's own handler would only defer a pause
        # until a checkpoint, and the photon plans have none): pause now, then abort.
        session = open_session(
            prefix=ioc.prefix,
            port=ioc.port,
            data_dir=result.data_dir,
            require_instrument=True,
            connect_timeout=30,
            interactive=False,
            progress=progress,
            handle_sigint=False,
        )
        RE, inst, analyzer, catalog = (  # noqa: N806
            session.RE,
            session.instrument,
            session.analyzer,
            session.catalog,
        )
        RE.subscribe(PlanProgress(enabled=progress))
        x0, y0 = float(inst.stage.x.position), float(inst.stage.y.position)
        if area is not None:
            echo(f"find_dots over the {area:g} um field ...")
            spots: list[Any] = []

            def find() -> Any:
                half = area / 2
                spots.extend(
                    (
                        yield from plans.find_dots(
                            inst.stage,
                            inst.tcspc,
                            x_range=(-half, half),
                            y_range=(-half, half),
                            step=0.25,
                        )
                    )
                )

            RE(find())
            if not spots:
                raise QdBlueskyError("the demo found no dot in the field")
            x0, y0 = spots[0].x_um, spots[0].y_um
        w = settings.raster_half_width_um
        steps: list[tuple[str, Any]] = [
            (
                "find_dot",
                plans.find_dot(
                    inst.stage,
                    inst.tcspc,
                    x_range=(x0 - w, x0 + w),
                    y_range=(y0 - w, y0 + w),
                    step=settings.raster_step_um,
                ),
            ),
            (
                "bias_steps",
                plans.bias_steps(inst.tcspc, inst.pot, PAPER_BIASES, settings.dwells()),
            ),
            (
                "cv_scan",
                plans.cv_scan(inst.tcspc, inst.pot, 0.0, -2.0, 0.0, settings.cv_rate_v_per_s, 1),
            ),
            (
                "g2_measurement",
                plans.g2_measurement(
                    inst.tcspc, settings.g2_duration_s, potentiostat=inst.pot, bias=0.0
                ),
            ),
        ]
        try:
            with ctrl_c_pauses(RE) as interrupted:
                for name, plan in steps:
                    echo(f"{name} ...")
                    try:
                        uids = RE(plan)
                    except RunEngineInterrupted:
                        uids = ()
                    if interrupted.is_set():
                        if RE.state != "idle":
                            RE.abort("interrupted by Ctrl-C")
                        analyzer.wait(30)  # the derived runs of what was recorded
                        raise KeyboardInterrupt
                    if uids:
                        result.raw_uids[name] = uids[0]
                if not analyzer.wait(60):
                    echo("warning: the live analysis did not finish within 60 s")
        finally:
            # Whatever happened, let the derived runs of what was recorded reach the
            # catalog before it closes.
            analyzer.wait(60)
            for device in inst:
                device.destroy()
    echo("simulated instrument stopped")
    try:
        for name, uid in result.raw_uids.items():
            outcome = analyzer.outcomes.get(uid)
            if outcome is not None:
                result.derived_uids[name] = outcome.derived_uid
                if outcome.exit_status != "success":
                    echo(
                        f"warning: analysis of {name} ended {outcome.exit_status}: {outcome.reason}"
                    )
        runs = [
            (result.raw_uids[name], derived_from_run(catalog.client[uid]))
            for name, uid in result.derived_uids.items()
            if name != "find_dot"
        ]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        report = write_report(catalog.reports_dir / f"demo-{stamp}", runs)
        result.report_dir = report.directory
        result.summary = report.summary
    finally:
        session.close()
    result.seconds = time.monotonic() - t_start
    return result
