"""The pulsed-laser IOC: emission, power at the sample, repetition rate and the interlock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from ._common import (
    BACKEND_FAULTS,
    RefusedError,
    clear_alarm,
    logger,
    raise_alarm,
    status_pv,
)

if TYPE_CHECKING:
    from ._backends import LaserBackend

#: Repetition rates the (simulated) picosecond diode driver offers, Hz.
REP_RATE_RANGE_HZ = (1e5, 8e7)
#: Power at the sample the attenuators can reach, W.
POWER_RANGE_W = (0.0, 1e-3)
#: Emission wavelength of the diode (PicoQuant LDH-D-C-440 class), m.
WAVELENGTH_M = 442e-9


class LaserIOC(PVGroup):
    """A picosecond pulsed diode laser (442 nm, 64 ps pulses) behind a safety interlock.

    PVs (prefix ``{P}laser:``)
    --------------------------
    emission
        ``off``/``on``. Switching on is refused while the interlock is open.
    power
        Average power at the sample (W), default 30 nW.
    rep_rate
        Pulse repetition rate (Hz), default 2.5 MHz (400 ns period). Refused while the TCSPC
        card acquires, since it sets the microtime window of the open photon file.
    interlock
        ``closed`` (safe, emission allowed) or ``open`` (door open: emission forced off). On a
        real laser it is an input; the simulation lets a client open and close it.
    wavelength
        Emission wavelength (m), read-only.
    status
        State, or the reason of the last refusal (long string). A fault of the laser driver is
        written here with a MAJOR alarm, which the next successful request clears.

    The ``backend`` (:class:`~qd_bluesky.iocs.LaserBackend`) drives the laser.
    """

    def __init__(self, *args, backend: LaserBackend, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    emission = pvproperty(
        value="on", dtype=ChannelType.ENUM, enum_strings=("off", "on"), doc="laser emission"
    )
    power = pvproperty(
        value=30e-9,
        units="W",
        precision=12,
        lower_ctrl_limit=POWER_RANGE_W[0],
        upper_ctrl_limit=POWER_RANGE_W[1],
        doc="average power at the sample",
    )
    rep_rate = pvproperty(
        value=2.5e6,
        units="Hz",
        precision=1,
        lower_ctrl_limit=REP_RATE_RANGE_HZ[0],
        upper_ctrl_limit=REP_RATE_RANGE_HZ[1],
        doc="pulse repetition rate",
    )
    interlock = pvproperty(
        value="closed",
        dtype=ChannelType.ENUM,
        enum_strings=("closed", "open"),
        doc="safety interlock: open forces emission off",
    )
    wavelength = pvproperty(value=WAVELENGTH_M, units="m", precision=12, read_only=True)
    status = status_pv("emission on", doc="state, or the reason of the last refusal")

    async def _refuse(self, reason: str) -> None:
        await self.status.write(f"refused: {reason}")
        raise RefusedError(reason, source=self.prefix)

    async def _push(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        """Send the settings to the laser; a fault alarms ``status`` and refuses the put."""
        try:
            self.backend.set_output(emission=emission, power_w=power_w, rep_rate_hz=rep_rate_hz)
        except BACKEND_FAULTS as exc:
            await raise_alarm(self.status, f"fault: setting the laser failed: {exc}")
            raise RefusedError(f"setting the laser failed: {exc}", source=self.prefix) from None
        await clear_alarm(self.status)

    @emission.startup
    async def emission(self, instance, async_lib):
        try:
            await self._push(
                emission=self.emission.value == "on",
                power_w=float(self.power.value),
                rep_rate_hz=float(self.rep_rate.value),
            )
        except RefusedError as exc:  # serve anyway: the alarm on status says what failed
            logger.warning("%s %s", self.prefix, exc)

    @emission.putter
    async def emission(self, instance, value):
        on = value == "on"
        if on and self.interlock.value != "closed":
            await self._refuse("the interlock is open: close it before switching emission on")
        await self._push(
            emission=on, power_w=float(self.power.value), rep_rate_hz=float(self.rep_rate.value)
        )
        await self.status.write(f"emission {value}")
        return value

    @power.putter
    async def power(self, instance, value):
        await self._push(
            emission=self.emission.value == "on",
            power_w=float(value),
            rep_rate_hz=float(self.rep_rate.value),
        )
        return value

    @rep_rate.putter
    async def rep_rate(self, instance, value):
        if self.backend.rep_rate_locked:
            await self._refuse("the TCSPC card is acquiring: stop it before changing rep_rate")
        await self._push(
            emission=self.emission.value == "on",
            power_w=float(self.power.value),
            rep_rate_hz=float(value),
        )
        return value

    @interlock.putter
    async def interlock(self, instance, value):
        self.backend.set_interlock(value == "open")
        if value == "open" and self.emission.value == "on":
            await self._push(
                emission=False,
                power_w=float(self.power.value),
                rep_rate_hz=float(self.rep_rate.value),
            )
            await self.emission.write("off", verify_value=False)
            await self.status.write("interlock open: emission switched off")
        else:
            await self.status.write(f"interlock {value}")
        return value
