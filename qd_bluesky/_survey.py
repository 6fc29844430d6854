"""``qd-bluesky survey``: find the dots of a field and classify each one, end to end.

Starts the simulated instrument with a survey field (or uses a running instrument), runs
:func:`~qd_bluesky.plans.find_dots` over the area and :func:`~qd_bluesky.plans.survey` over
the dots found, with the live analyzer writing derived runs, and writes a survey report.
The survey's plan gets the live analysis through :class:`CatalogResults`: the RunEngine awaits
the derived run of each recorded run (read back from the catalog) without blocking its loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: How long a survey waits for the live analysis of one run (s).
ANALYSIS_TIMEOUT_S = 120.0
#: The derived streams a survey reads back: g2(0), the FLID, the charge-state tomography.
SURVEY_STREAMS = ("g2", "flid", "scaling", "tomography")


class CatalogResults:
    """The derived run of a raw run, once the live analyzer has written it to the catalog.

    Parameters
    ----------
    analyzer
        The session's :class:`~qd_bluesky.callbacks.LiveAnalyzer`.
    client
        The catalog's Tiled client (``session.catalog.client``).
    timeout
        Seconds to wait for one run's analysis.
    """

    def __init__(self, analyzer: Any, client: Any, timeout: float = ANALYSIS_TIMEOUT_S) -> None:
        self.analyzer = analyzer
        self.client = client
        self.timeout = timeout
        self._derived: dict[str, Any] = {}

    def __repr__(self) -> str:
        return "CatalogResults()"

    async def finished(self, raw_uid: str) -> None:
        """Wait (in a worker thread) until the derived run of ``raw_uid`` is in the catalog."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._load, raw_uid)

    def derived(self, raw_uid: str) -> dict | None:
        """The derived run of ``raw_uid`` (stream -> field -> array), None if it failed."""
        return self._derived.get(raw_uid)

    def _load(self, raw_uid: str) -> None:
        from .report import derived_from_run

        deadline = time.monotonic() + self.timeout
        while raw_uid not in self.analyzer.outcomes and time.monotonic() < deadline:
            self.analyzer.wait(0.2)
        outcome = self.analyzer.outcomes.get(raw_uid)
        if outcome is None or outcome.exit_status != "success":
            logger.warning("no analysis of %s: %s", raw_uid, outcome and outcome.reason)
            return
        try:
            run = self.client[outcome.derived_uid]
            present = set(run)
            streams = [s for s in SURVEY_STREAMS if s in present]
            self._derived[raw_uid] = derived_from_run(run, streams)
        except Exception:  # noqa: BLE001 - an analysis failure never aborts the survey
            logger.exception("reading the derived run of %s failed", raw_uid)


@dataclass
class SurveyResult:
    """What the survey found."""

    data_dir: Path
    area_um: float
    found: int = 0
    dots: list[dict[str, Any]] = field(default_factory=list)
    spots: list[Any] = field(default_factory=list)
    raw_uids: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def charging_beyond_x2_fraction(self) -> float | None:
        """Deep dots over the classified single dots (None if none was classified)."""
        classified = [d for d in self.dots if d.get("status") == "measured"]
        if not classified:
            return None
        return sum(d["charging"] == "deep" for d in classified) / len(classified)

    def as_json(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        dots = []
        for d in self.dots:
            row = {k: clean(v) for k, v in d.items()}
            row["raw_uids"] = [u for u in str(d.get("raw_uids", "")).split(",") if u]
            dots.append(row)
        return {
            "found": self.found,
            "dots": dots,
            "charging_beyond_X2_fraction": self.charging_beyond_x2_fraction,
            "duration_s": self.seconds,
            "area_um": self.area_um,
            "data_dir": str(self.data_dir),
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "interrupted": self.interrupted,
        }


def run_survey(
    data_dir: str | Path | None = None,
    *,
    prefix: str | None = None,
    port: int | None = None,
    dots: int = 6,
    area_um: float | None = None,
    seed: int = 0,
    cv_rate: float = 1.0,
    cv_cycles: int = 2,
    g2_duration: float = 4.0,
    step_um: float = 0.25,
    gate_s: float = 0.1,
    progress: Callable[[str], None] = print,
) -> SurveyResult:
    """Run a survey; see the module docstring.

    Parameters
    ----------
    data_dir
        Data directory of the embedded catalog.
    prefix
        PV prefix of a running instrument; None starts the simulated one with a field of
        ``dots`` sites in a square of side ``area_um``.
    port
        CA port (of the running instrument, or for the simulated one).
    dots, area_um, seed
        The simulated field (``area_um`` default: grows with ``dots``); with ``prefix``,
        ``area_um`` is the side of the square rastered around the stage's position.
    cv_rate, cv_cycles, g2_duration
        Of each dot's CV scan (V/s, cycles) and g2 measurement (s).
    step_um, gate_s
        Coarse raster step and rate-meter gate of :func:`~qd_bluesky.plans.find_dots`.
    progress
        Where the per-dot lines go.
    """
    from bluesky.utils import RunEngineInterrupted

    from . import plans
    from ._session import ctrl_c_pauses, open_session
    from .catalog import DataLayout, resolve_data_dir
    from .iocs import SimulatedInstrumentProcess

    t_start = time.monotonic()
    from .sim import default_area_um

    area = float(area_um) if area_um is not None else 10.0 if prefix else default_area_um(dots)
    result = SurveyResult(resolve_data_dir(data_dir), area)
    layout = DataLayout(result.data_dir)
    layout.create()
    ioc = None
    if prefix is None:
        ioc = SimulatedInstrumentProcess(
            layout.photons, seed=seed, port=port, prefix=None, field=dots, area_um=area
        )
        progress(f"starting the simulated instrument: a field of {dots} sites, {area:g} um ...")
        ioc.start()
        prefix, port = ioc.prefix, ioc.port
    try:
        session = open_session(
            prefix=prefix,
            port=port,
            data_dir=result.data_dir,
            require_instrument=True,
            connect_timeout=30,
            interactive=False,
            progress=False,
            handle_sigint=False,
        )
        RE, inst = session.RE, session.instrument  # noqa: N806
        results = CatalogResults(session.analyzer, session.catalog.client)
        recorder = _DotProgress(progress)
        RE.subscribe(recorder)
        try:
            with ctrl_c_pauses(RE) as interrupted:
                x0 = float(inst.stage.x.position) if ioc is None else 0.0
                y0 = float(inst.stage.y.position) if ioc is None else 0.0
                half = 0.5 * area
                n_points = int(round(area / step_um)) + 1
                progress(f"find_dots: a {n_points} x {n_points} raster, step {step_um:g} um ...")
                spots: list[Any] = []

                def find() -> Any:
                    spots.extend(
                        (
                            yield from plans.find_dots(
                                inst.stage,
                                inst.tcspc,
                                x_range=(x0 - half, x0 + half),
                                y_range=(y0 - half, y0 + half),
                                step=step_um,
                                gate=gate_s,
                            )
                        )
                    )

                try:
                    uids = RE(find())
                    result.raw_uids["find_dots"] = uids[0] if uids else ""
                except RunEngineInterrupted:
                    pass
                result.spots = spots
                result.found = len(spots)
                progress(f"found {len(spots)} dots")
                rows: list[dict[str, Any]] = []
                if spots and not interrupted.is_set():

                    def visit() -> Any:
                        rows.extend(
                            (
                                yield from plans.survey(
                                    inst.stage,
                                    inst.tcspc,
                                    inst.pot,
                                    spots,
                                    results,
                                    g2_duration=g2_duration,
                                    cv_rate=cv_rate,
                                    cv_cycles=cv_cycles,
                                )
                            )
                        )

                    try:
                        uids = RE(visit())
                    except RunEngineInterrupted:
                        uids = ()
                    if uids:
                        result.raw_uids["survey"] = uids[0]
                if interrupted.is_set():
                    if RE.state != "idle":
                        RE.abort("interrupted by Ctrl-C")
                    result.interrupted = True
                session.analyzer.wait(60)
                # An interrupted survey returns nothing: its rows are the events it recorded.
                result.dots = rows or recorder.rows
        finally:
            session.analyzer.wait(60)
            for device in inst:
                device.destroy()
        try:
            from .report import write_survey_report

            stamp = time.strftime("%Y%m%d-%H%M%S")
            report = write_survey_report(
                session.catalog.reports_dir / f"survey-{stamp}",
                result.dots,
                {row["dot_id"]: results.derived(_cv_uid(row)) for row in result.dots},
                area_um=area,
                centre_um=(x0, y0),
            )
            result.report_dir = report
        finally:
            session.close()
    finally:
        if ioc is not None:
            ioc.stop()
    result.seconds = time.monotonic() - t_start
    return result


def _cv_uid(row: dict[str, Any]) -> str:
    uids = [u for u in str(row.get("raw_uids", "")).split(",") if u]
    return uids[1] if len(uids) > 1 else ""


class _DotProgress:
    """One line per dot of the survey, and its rows, from the survey run's events."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.rows: list[dict[str, Any]] = []
        self._survey_descriptors: set[str] = set()
        self._runs: dict[str, str] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start" and "raw_uid" not in doc:
            self._runs[doc["uid"]] = doc.get("plan_name", "")
            if "dot_id" in doc:
                self.echo(f"  dot {doc['dot_id']}: {doc.get('plan_name')} ...")
        elif name == "descriptor" and self._runs.get(doc.get("run_start", "")) == "survey":
            if doc.get("name") == "dots":
                self._survey_descriptors.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self._survey_descriptors:
            d = doc["data"]
            self.rows.append(dict(d))
            g2 = d.get("g2_zero", math.nan)
            own = d.get("g2_zero_corrected", math.nan)
            self.echo(
                f"dot {d['dot_id']} at ({d['x_um']:.2f}, {d['y_um']:.2f}) um: {d['status']}"
                f"{' ' + d['charging'] if d.get('charging') else ''}"
                f" (g2(0) {g2:.2f}{f', {own:.2f} without background' if math.isfinite(own) else ''}"
                f", {d.get('count_rate_cps', math.nan) / 1e3:.1f} kcps)"
            )


def echo_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
