"""Text lines of ``qd-bluesky analyze --levels``."""

from __future__ import annotations

from collections.abc import Callable


def format_levels(lv: dict, fmt: Callable[..., str]) -> list[str]:
    """Readable lines of the ``levels`` entry of an ``analyze_file`` result."""
    lines = [
        f"levels       {len(lv['levels'])} between {len(lv['change_points_s'])} change points "
        f"({lv['confidence']:.0%} confidence), {len(lv['groups'])} groups"
    ]
    for g in lv["groups"]:
        lines.append(
            f"  group {g['group']}    {g['intensity_cps']:,.0f} c/s, "
            f"{fmt(g['lifetime_ns'], '.2f', ' ns')}, {g['time_fraction']:.1%} of the time, "
            f"{g['num_levels']} levels"
        )
    for kind in ("on", "off"):
        d = lv["blinking"][kind]
        law = (
            "no power-law fit (too few dwells)"
            if d["alpha"] is None
            else f"alpha {d['alpha']:.2f} +- {d['alpha_stderr']:.2f} "
            f"above {d['xmin_s'] * 1e3:.3g} ms"
        )
        lines.append(f"  {kind:<3} dwells {d['dwells']}: {law}")
    return lines
