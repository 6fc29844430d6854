"""Errors of the instrument layer. Their message is one line that names the problem."""

from __future__ import annotations

from qd_bluesky._errors import QdBlueskyError


class InstrumentError(QdBlueskyError):
    """Something about the instrument prevents the request (base class)."""


class UnsafeBiasError(InstrumentError, ValueError):
    """A bias outside the potentiostat's safe window was asked for (nothing was put)."""


class InterlockOpenError(InstrumentError):
    """The laser interlock is open: photon acquisition does not start."""


class IocLostError(InstrumentError, ConnectionError):
    """An IOC stopped answering during an operation (a move, a scan, an acquisition)."""


class InstrumentNotConnectedError(InstrumentError, ConnectionError):
    """An IOC (or some of its PVs) cannot be reached."""


class InstrumentBusyError(InstrumentError):
    """The instrument is doing something else (e.g. a CV scan runs, an acquisition is on)."""


class StoppedError(InstrumentError):
    """A move or a scan was stopped (``stop()``, an abort) before it finished."""


class RefusedByAlarmError(InstrumentError):
    """The IOC completed a put but left its record in a MAJOR/INVALID alarm: refused.

    An EPICS-base record that refuses a value (a driver's write error, a value beyond what
    the hardware takes) still completes the put callback; the alarm is the refusal.
    """
