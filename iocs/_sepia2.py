"""A PicoQuant Sepia II (SCM 828 controller + SLM 828 driver) as a :class:`LaserBackend`.

The library (``Sepia2_Lib.dll`` on Windows, ``libsepia2.so`` on Linux) is reached through
ctypes; every call returns 0 or a negative error code, which :meth:`Sepia2Laser._call` turns
into a :class:`BackendFault` with ``SEPIA2_LIB_DecodeError``'s text. What the IOC needs maps
onto the library as:

- power (W) -> intensity (per mille) through the lab's :class:`PowerCalibration`:
  ``SEPIA2_SLM_SetIntensityFineStep``;
- repetition rate -> the index of the module's frequency list (read once with
  ``SEPIA2_SLM_DecodeFreqTrigMode``; the external trigger modes are not offered):
  ``SEPIA2_SLM_SetPulseParameters``;
- emission -> the SCM's soft lock (``SEPIA2_SCM_SetLaserSoftLock``);
- the interlock -> ``SEPIA2_SCM_GetLaserLocked`` (key, power line *and* soft lock together)
  read while the soft lock is off, and the power LED of ``SEPIA2_SCM_GetPowerAndLaserLEDS``
  to tell a power failure from the key.

The modules are found in the firmware's module map (``SEPIA2_FWR_GetModuleMap``,
``SEPIA2_FWR_GetModuleInfoByMapIdx``, ``SEPIA2_COM_GetModuleType``).
"""

from __future__ import annotations

import ctypes
import os
import re
from ctypes import byref, c_int, c_ubyte, c_ushort
from typing import Any

from ._backends import BackendFault, LaserLocks
from ._power_calibration import PowerCalibration, rate_index

#: Sepia2_Def.h object types of the modules used.
SEPIA2OBJECT_SCM = 0x40
SEPIA2OBJECT_SLM = 0x70
#: SLM frequency / trigger-mode indices (0..7 on an SLM 828).
SLM_FREQ_TRIGMODE_COUNT = 8
#: Buffer sizes of Sepia2_Def.h (with room to spare).
_TEXT_LEN = 64
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kM]?)Hz")


def library_name() -> str:
    """The platform's name of PicoQuant's Sepia II library."""
    return "Sepia2_Lib.dll" if os.name == "nt" else "libsepia2.so"


def load_sepia2_library(path: str | None = None) -> Any:
    """The Sepia II library: ``path`` (default :func:`library_name`), or ``"fake"``.

    ``"fake"`` loads :class:`~._sepia2_fake.FakeSepia2Lib`, which has the same calls.

    Raises
    ------
    ValueError
        The library cannot be loaded (one line naming it).
    """
    if path == "fake":
        from ._sepia2_fake import FakeSepia2Lib

        return FakeSepia2Lib()
    name = path or library_name()
    loader = getattr(ctypes, "WinDLL", ctypes.CDLL)  # __stdcall on Windows
    try:
        return loader(name)
    except OSError as exc:
        raise ValueError(f"cannot load the Sepia II library {name}: {exc}") from None


def parse_rate_hz(text: str) -> float | None:
    """The frequency (Hz) in a ``SEPIA2_SLM_DecodeFreqTrigMode`` text; None for a trigger mode."""
    match = _RATE.search(text)
    if match is None:
        return None
    return float(match.group(1)) * {"": 1.0, "k": 1e3, "M": 1e6}[match.group(2)]


class Sepia2Laser:
    """:class:`~._backends.LaserBackend` on a Sepia II through its library.

    Parameters
    ----------
    lib
        The loaded library (:func:`load_sepia2_library`).
    calibration
        Power at the sample against intensity, measured by the lab.
    device_index
        USB device index of the Sepia II (0..7).

    Raises
    ------
    BackendFault
        Opening the device or reading its module map failed.
    ValueError
        The device has no SCM 828 or SLM 828 module.
    """

    emission_at_start = False
    rep_rate_locked = False  # the laser cannot know whether the TCSPC card acquires

    def __init__(self, lib: Any, calibration: PowerCalibration, *, device_index: int = 0) -> None:
        self.lib, self.calibration, self.dev = lib, calibration, c_int(device_index)
        model, serial = (
            ctypes.create_string_buffer(_TEXT_LEN),
            ctypes.create_string_buffer(_TEXT_LEN),
        )
        self._call("SEPIA2_USB_OpenDevice", self.dev, model, serial)
        self.description = f"{model.value.decode()} {serial.value.decode()}"
        slots = self._module_slots()
        missing = [name for name in ("SCM", "SLM") if name not in slots]
        if missing:
            self.close()
            raise ValueError(f"the Sepia II {self.description} has no {' or '.join(missing)} 828")
        self.scm, self.slm = c_int(slots["SCM"]), c_int(slots["SLM"])
        self._rates = self._frequency_list()
        self._interlock_open, self._cause = False, "none"
        intensity = c_ushort()
        self._call("SEPIA2_SLM_GetIntensityFineStep", self.dev, self.slm, byref(intensity))
        self.intensity_permille = int(intensity.value)

    # -- the library ------------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        code = getattr(self.lib, name)(*args)
        if code != 0:
            text = ctypes.create_string_buffer(_TEXT_LEN)
            self.lib.SEPIA2_LIB_DecodeError(c_int(code), text)
            raise BackendFault(f"{name} failed: {text.value.decode() or 'unknown error'} ({code})")

    def _module_slots(self) -> dict[str, int]:
        count = c_int()
        self._call("SEPIA2_FWR_GetModuleMap", self.dev, c_int(0), byref(count))
        slots: dict[str, int] = {}
        for index in range(count.value):
            slot, primary, backplane, uptime = c_int(), c_ubyte(), c_ubyte(), c_ubyte()
            self._call(
                "SEPIA2_FWR_GetModuleInfoByMapIdx",
                self.dev,
                c_int(index),
                byref(slot),
                byref(primary),
                byref(backplane),
                byref(uptime),
            )
            if backplane.value:
                continue
            kind = c_int()
            self._call("SEPIA2_COM_GetModuleType", self.dev, slot, c_int(1), byref(kind))
            name = {SEPIA2OBJECT_SCM: "SCM", SEPIA2OBJECT_SLM: "SLM"}.get(kind.value)
            if name is not None:
                slots.setdefault(name, slot.value)  # the first of each, as PicoQuant's demos
        return slots

    def _frequency_list(self) -> tuple[tuple[int, float], ...]:
        rates = []
        for index in range(SLM_FREQ_TRIGMODE_COUNT):
            text = ctypes.create_string_buffer(_TEXT_LEN)
            self._call("SEPIA2_SLM_DecodeFreqTrigMode", c_int(index), text)
            rate = parse_rate_hz(text.value.decode())
            if rate is not None:
                rates.append((index, rate))
        if not rates:
            raise ValueError(f"the SLM 828 of {self.description} offers no internal frequency")
        return tuple(rates)

    def close(self) -> None:
        """Release the module map and the USB device."""
        for name in ("SEPIA2_FWR_FreeModuleMap", "SEPIA2_USB_CloseDevice"):
            getattr(self.lib, name)(self.dev)

    # -- LaserBackend -----------------------------------------------------------------------

    @property
    def rep_rates_hz(self) -> tuple[float, ...]:
        return tuple(rate for _, rate in self._rates)

    def _freq_index(self, rep_rate_hz: float) -> int:
        position = rate_index(self.rep_rates_hz, rep_rate_hz)
        if position is None:
            raise ValueError(f"{rep_rate_hz:g} Hz is not one of the laser's repetition rates")
        return self._rates[position][0]

    def set_output(self, *, emission: bool, power_w: float, rep_rate_hz: float) -> None:
        index = self._freq_index(rep_rate_hz)
        permille = self.calibration.permille_for(power_w)
        if not emission:  # lock first: light never leaves at a half-set state
            self._call("SEPIA2_SCM_SetLaserSoftLock", self.dev, self.scm, c_ubyte(1))
        self._call("SEPIA2_SLM_SetPulseParameters", self.dev, self.slm, c_int(index), c_ubyte(1))
        self._call("SEPIA2_SLM_SetIntensityFineStep", self.dev, self.slm, c_ushort(permille))
        self.intensity_permille = permille
        if emission:
            self._call("SEPIA2_SCM_SetLaserSoftLock", self.dev, self.scm, c_ubyte(0))
            if self.read_locks().interlock_open:
                self._call("SEPIA2_SCM_SetLaserSoftLock", self.dev, self.scm, c_ubyte(1))
                raise ValueError(f"the laser is locked by its {self._cause}: the interlock is open")

    def set_interlock(self, is_open: bool) -> None:
        raise ValueError(
            "the Sepia II interlock is an input (key switch, power line): it cannot be set"
        )

    def read_locks(self) -> LaserLocks:
        soft, locked, power, laser = c_ubyte(), c_ubyte(), c_ubyte(), c_ubyte()
        self._call("SEPIA2_SCM_GetLaserSoftLock", self.dev, self.scm, byref(soft))
        self._call("SEPIA2_SCM_GetLaserLocked", self.dev, self.scm, byref(locked))
        self._call(
            "SEPIA2_SCM_GetPowerAndLaserLEDS", self.dev, self.scm, byref(power), byref(laser)
        )
        if not power.value:
            self._interlock_open, self._cause = True, "power failure"
        elif not soft.value:  # only then does "locked" tell the key's state
            self._interlock_open = bool(locked.value)
            self._cause = "key" if locked.value else "none"
        elif self._cause == "power failure":  # power is back; the key is unknown until unlocked
            self._interlock_open, self._cause = False, "none"
        return LaserLocks(self._interlock_open, self._cause, bool(soft.value))
