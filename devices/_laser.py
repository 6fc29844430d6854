"""The pulsed laser: emission, power, repetition rate and the safety interlock."""

from __future__ import annotations

from ophyd import Device, Kind

from ._errors import InterlockOpenError
from ._signals import enum, ro, rw, text


class Laser(Device):
    """A picosecond pulsed diode laser behind a safety interlock (``{P}laser:``).

    ``emission`` (``"off"``/``"on"``) and ``interlock`` (``"closed"``/``"open"``) are read in
    every event; power (W at the sample), the driver's intensity (per mille) that set it,
    repetition rate (Hz) and wavelength (m) are configuration, recorded in the descriptors.
    ``interlock`` is the hardware interlock alone (key switch, power line; its cause in
    ``interlock_cause``); the software lock is ``soft_lock``, ``on`` whenever emission is off.
    """

    emission = enum("emission", kind=Kind.normal)
    interlock = enum("interlock", kind=Kind.normal)
    power = rw("power", kind=Kind.config)
    intensity = ro("intensity", kind=Kind.config)
    rep_rate = rw("rep_rate", kind=Kind.config)
    frequency = enum("frequency", kind=Kind.omitted)
    interlock_cause = enum("interlock_cause", kind=Kind.omitted)
    soft_lock = enum("soft_lock", kind=Kind.omitted)
    wavelength = ro("wavelength", kind=Kind.config)
    status = text("status", kind=Kind.omitted)

    @property
    def interlock_open(self) -> bool:
        """True unless the interlock reads ``closed``."""
        return self.interlock.get(use_monitor=False) != "closed"

    def check_interlock(self, action: str = "the acquisition") -> None:
        """Raise :class:`InterlockOpenError` if the interlock is open."""
        if self.interlock_open:
            raise InterlockOpenError(
                f"{self.name}: the laser interlock is open ({self.interlock.pvname}); "
                f"{action} does not start: close the interlock and switch emission on"
            )
