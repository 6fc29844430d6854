"""The pulsed-laser IOC: emission, power at the sample, repetition rate, interlock and soft lock."""

from __future__ import annotations

import asyncio
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
from ._power_calibration import rate_index, rate_label

if TYPE_CHECKING:
    from ._backends import LaserBackend

#: Repetition rates the picosecond diode drivers offer, Hz (the backend lists its own).
REP_RATE_RANGE_HZ = (1e5, 8e7)
#: Seconds between two reads of the laser's locks (key, power line, soft lock).
LOCK_POLL_S = 0.5
#: Values of the ``interlock_cause`` PV.
INTERLOCK_CAUSES = ("none", "key", "power failure")
#: Repetition rate at start-up when the laser offers it (Hz).
DEFAULT_REP_RATE_HZ = 2.5e6
#: Power at the sample the attenuators can reach, W.
POWER_RANGE_W = (0.0, 1e-3)
#: Emission wavelength of the diode (PicoQuant LDH-D-C-440 class), m.
WAVELENGTH_M = 442e-9


class LaserIOC(PVGroup):
    """A picosecond pulsed diode laser (442 nm, 64 ps pulses) behind a safety interlock.

    PVs (prefix ``{P}laser:``)
    --------------------------
    emission
        ``off``/``on``. Switching on is refused while the interlock is open; on a Sepia II it
        clears the SCM's soft lock, and off sets it.
    power
        Average power at the sample (W), default 30 nW. A laser driven in intensity (per mille)
        sets the whole per mille its power calibration gives for it; a power outside the
        calibration is refused.
    intensity
        The driver's intensity (per mille of the head's control voltage) that ``power`` set,
        read-only.
    rep_rate
        Pulse repetition rate (Hz), default 2.5 MHz (400 ns period): one of the laser's list
        (``frequency``), else refused. Refused while the TCSPC card acquires, since it sets the
        microtime window of the open photon file (where the IOC can know it).
    frequency
        The same rate as an ENUM of the laser's list (``"80 MHz"``, ..., ``"2.5 MHz"``).
    interlock
        ``closed`` (safe, emission allowed) or ``open`` (key switch or power line: emission
        forced off). On a real laser it is an input; the simulation lets a client open and
        close it (turning the key).
    interlock_cause
        ``none``, ``key`` or ``power failure``, read-only.
    soft_lock
        ``off``/``on``: the software lock (a Sepia II's SCM soft lock), read-only; ``on``
        whenever emission is switched off, also from the laser's own front end.
    wavelength
        Emission wavelength (m), read-only.
    status
        State, or the reason of the last refusal (long string). A fault of the laser driver is
        written here with a MAJOR alarm, which the next successful request clears.

    The ``backend`` (:class:`~qd_bluesky.iocs.LaserBackend`) drives the laser; its locks are
    read every :data:`LOCK_POLL_S`.
    """

    def __init__(self, *args, backend: LaserBackend, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        # One request to the laser at a time: the puts and the poll of its locks.
        self._locks = asyncio.Lock()
        if backend is not None:  # None: only the PV list is wanted (e.g. to count the PVs)
            self._adopt(backend)

    def _adopt(self, backend: LaserBackend) -> None:
        """Take the backend's choices and state before the server publishes the PVs."""
        self._rates = rates = tuple(backend.rep_rates_hz)
        labels = tuple(rate_label(rate) for rate in rates)
        self.frequency._data["enum_strings"] = labels
        rate = DEFAULT_REP_RATE_HZ if DEFAULT_REP_RATE_HZ in rates else rates[-1]
        self.rep_rate._data["value"] = rate
        self.frequency._data["value"] = labels[rates.index(rate)]
        self.emission._data["value"] = "on" if backend.emission_at_start else "off"
        self.soft_lock._data["value"] = "off" if backend.emission_at_start else "on"
        self.intensity._data["value"] = int(backend.intensity_permille)

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
    intensity = pvproperty(
        value=0, units="permille", read_only=True, doc="driver intensity set for the power"
    )
    rep_rate = pvproperty(
        value=DEFAULT_REP_RATE_HZ,
        units="Hz",
        precision=1,
        lower_ctrl_limit=REP_RATE_RANGE_HZ[0],
        upper_ctrl_limit=REP_RATE_RANGE_HZ[1],
        doc="pulse repetition rate",
    )
    frequency = pvproperty(
        value="2.5 MHz",
        dtype=ChannelType.ENUM,
        enum_strings=("2.5 MHz",),
        doc="repetition rate, one of the laser's list",
    )
    interlock = pvproperty(
        value="closed",
        dtype=ChannelType.ENUM,
        enum_strings=("closed", "open"),
        doc="safety interlock: open forces emission off",
    )
    interlock_cause = pvproperty(
        value="none",
        dtype=ChannelType.ENUM,
        enum_strings=INTERLOCK_CAUSES,
        read_only=True,
        doc="what holds the interlock open",
    )
    soft_lock = pvproperty(
        value="off",
        dtype=ChannelType.ENUM,
        enum_strings=("off", "on"),
        read_only=True,
        doc="software lock of the laser",
    )
    wavelength = pvproperty(value=WAVELENGTH_M, units="m", precision=12, read_only=True)
    status = status_pv("emission on", doc="state, or the reason of the last refusal")

    async def _refuse(self, reason: str) -> None:
        await self.status.write(f"refused: {reason}")
        raise RefusedError(reason, source=self.prefix)

    async def _push(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        """Send the settings to the laser; a refusal or a fault refuses the put."""
        try:
            self.backend.set_output(emission=emission, power_w=power_w, rep_rate_hz=rep_rate_hz)
        except BACKEND_FAULTS as exc:
            await raise_alarm(self.status, f"fault: setting the laser failed: {exc}")
            raise RefusedError(f"setting the laser failed: {exc}", source=self.prefix) from None
        except ValueError as exc:
            await self._refuse(str(exc))
        await clear_alarm(self.status)
        if self.soft_lock.value != ("off" if emission else "on"):
            await self.soft_lock.write("off" if emission else "on")
        if self.intensity.value != self.backend.intensity_permille:
            await self.intensity.write(int(self.backend.intensity_permille))

    @emission.startup
    async def emission(self, instance, async_lib):
        try:
            async with self._locks:
                await self._push(
                    emission=self.emission.value == "on",
                    power_w=float(self.power.value),
                    rep_rate_hz=float(self.rep_rate.value),
                )
        except RefusedError as exc:  # serve anyway: the alarm on status says what failed
            logger.warning("%s %s", self.prefix, exc)
        if self.emission.value == "off":
            await self.status.write("emission off")

    @emission.putter
    async def emission(self, instance, value):
        async with self._locks:
            await self._push(
                emission=value == "on",
                power_w=float(self.power.value),
                rep_rate_hz=float(self.rep_rate.value),
            )
        await self.status.write(f"emission {value}")
        return value

    @power.putter
    async def power(self, instance, value):
        async with self._locks:
            await self._push(
                emission=self.emission.value == "on",
                power_w=float(value),
                rep_rate_hz=float(self.rep_rate.value),
            )
        return value

    async def _set_rate(self, rate_hz: float) -> None:
        if self.backend.rep_rate_locked:
            await self._refuse("the TCSPC card is acquiring: stop it before changing rep_rate")
        async with self._locks:
            await self._push(
                emission=self.emission.value == "on",
                power_w=float(self.power.value),
                rep_rate_hz=rate_hz,
            )

    @rep_rate.putter
    async def rep_rate(self, instance, value):
        index = rate_index(self._rates, float(value))
        if index is None:
            choices = ", ".join(rate_label(rate) for rate in self._rates)
            await self._refuse(f"rep_rate {float(value):g} Hz is not one of {choices}")
        rate = self._rates[index]
        await self._set_rate(rate)
        await self.frequency.write(rate_label(rate), verify_value=False)
        return rate

    @frequency.putter
    async def frequency(self, instance, value):
        rate = self._rates[self.frequency.enum_strings.index(value)]
        await self._set_rate(rate)
        await self.rep_rate.write(rate, verify_value=False)
        return value

    @interlock.putter
    async def interlock(self, instance, value):
        async with self._locks:
            return await self._put_interlock(value)

    async def _put_interlock(self, value: str) -> str:
        try:
            self.backend.set_interlock(value == "open")
        except BACKEND_FAULTS as exc:
            await self._refuse(f"setting the interlock failed: {exc}")
        except ValueError as exc:
            await self._refuse(str(exc))
        if value == "open":
            await self._interlock_opened()
        else:
            await self.status.write(f"interlock {value}")
        await self.interlock_cause.write("key" if value == "open" else "none")
        return value

    async def _interlock_opened(self) -> None:
        if self.emission.value == "on":
            await self._push(
                emission=False,
                power_w=float(self.power.value),
                rep_rate_hz=float(self.rep_rate.value),
            )
            await self.emission.write("off", verify_value=False)
            await self.status.write("interlock open: emission switched off")
        else:
            await self.status.write("interlock open")

    @soft_lock.scan(period=LOCK_POLL_S, use_scan_field=False)
    async def soft_lock(self, instance, async_lib):
        """Follow the laser's locks: a key turned, a power failure, a lock from its front end."""
        async with self._locks:
            await self._follow_locks()

    async def _follow_locks(self) -> None:
        try:
            locks = self.backend.read_locks()
        except BACKEND_FAULTS as exc:
            text = f"fault: reading the laser's locks failed: {exc}"
            if self.status.value != text:
                await raise_alarm(self.status, text)
            return
        if locks.cause != self.interlock_cause.value:
            await self.interlock_cause.write(locks.cause)
        state = "open" if locks.interlock_open else "closed"
        if state != self.interlock.value:
            await self.interlock.write(state, verify_value=False)
            if locks.interlock_open:
                await self._interlock_opened()
            else:
                await self.status.write("interlock closed")
        soft = "on" if locks.soft_lock else "off"
        if soft != self.soft_lock.value:
            await self.soft_lock.write(soft)
            if locks.soft_lock and self.emission.value == "on":
                await self.emission.write("off", verify_value=False)
                await self.status.write("soft lock set at the laser: emission off")
