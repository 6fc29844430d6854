"""A laser's power calibration: intensity in per mille -> average power at the sample (W).

A PicoQuant SLM 828 driver takes an intensity in per mille of the head's control voltage, not
a power. The lab measures the power at the sample (after the objective) with a power meter at
a few intensities and writes them into a file:

CSV, a header row and one row per point (``#`` starts a comment)::

    # Sepia II SLM 828 + LDH-D-C-440, ND 3.0, at the sample plane, 2026-11-30
    intensity_permille,power_w
    0,0
    400,0
    600,2.0e-8
    1000,3.0e-7

or JSON: ``{"points": [[0, 0.0], [400, 0.0], [600, 2.0e-8], [1000, 3.0e-7]]}`` (extra keys,
e.g. ``"comment"``, are kept as the description). Intensities rise strictly within 0..1000,
powers never fall. Between points the power is interpolated linearly; a power request is
served by the whole per mille whose interpolated power is nearest.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Intensity range of the SLM 828 (per mille of the head's control voltage).
PERMILLE_MAX = 1000
#: The SLM 828's internal repetition rates (Hz), by frequency index (Sepia2_Def.h).
SLM_828_RATES_HZ = (80e6, 40e6, 20e6, 10e6, 5e6, 2.5e6)

_HEADER = ("intensity_permille", "power_w")


@dataclass(frozen=True)
class PowerCalibration:
    """Power at the sample (W) against the driver's intensity (per mille), interpolated."""

    permille: tuple[float, ...]
    power_w: tuple[float, ...]
    description: str = ""

    def __post_init__(self) -> None:
        k, p = np.asarray(self.permille, float), np.asarray(self.power_w, float)
        if len(k) < 2 or len(k) != len(p):
            raise ValueError("a power calibration needs at least two (per mille, W) points")
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(p))):
            raise ValueError("a power calibration holds only finite numbers")
        if k[0] < 0 or k[-1] > PERMILLE_MAX or np.any(np.diff(k) <= 0):
            raise ValueError(
                f"the calibration's intensities must rise strictly in 0..{PERMILLE_MAX} per mille"
            )
        if p[0] < 0 or np.any(np.diff(p) < 0):
            raise ValueError("the calibration's powers must be >= 0 W and never fall")
        if p[-1] <= 0:
            raise ValueError("the calibration never reaches a power above 0 W")

    @property
    def power_range_w(self) -> tuple[float, float]:
        """Lowest and highest power (W) the calibration covers."""
        return float(self.power_w[0]), float(self.power_w[-1])

    def power_at(self, permille: int) -> float:
        """Power (W) at the sample at ``permille``."""
        return float(np.interp(permille, self.permille, self.power_w))

    def permille_for(self, power_w: float) -> int:
        """The whole per mille whose power is nearest ``power_w``.

        Raises
        ------
        ValueError
            ``power_w`` lies outside the calibrated range (one line, with the range).
        """
        low, high = self.power_range_w
        if not low <= power_w <= high:
            raise ValueError(
                f"power {power_w:.4g} W is outside the calibrated range "
                f"{low:.4g}..{high:.4g} W at the sample"
            )
        steps = np.arange(int(np.ceil(self.permille[0])), int(self.permille[-1]) + 1)
        powers = np.interp(steps, self.permille, self.power_w)
        return int(steps[int(np.argmin(np.abs(powers - power_w)))])


def rate_label(rate_hz: float) -> str:
    """The ``frequency`` ENUM string of a rate: ``"2.5 MHz"``, ``"80 MHz"``, ``"500 kHz"``."""
    if rate_hz >= 1e6:
        return f"{rate_hz / 1e6:g} MHz"
    return f"{rate_hz / 1e3:g} kHz"


def rate_index(rates: tuple[float, ...], rate_hz: float) -> int | None:
    """Index of ``rate_hz`` in ``rates`` (to 1 ppm), None if it is not there."""
    for index, rate in enumerate(rates):
        if abs(rate - rate_hz) <= 1e-6 * rate:
            return index
    return None


def load_power_calibration(path: str | Path) -> PowerCalibration:
    """Read a calibration file (CSV or JSON, see the module docstring).

    Raises
    ------
    ValueError
        The file is missing, unreadable or breaks the rules; one line naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the power calibration {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            points = data["points"]
            comment = str(data.get("comment", ""))
        else:
            lines = [line for line in text.splitlines() if line.strip()]
            comment = " ".join(ln.lstrip("# ").strip() for ln in lines if ln.startswith("#"))
            rows = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
            if not rows or tuple(c.strip() for c in rows[0]) != _HEADER:
                raise ValueError(f"the first row must be the header {','.join(_HEADER)}")
            points = rows[1:]
        permille = tuple(float(row[0]) for row in points)
        power = tuple(float(row[1]) for row in points)
        return PowerCalibration(permille, power, description=comment or path.name)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"power calibration {path}: {exc}") from None


#: The simulated laser's calibration: an LDH head above threshold, covering the power PV's
#: 0..1 mW (shape only; a lab measures its own).
SIMULATED_CALIBRATION = PowerCalibration(
    (0, 400, 500, 600, 700, 800, 900, 1000),
    (0.0, 0.0, 4e-9, 1.5e-8, 4e-8, 1e-7, 1e-5, 1e-3),
    description="simulated LDH head",
)
