"""Compile the simulator's numba kernels before they are needed in a hurry."""

from __future__ import annotations

import functools

from ._presets import PRESETS
from ._sample import Sample
from ._stream import SingleDot


@functools.cache
def warm_up() -> None:
    """Run every kernel the sample uses once, on a throwaway sample.

    With numba's on-disk cache this takes milliseconds; on a fresh install it compiles them
    (seconds). A simulated IOC calls it before it serves, because a compilation inside its
    event loop would stall Channel Access and make puts time out.
    """
    sample = Sample(preset="qd1", seed=0, n_dots=2)
    x, y, z = sample.home_um
    sample.set_bias(0.0, 0.0)
    sample.advance(0.01)
    for i in range(5):  # a ramp: bias changes between photon ticks
        sample.set_bias(-0.4 * (i + 1), 0.01 + 0.002 * i)
    sample.advance(0.03)
    sample.set_laser(emission=True, power_w=60e-9, rep_rate_hz=5e6, t_s=0.03)
    sample.set_position(x + 5.0, y, z, 0.03)
    sample.advance(0.04)
    sample.expected_rate_cps(x, y, z)
    sample.cell.current_a(-1.0, 0.2, 0.04)
    sample.set_bias(0.0, 0.04)
    sample.advance(0.05)
    sample.set_switching(-1.0, 0.0, 100e-6, 10, 0.05)  # the switching mode's chain kernel
    sample.advance(0.06)
    # The other blinking model's chain kernel (the presets use both).
    other = "markov" if sample.dots[0].blinking == "power-law" else "power-law"
    SingleDot(PRESETS["qd1"].with_(blinking=other), seed=0).advance(0.01)
