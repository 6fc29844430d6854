"""The unit tier of the plans: message sequences without any IOC.

The devices are the real device classes made fake by ``ophyd.sim.make_fake_device`` (no
Channel Access, nothing connects); the plans run through bluesky's ``RunEngineSimulator``,
whose handlers answer the ``read`` messages of ``bps.rd``.
"""

from types import SimpleNamespace

import pytest
from bluesky.simulators import RunEngineSimulator
from ophyd.sim import make_fake_device

from qd_bluesky.devices import PiezoStage, Potentiostat, TcspcCard

#: The stage's soft limits (um), as the simulated IOC serves them.
STAGE_LIMITS_UM = (-100.0, 100.0)


@pytest.fixture
def inst() -> SimpleNamespace:
    """Unconnected fakes of the instrument's devices, named as ``make_instrument`` names them."""
    stage = make_fake_device(PiezoStage)("qd:stage:", name="stage")
    for axis in (stage.x, stage.y, stage.z):
        axis.user_setpoint.sim_set_limits(STAGE_LIMITS_UM)
    return SimpleNamespace(
        pot=make_fake_device(Potentiostat)("qd:pot:", name="pot"),
        tcspc=make_fake_device(TcspcCard)("qd:tcspc:", name="tcspc"),
        stage=stage,
    )


@pytest.fixture
def sim(inst) -> RunEngineSimulator:
    """A simulator answering what the plans read: the IOC's bias limits, the card's mode and
    a bias of -0.3 V before the plan."""
    sim = RunEngineSimulator()
    sim.add_read_handler_for(inst.pot.bias_low_limit, -2.0)
    sim.add_read_handler_for(inst.pot.bias_high_limit, 1.0)
    sim.add_read_handler_for(inst.tcspc.mode, "T3")
    sim.add_read_handler_for(inst.pot, -0.3)
    return sim
