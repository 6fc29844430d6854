"""A synthetic bias-cycling recording, fast enough for a 3 h soak (270 M photons).

Each cycle sweeps 0 -> ``vertex`` -> 0 V linearly in ``cycle_s``. The dot follows the paper's
statistical scaling model (Eq. 1-2) with a smooth charge number: N = 1 (X0) above -1.4 V and
growing linearly to ``n_max`` at -2 V, so tau = tau0 / (N [1 + r (N - 1)]) and the detected
intensity is I0 / (1 + r (N - 1)). With the defaults (tau0 = 125 ns, r = 0.5, n_max = 16,
I0 = 35 kc/s) -2 V gives tau = 0.92 ns and an intensity drop of 8.5; a cycle averages
~27 kc/s, so 540 cycles of 20 s hold ~270 M photons.

Arrivals are Poisson in 1 ms slices at the intensity of the slice's centre; the microtime is
an exponential delay after a 2 ns rise, blurred by a 400 ps FWHM IRF, wrapped at the 400 ns
period, with ``background`` of the photons uniform. Channels are random (no antibunching: this
is a load and memory test, not a g2 test). No blinking, so the truth at the start of every
cycle is X0: (I0, tau0), which is what the reversibility stream must find.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qd_bluesky.analysis import PhotonHdf5Writer

PERIOD_S = 400e-9
MICROTIME_UNIT_S = 25e-12
MICROTIME_BINS = 16000
SLICE_S = 1e-3
#: Bias markers in the file, as the IOC writes them (one per 50 ms tick).
MARKER_S = 0.05


@dataclass(frozen=True)
class CyclingDot:
    """The model dot and the waveform (see the module docstring)."""

    intensity_x0_cps: float = 35e3
    tau_x0_s: float = 125e-9
    gamma_ratio: float = 0.5
    n_max: float = 16.0
    onset_v: float = -1.4
    vertex_v: float = -2.0
    cycle_s: float = 20.0
    background: float = 0.02

    def bias(self, t_in_cycle: np.ndarray) -> np.ndarray:
        half = self.cycle_s / 2
        frac = np.where(t_in_cycle < half, t_in_cycle / half, 2.0 - t_in_cycle / half)
        return self.vertex_v * frac

    def charge(self, bias_v: np.ndarray) -> np.ndarray:
        depth = np.clip((self.onset_v - bias_v) / (self.onset_v - self.vertex_v), 0.0, 1.0)
        return 1.0 + (self.n_max - 1.0) * depth

    def tau_s(self, bias_v: np.ndarray) -> np.ndarray:
        n = self.charge(bias_v)
        return self.tau_x0_s / (n * (1.0 + self.gamma_ratio * (n - 1.0)))

    def intensity_cps(self, bias_v: np.ndarray) -> np.ndarray:
        n = self.charge(bias_v)
        return self.intensity_x0_cps / (1.0 + self.gamma_ratio * (n - 1.0))


def cycle_photons(dot: CyclingDot, k: int, rng: np.random.Generator):
    """Photons of cycle ``k``: (macrotime ticks, microtime bins, channel), time-ordered."""
    n_slices = round(dot.cycle_s / SLICE_S)
    t_mid = (np.arange(n_slices) + 0.5) * SLICE_S
    bias = dot.bias(t_mid)
    counts = rng.poisson(dot.intensity_cps(bias) * SLICE_S)
    n = int(counts.sum())
    slice_of = np.repeat(np.arange(n_slices), counts)
    t = (slice_of + rng.random(n)) * SLICE_S + k * dot.cycle_s
    macro = np.sort((t / PERIOD_S).astype(np.int64))
    tau = dot.tau_s(bias)[slice_of]
    sigma = 0.4e-9 / 2.3548
    delay = 2e-9 + rng.exponential(1.0, n) * tau + rng.normal(0.0, sigma, n)
    flat = rng.random(n) < dot.background
    delay[flat] = rng.uniform(0.0, PERIOD_S, int(flat.sum()))
    micro = (np.mod(delay, PERIOD_S) / MICROTIME_UNIT_S).astype(np.int64)
    micro = np.minimum(micro, MICROTIME_BINS - 1).astype(np.uint16)
    return macro, micro, rng.integers(0, 2, n, dtype=np.uint8)


def cycle_markers(dot: CyclingDot, k: int, macro: np.ndarray, first_row: int):
    """``/user/bias`` markers of cycle ``k``: (photon_index, bias_v) every ``MARKER_S``."""
    t = np.arange(0.0, dot.cycle_s, MARKER_S)
    ticks = ((t + k * dot.cycle_s) / PERIOD_S).astype(np.int64)
    rows = first_row + np.searchsorted(macro, ticks, side="left")
    return rows, dot.bias(t)


def write_cycling(
    path: Path, cycles: int, *, dot: CyclingDot | None = None, seed: int = 0
) -> Iterator[tuple[int, int]]:
    """Write ``cycles`` cycles into a Photon-HDF5 file; yield ``(first_row, rows)`` per cycle.

    The generator appends one cycle per step, so a consumer can follow the file as it grows
    (SWMR), as the analyzer follows the IOC's file.
    """
    dot = dot or CyclingDot()
    rng = np.random.default_rng(seed)
    with PhotonHdf5Writer(
        path,
        macrotime_unit_s=PERIOD_S,
        microtime_unit_s=MICROTIME_UNIT_S,
        microtime_bins=MICROTIME_BINS,
        rep_rate_hz=1 / PERIOD_S,
        chunk_rows=1 << 16,
        swmr=True,
        user_columns={"bias": {"photon_index": np.int64, "bias_v": np.float64}},
    ) as writer:
        row = 0
        for k in range(cycles):
            macro, micro, chan = cycle_photons(dot, k, rng)
            rows, bias = cycle_markers(dot, k, macro, row)
            writer.append_user("bias", photon_index=rows, bias_v=bias)
            writer.append(macro, micro, chan)
            yield row, row + len(macro)
            row += len(macro)
