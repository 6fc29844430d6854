"""Write a report directory from the derived data of one or more runs."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._figures import FIGURES
from ._level_figures import LEVEL_FIGURES
from ._load import DerivedData
from ._summary import summarize, summary_markdown

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    directory: Path
    figures: list[Path] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def summary_json(self) -> Path:
        return self.directory / "summary.json"

    @property
    def summary_md(self) -> Path:
        return self.directory / "summary.md"


def _merge(runs: Sequence[tuple[str, DerivedData]]) -> DerivedData:
    """One view of several runs: each stream from the first run that has it.

    The scaling fit of a CV scan is kept apart as ``cv_scaling``: its charge-state tomography
    decides the last state that follows the model, while gammaA/gamma0 comes from the static
    0 V trace of a bias-step run when there is one.
    """
    merged: DerivedData = {}
    for _, derived in runs:
        if "tomography" in derived and "scaling" in derived:
            merged.setdefault("cv_scaling", derived["scaling"])
        for stream, data in derived.items():
            merged.setdefault(stream, data)
    return merged


def write_report(
    directory: str | Path,
    runs: Sequence[tuple[str, DerivedData]],
) -> Report:
    """Draw the figures and write ``summary.json`` and ``summary.md`` into ``directory``.

    Parameters
    ----------
    directory
        Created if needed; existing files of the same names are replaced.
    runs
        ``(raw_uid, derived data)`` of each analysed run, e.g. the bias steps, the CV scan and
        the g2 measurement of a session. A figure is drawn from the first run that has the
        streams it needs, and left out when none has.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merged = _merge(runs)
    report = Report(directory)
    for name, draw in {**FIGURES, **LEVEL_FIGURES}.items():
        path = draw(merged, directory / name)
        if path is not None:
            report.figures.append(path)
    summary = summarize(merged, raw_uid=runs[0][0] if runs else None)
    summary["runs"] = [uid for uid, _ in runs]
    summary["figures"] = [p.name for p in report.figures]
    report.summary = summary
    report.summary_json.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    report.summary_md.write_text(summary_markdown(summary))
    return report
