"""Signal components with finite timeouts, and the long-string signal.

Every signal of the qd devices has a finite connection, read and write timeout, so that a lost
IOC ends an operation with an error instead of a hang (ophyd's default write timeout waits
forever).
"""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import EpicsSignal, EpicsSignalRO, Kind

#: Connection timeout of each PV (s); :func:`~qd_bluesky.devices.connect_instrument` waits
#: for whole devices with its own timeout.
CONNECTION_TIMEOUT_S = 5.0
#: Budget of one CA read (s).
READ_TIMEOUT_S = 5.0
#: Budget of a put that completes at once (configuration values) (s).
WRITE_TIMEOUT_S = 10.0

#: CA budget of a put whose completion ends an operation (a move, a CV waveform). The status of
#: that operation carries its own bounded timeout and fails on a lost IOC; the CA put must
#: not give up first (a 20 s CV scan outlasts WRITE_TIMEOUT_S, and its completion would be
#: dropped).
OPERATION_PUT_TIMEOUT_S = 24 * 3600.0

_TIMEOUTS = {
    "connection_timeout": CONNECTION_TIMEOUT_S,
    "timeout": READ_TIMEOUT_S,
    "write_timeout": WRITE_TIMEOUT_S,
}


class _LongStringMixin:
    """A CHAR-array PV read as text.

    Under the caproto control layer the ctrl limits of a CHAR array come back as bytes, which
    makes descriptors unserialisable: drop them.
    """

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()  # pyright: ignore[reportAttributeAccessIssue] - a mixin
        for entry in desc.values():
            for key in ("lower_ctrl_limit", "upper_ctrl_limit", "limits"):
                entry.pop(key, None)
        return desc


class TextSignal(_LongStringMixin, EpicsSignal):
    """A writable long-string PV (a path, a message)."""


class TextSignalRO(_LongStringMixin, EpicsSignalRO):
    """A read-only long-string PV (a path, a message)."""


def rw(suffix: str, *, kind: Kind | str = Kind.normal, **kwargs: Any) -> Cpt:
    """A read/write PV ``{prefix}{suffix}`` with finite timeouts."""
    return Cpt(EpicsSignal, suffix, kind=kind, **{**_TIMEOUTS, **kwargs})


def operation(suffix: str, *, kind: Kind | str = Kind.normal, **kwargs: Any) -> Cpt:
    """A read/write PV whose put completes when the operation it starts has finished."""
    return rw(suffix, kind=kind, **{"write_timeout": OPERATION_PUT_TIMEOUT_S, **kwargs})


def ro(suffix: str, *, kind: Kind | str = Kind.normal, **kwargs: Any) -> Cpt:
    """A read-only PV ``{prefix}{suffix}`` with finite timeouts."""
    return Cpt(EpicsSignalRO, suffix, kind=kind, **{**_TIMEOUTS, **kwargs})


def text(suffix: str, *, kind: Kind | str = Kind.omitted, write: bool = False, **kwargs) -> Cpt:
    """A long-string PV (CHAR array) read as ``str``."""
    cls = TextSignal if write else TextSignalRO
    return Cpt(cls, suffix, kind=kind, string=True, **{**_TIMEOUTS, **kwargs})


def enum(suffix: str, *, kind: Kind | str = Kind.config, **kwargs: Any) -> Cpt:
    """A read/write ENUM PV read as its string (``"on"``, ``"T3"``, ...)."""
    return rw(suffix, kind=kind, string=True, **kwargs)
