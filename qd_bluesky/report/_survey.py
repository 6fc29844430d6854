"""The survey report: the field coloured by class, each dot's FLID thumbnail, the class counts."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._figures import _save
from ._load import DerivedData

#: Colour of each class, and of the dots that were not classified.
CLASS_COLOURS = {
    "deep": "tab:red",
    "shallow": "tab:orange",
    "none": "tab:blue",
    "brightening": "tab:green",
    "not single": "tab:purple",
    "other": "tab:gray",
}


def dot_class(row: Mapping[str, Any]) -> str:
    """The class a row is counted and coloured as: its charging class, ``not single`` or
    ``other`` (bleached, unreachable, failed)."""
    if row.get("status") == "measured":
        return str(row["charging"])
    return "not single" if row.get("status") == "not single" else "other"


def class_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many dots fell in each class of :data:`CLASS_COLOURS` (zeros included)."""
    counts = Counter(dot_class(r) for r in rows)
    return {c: int(counts.get(c, 0)) for c in CLASS_COLOURS}


def survey_map(
    rows: Sequence[Mapping[str, Any]], path: Path, *, area_um: float, centre_um=(0.0, 0.0)
) -> Path:
    """The field: every dot at its position, coloured by class and labelled with its id."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    half = 0.5 * area_um
    ax.set_xlim(centre_um[0] - half, centre_um[0] + half)
    ax.set_ylim(centre_um[1] - half, centre_um[1] + half)
    ax.set_aspect("equal")
    for cls, colour in CLASS_COLOURS.items():
        pts = [r for r in rows if dot_class(r) == cls]
        if pts:
            ax.scatter(
                [r["x_um"] for r in pts], [r["y_um"] for r in pts], s=60, c=colour, label=cls
            )
    for r in rows:
        ax.annotate(
            str(r["dot_id"]),
            (r["x_um"], r["y_um"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.set_title("survey: dots by class")
    if rows:
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def flid_thumbnails(
    rows: Sequence[Mapping[str, Any]], derived: Mapping[int, DerivedData | None], path: Path
) -> Path | None:
    """Each classified dot's FLID (intensity against lifetime of the CV scan's 20 ms bins)."""
    shown = [r for r in rows if (derived.get(r["dot_id"]) or {}).get("flid")]
    if not shown:
        return None
    cols = min(4, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(2.6 * cols, 2.3 * nrows))
    for i, r in enumerate(shown):
        ax = fig.add_subplot(nrows, cols, i + 1)
        flid = derived[r["dot_id"]]["flid"]  # type: ignore[index]
        life, inten = np.asarray(flid["lifetime_ns"]), np.asarray(flid["intensity_cps"]) / 1e3
        ok = np.isfinite(life) & np.isfinite(inten)
        ax.scatter(life[ok], inten[ok], s=3, c=np.asarray(flid["bias_v"])[ok], cmap="viridis")
        ax.set_title(
            f"dot {r['dot_id']}: {dot_class(r)}",
            fontsize=8,
            color=CLASS_COLOURS.get(dot_class(r), "k"),
        )
        ax.tick_params(labelsize=6)
        ax.set_xlabel("lifetime (ns)", fontsize=7)
        ax.set_ylabel("kcps", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def write_survey_report(
    directory: str | Path,
    rows: Sequence[Mapping[str, Any]],
    derived: Mapping[int, DerivedData | None],
    *,
    area_um: float,
    centre_um: tuple[float, float] = (0.0, 0.0),
) -> Path:
    """Write ``survey_map.png``, ``flid_thumbnails.png``, ``survey.json`` and ``survey.md``.

    Parameters
    ----------
    directory
        Created if needed.
    rows
        The survey table (the ``dots`` stream of the survey run).
    derived
        Each dot's CV derived run by ``dot_id`` (None or missing: no thumbnail).
    area_um, centre_um
        The surveyed square.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    survey_map(rows, directory / "survey_map.png", area_um=area_um, centre_um=centre_um)
    flid_thumbnails(rows, derived, directory / "flid_thumbnails.png")
    counts = class_counts(rows)
    (directory / "survey.json").write_text(
        json.dumps({"class_counts": counts, "dots": len(rows)}, indent=2) + "\n"
    )
    lines = ["| class | dots |", "| --- | --- |", *(f"| {c} | {n} |" for c, n in counts.items())]
    lines += [
        "",
        "| dot | x (um) | y (um) | status | class | g2(0) | g2(0) without background |",
        "| --- " * 7 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dot_id']} | {r['x_um']:.2f} | {r['y_um']:.2f} | {r['status']} | "
            f"{r.get('charging', '')} | {r.get('g2_zero', math.nan):.2f} | "
            f"{r.get('g2_zero_corrected', math.nan):.2f} |"
        )
    (directory / "survey.md").write_text("\n".join(lines) + "\n")
    return directory
