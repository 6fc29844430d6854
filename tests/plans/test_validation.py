"""What the plans check against the running IOC: its bias limits, read inside the plan.

The checks of plain arguments (at the call, before any message), the plans' message order
and ``locate_dot`` are tested without an IOC in ``tests/unit/plans/``.
"""

from __future__ import annotations

import pytest

from qd_bluesky.devices import UnsafeBiasError
from qd_bluesky.plans import bias_steps, cv_scan


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        (
            lambda i: bias_steps(i.tcspc, i.pot, [0.0, -1.7], 1.0),
            r"^bias_steps: pot: biases\[1\] -1\.700 V is outside .*\[-1\.500, \+1\.000\]",
        ),
        (
            lambda i: cv_scan(i.tcspc, i.pot, 0.0, -1.8, 0.0, 0.2, 1),
            r"^cv_scan: pot: vertex -1\.800 V is outside .*\[-1\.500, \+1\.000\]",
        ),
    ],
    ids=["bias_steps", "cv_scan"],
)
def test_the_ioc_window_narrows_what_plans_accept(bench, factory, pattern):
    """The safe window is the IOC's limits as well: narrowed there, refused before the run."""
    inst = bench.inst
    bias = inst.pot.readback.get(use_monitor=False)
    runs = set(bench.recorder.runs)
    low = inst.pot.bias_low_limit
    low.set(-1.5).wait(5)
    try:
        with pytest.raises(UnsafeBiasError, match=pattern):
            bench.RE(factory(inst))
    finally:
        low.set(-2.0).wait(5)
    assert set(bench.recorder.runs) == runs  # no run opened
    assert inst.pot.readback.get(use_monitor=False) == bias  # nothing moved
