"""A fake PicoQuant Sepia II library: the calls of ``Sepia2_Lib`` the laser backend makes.

:class:`FakeSepia2Lib` stands where ``ctypes.CDLL("libsepia2.so")`` (``Sepia2_Lib.dll``) would:
the same function names, the same arguments (ctypes scalars, ``byref`` pointers, string
buffers) and the same convention: every call returns an int, 0 (``SEPIA2_ERR_NO_ERROR``) or a
negative error code that ``SEPIA2_LIB_DecodeError`` spells out. It holds one Sepia II at
device index 0: an SCM 828 controller (slot 0) with the soft lock and the key / power-line
interlock, and an SLM 828 driver (slot 200) with an intensity in per mille and an index into
its frequency list. The front panel a test turns (key, power line) is :meth:`turn_key` and
:meth:`fail_power`; :meth:`inject_error` makes the next call of a function fail.

Codes, object types and the frequency list are those of PicoQuant's ``Sepia2_ErrorCodes.h``
and ``Sepia2_Def.h`` (SLM 828: 80, 40, 20, 10, 5, 2.5 MHz internal, then the external rising
and falling trigger edges). The texts of ``SLM_DecodeFreqTrigMode`` are this fake's spelling;
the backend reads any ``<number> <k|M>Hz``.
"""

from __future__ import annotations

from typing import Any

ERR_NO_ERROR = 0
ERR_SLM_ILLEGAL_FREQUENCY_TRIGGERMODE = -6001
ERR_SLM_ILLEGAL_INTENSITY = -6002
ERR_LIB_ILLEGAL_DEVICE_INDEX = -9002
ERR_LIB_USB_DEVICE_OPEN_ERROR = -9003
ERR_LIB_UNKNOWN_USB_HANDLE = -9006
ERR_LIB_REFERENCED_SLOT_IS_NOT_IN_USE = -9009
ERR_LIB_THIS_IS_NO_SCM_828_MODULE = -9010
ERR_LIB_THIS_IS_NO_SLM_828_MODULE = -9012
ERR_LIB_ILLEGAL_PARAMETER = -9999

ERROR_TEXTS = {
    ERR_NO_ERROR: "no error",
    ERR_SLM_ILLEGAL_FREQUENCY_TRIGGERMODE: "SLM: illegal frequency / triggermode",
    ERR_SLM_ILLEGAL_INTENSITY: "SLM: illegal intensity (> 100% or < 0%)",
    ERR_LIB_ILLEGAL_DEVICE_INDEX: "LIB: illegal device index",
    ERR_LIB_USB_DEVICE_OPEN_ERROR: "LIB: USB device open error",
    ERR_LIB_UNKNOWN_USB_HANDLE: "LIB: unknown USB handle",
    ERR_LIB_REFERENCED_SLOT_IS_NOT_IN_USE: "LIB: referenced slot is not in use",
    ERR_LIB_THIS_IS_NO_SCM_828_MODULE: "LIB: this is no SCM 828 module",
    ERR_LIB_THIS_IS_NO_SLM_828_MODULE: "LIB: this is no SLM 828 module",
}

#: Sepia2_Def.h object types.
OBJECT_FRMS, OBJECT_SCM, OBJECT_SLM = 0xC0, 0x40, 0x70

#: SLM 828 frequency / trigger modes, by index (Sepia2_Def.h SEPIA2_SLM_FREQ_*).
SLM_FREQ_TRIG_MODES = (
    "80 MHz",
    "40 MHz",
    "20 MHz",
    "10 MHz",
    "5 MHz",
    "2.5 MHz",
    "ext. trig., rising edge",
    "ext. trig., falling edge",
)


def _in(arg: Any) -> Any:
    """The value of a ctypes scalar argument (or a plain number)."""
    return getattr(arg, "value", arg)


def _out(ref: Any, value: Any) -> None:
    """Write through a ``byref(...)`` pointer (or straight into a ctypes object)."""
    getattr(ref, "_obj", ref).value = value


class FakeSepia2Lib:
    """One Sepia II (SCM 828 + SLM 828) behind the ``Sepia2_Lib`` calling surface."""

    def __init__(self, *, serial: str = "1020304", slots: dict[int, int] | None = None) -> None:
        self.serial = serial
        # map index -> (slot, object type); slot -1 is the backplane
        self.modules = dict(slots or {0: OBJECT_SCM, 200: OBJECT_SLM})
        self.is_open = False
        self.map_read = False
        self.soft_locked = True
        self.key_locked = False
        self.power_failed = False
        self.freq_index = 5
        self.pulse_mode = True
        self.intensity_permille = 0
        self.calls: list[str] = []
        self._errors: dict[str, int] = {}

    # -- the front panel (not part of the library) ------------------------------------------

    def turn_key(self, locked: bool) -> None:
        """Turn the key switch: locked (emission impossible) or unlocked."""
        self.key_locked = bool(locked)

    def fail_power(self, failed: bool) -> None:
        """A failure of the laser head's power line (or its recovery)."""
        self.power_failed = bool(failed)

    def inject_error(self, function: str, code: int) -> None:
        """Make the next call of ``function`` (e.g. ``"SEPIA2_SLM_SetIntensityFineStep"``) fail."""
        self._errors[function] = code

    @property
    def emitting(self) -> bool:
        """True while light leaves the head: pulses on and nothing locks the laser."""
        return self.pulse_mode and not self._locked()

    def _locked(self) -> bool:
        return self.soft_locked or self.key_locked or self.power_failed

    # -- checks shared by the calls ---------------------------------------------------------

    def _enter(self, name: str, dev: Any = 0) -> int:
        self.calls.append(name)
        if name in self._errors:
            return self._errors.pop(name)
        if _in(dev) != 0:
            return ERR_LIB_ILLEGAL_DEVICE_INDEX
        return ERR_NO_ERROR

    def _module(self, name: str, dev: Any, slot: Any, kind: int) -> int:
        code = self._enter(name, dev)
        if code:
            return code
        if not (self.is_open and self.map_read):
            return ERR_LIB_UNKNOWN_USB_HANDLE
        if _in(slot) not in self.modules:
            return ERR_LIB_REFERENCED_SLOT_IS_NOT_IN_USE
        if self.modules[_in(slot)] != kind:
            return (
                ERR_LIB_THIS_IS_NO_SCM_828_MODULE
                if kind == OBJECT_SCM
                else ERR_LIB_THIS_IS_NO_SLM_828_MODULE
            )
        return ERR_NO_ERROR

    # -- LIB, USB, FWR, COM -----------------------------------------------------------------

    def SEPIA2_LIB_DecodeError(self, code: Any, text: Any) -> int:  # noqa: N802 - the C names
        text.value = ERROR_TEXTS.get(_in(code), "LIB: unknown error code").encode()
        return ERR_NO_ERROR

    def SEPIA2_USB_OpenDevice(self, dev: Any, model: Any, serial: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_USB_OpenDevice", dev)
        if code:
            return code
        self.is_open = True
        model.value, serial.value = b"Sepia II", self.serial.encode()
        return ERR_NO_ERROR

    def SEPIA2_USB_CloseDevice(self, dev: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_USB_CloseDevice", dev)
        if code:
            return code
        self.is_open = self.map_read = False
        return ERR_NO_ERROR

    def SEPIA2_FWR_GetModuleMap(self, dev: Any, restart: Any, count: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_FWR_GetModuleMap", dev)
        if code:
            return code
        if not self.is_open:
            return ERR_LIB_UNKNOWN_USB_HANDLE
        self.map_read = True
        _out(count, len(self.modules) + 1)  # the modules and the backplane
        return ERR_NO_ERROR

    def SEPIA2_FWR_FreeModuleMap(self, dev: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_FWR_FreeModuleMap", dev)
        self.map_read = False
        return code

    def SEPIA2_FWR_GetModuleInfoByMapIdx(  # noqa: N802
        self, dev: Any, map_idx: Any, slot: Any, primary: Any, backplane: Any, uptime: Any
    ) -> int:
        code = self._enter("SEPIA2_FWR_GetModuleInfoByMapIdx", dev)
        if code:
            return code
        if not self.map_read:
            return ERR_LIB_UNKNOWN_USB_HANDLE
        slots = [*sorted(self.modules), -1]
        if not 0 <= _in(map_idx) < len(slots):
            return ERR_LIB_ILLEGAL_PARAMETER
        slot_id = slots[_in(map_idx)]
        _out(slot, slot_id)
        _out(primary, 1)
        _out(backplane, int(slot_id == -1))
        _out(uptime, 0)
        return ERR_NO_ERROR

    def SEPIA2_COM_GetModuleType(self, dev: Any, slot: Any, primary: Any, kind: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_COM_GetModuleType", dev)
        if code:
            return code
        if not self.map_read:
            return ERR_LIB_UNKNOWN_USB_HANDLE
        if _in(slot) == -1:
            _out(kind, OBJECT_FRMS)
            return ERR_NO_ERROR
        if _in(slot) not in self.modules:
            return ERR_LIB_REFERENCED_SLOT_IS_NOT_IN_USE
        _out(kind, self.modules[_in(slot)])
        return ERR_NO_ERROR

    # -- SCM 828: locks ---------------------------------------------------------------------

    def SEPIA2_SCM_GetPowerAndLaserLEDS(self, dev: Any, slot: Any, power: Any, laser: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SCM_GetPowerAndLaserLEDS", dev, slot, OBJECT_SCM)
        if code:
            return code
        _out(power, int(not self.power_failed))
        _out(laser, int(self.emitting))
        return ERR_NO_ERROR

    def SEPIA2_SCM_GetLaserLocked(self, dev: Any, slot: Any, locked: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SCM_GetLaserLocked", dev, slot, OBJECT_SCM)
        if code:
            return code
        _out(locked, int(self._locked()))  # key, power line and soft lock together
        return ERR_NO_ERROR

    def SEPIA2_SCM_GetLaserSoftLock(self, dev: Any, slot: Any, soft: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SCM_GetLaserSoftLock", dev, slot, OBJECT_SCM)
        if code:
            return code
        _out(soft, int(self.soft_locked))
        return ERR_NO_ERROR

    def SEPIA2_SCM_SetLaserSoftLock(self, dev: Any, slot: Any, soft: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SCM_SetLaserSoftLock", dev, slot, OBJECT_SCM)
        if code:
            return code
        self.soft_locked = bool(_in(soft))
        return ERR_NO_ERROR

    # -- SLM 828: frequency and intensity ---------------------------------------------------

    def SEPIA2_SLM_DecodeFreqTrigMode(self, index: Any, text: Any) -> int:  # noqa: N802
        code = self._enter("SEPIA2_SLM_DecodeFreqTrigMode")
        if code:
            return code
        if not 0 <= _in(index) < len(SLM_FREQ_TRIG_MODES):
            return ERR_SLM_ILLEGAL_FREQUENCY_TRIGGERMODE
        text.value = SLM_FREQ_TRIG_MODES[_in(index)].encode()
        return ERR_NO_ERROR

    def SEPIA2_SLM_GetPulseParameters(  # noqa: N802
        self, dev: Any, slot: Any, freq: Any, pulse_mode: Any, head_type: Any
    ) -> int:
        code = self._module("SEPIA2_SLM_GetPulseParameters", dev, slot, OBJECT_SLM)
        if code:
            return code
        _out(freq, self.freq_index)
        _out(pulse_mode, int(self.pulse_mode))
        _out(head_type, 2)  # SEPIA2_SLM_HEADTYPE_LASER
        return ERR_NO_ERROR

    def SEPIA2_SLM_SetPulseParameters(self, dev: Any, slot: Any, freq: Any, pulse_mode: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SLM_SetPulseParameters", dev, slot, OBJECT_SLM)
        if code:
            return code
        if not 0 <= _in(freq) < len(SLM_FREQ_TRIG_MODES):
            return ERR_SLM_ILLEGAL_FREQUENCY_TRIGGERMODE
        self.freq_index, self.pulse_mode = int(_in(freq)), bool(_in(pulse_mode))
        return ERR_NO_ERROR

    def SEPIA2_SLM_GetIntensityFineStep(self, dev: Any, slot: Any, intensity: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SLM_GetIntensityFineStep", dev, slot, OBJECT_SLM)
        if code:
            return code
        _out(intensity, self.intensity_permille)
        return ERR_NO_ERROR

    def SEPIA2_SLM_SetIntensityFineStep(self, dev: Any, slot: Any, intensity: Any) -> int:  # noqa: N802
        code = self._module("SEPIA2_SLM_SetIntensityFineStep", dev, slot, OBJECT_SLM)
        if code:
            return code
        if not 0 <= _in(intensity) <= 1000:
            return ERR_SLM_ILLEGAL_INTENSITY
        self.intensity_permille = int(_in(intensity))
        return ERR_NO_ERROR
