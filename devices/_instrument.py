"""The whole instrument from one PV prefix."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ophyd import Device

from ._errors import InstrumentNotConnectedError
from ._laser import Laser
from ._potentiostat import Potentiostat
from ._stage import PiezoStage
from ._tcspc import TcspcCard

#: Device attribute -> (PV infix, what it is, for messages).
PARTS = {
    "pot": ("pot:", "potentiostat"),
    "tcspc": ("tcspc:", "TCSPC card"),
    "laser": ("laser:", "laser"),
    "stage": ("stage:", "stage motor"),
}


@dataclass(frozen=True)
class Instrument:
    """The four devices of the set-up; iterate over it for all of them."""

    pot: Potentiostat
    tcspc: TcspcCard
    laser: Laser
    stage: PiezoStage
    prefix: str = "qd:"

    def __iter__(self) -> Iterator[Device]:
        return iter((self.pot, self.tcspc, self.laser, self.stage))

    def as_dict(self) -> dict[str, Device]:
        """Devices by name, e.g. to put them into an IPython namespace."""
        return {dev.name: dev for dev in self}


def make_instrument(
    prefix: str = "qd:", *, stage_motors: Sequence[str] | None = None
) -> Instrument:
    """Build the devices for ``prefix`` without waiting for their connections.

    The devices are named ``pot``, ``tcspc``, ``laser`` and ``stage``; the TCSPC card checks the
    laser's interlock before it starts. The stage's axes are the motor records
    ``{prefix}stage:x``, ``y``, ``z``, or the three records ``stage_motors`` names (x, y, z),
    e.g. ``("PI:m1", "PI:m2", "PI:m3")`` for a PI controller under motorPIGCS2.

    Raises
    ------
    ValueError
        ``stage_motors`` is not three record names.
    """
    laser = Laser(f"{prefix}laser:", name="laser")
    return Instrument(
        pot=Potentiostat(f"{prefix}pot:", name="pot"),
        tcspc=TcspcCard(f"{prefix}tcspc:", name="tcspc", laser=laser),
        laser=laser,
        stage=PiezoStage(f"{prefix}stage:", name="stage", motors=stage_motors),
        prefix=prefix,
    )


def connect_instrument(
    prefix: str = "qd:", *, timeout: float = 10.0, stage_motors: Sequence[str] | None = None
) -> Instrument:
    """Build the instrument for ``prefix`` and wait until every PV is connected.

    Parameters
    ----------
    prefix
        The instrument's PV prefix: the IOCs serve ``{prefix}pot:``, ``{prefix}tcspc:``,
        ``{prefix}laser:`` and ``{prefix}stage:``.
    timeout
        Seconds to wait for all connections together.
    stage_motors
        The stage's three motor records (x, y, z) if they are not ``{prefix}stage:x`` ...
        (see :func:`make_instrument`).

    Raises
    ------
    InstrumentNotConnectedError
        One line naming each IOC that did not answer and a missing PV of it.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 s, not {timeout}")
    instrument = make_instrument(prefix, stage_motors=stage_motors)
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    for attr, (infix, what) in PARTS.items():
        device: Device = getattr(instrument, attr)
        try:
            device.wait_for_connection(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            absent = [
                walk.item.pvname
                for walk in device.walk_signals(include_lazy=True)
                if hasattr(walk.item, "pvname") and not walk.item.connected
            ]
            where = f"{prefix}{infix}*"
            if attr == "stage":
                where = ", ".join(instrument.stage.motors)
            missing.append(
                f"the {what} IOC ({where}, {len(absent)} PVs missing, e.g. "
                f"{absent[0] if absent else '?'})"
            )
    if missing:
        for device in instrument:
            device.destroy()
        raise InstrumentNotConnectedError(
            f"cannot reach {'; '.join(missing)} within {timeout:g} s: is the IOC running "
            f"(e.g. `qd-bluesky sim --prefix {prefix}`) and do EPICS_CA_ADDR_LIST / "
            "EPICS_CA_SERVER_PORT point at it?"
        )
    return instrument


def disconnect_channel_access() -> None:
    """Close the Channel Access circuits of ophyd's caproto client before the process exits.

    Otherwise the IOCs' last updates arrive while the interpreter shuts down the client's
    callback threads, and caproto logs a traceback per circuit. Call it once, at the end of a
    command: devices made afterwards in the same process would have no client.
    """
    import ophyd

    if ophyd.cl.name != "caproto":
        return
    from caproto.threading.pyepics_compat import _make_context

    if _make_context.cache_info().currsize:
        context = _make_context()
        if not getattr(context, "_user_disconnected", False):  # once
            context.disconnect()
