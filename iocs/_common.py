"""Small pieces shared by the IOCs: refusals, fault alarms, long-string PVs."""

from __future__ import annotations

import functools
import logging

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import pvproperty

from ._backends import BackendFault

logger = logging.getLogger("qd_bluesky.iocs")

#: Length of the long-string (CHAR array) PVs: status texts and file paths.
TEXT_LENGTH = 1024

#: What a backend raises when the instrument fails an operation (a timeout is an OSError).
BACKEND_FAULTS = (BackendFault, OSError)


class RefusedError(ValueError):
    """A put the instrument refuses; the reason is also written to a status PV.

    caproto turns it into a failed put (ECA_PUTFAIL) for the client, and the IOC's console
    gets one line (see :func:`log_refusals_in_one_line`), not a traceback.

    Parameters
    ----------
    reason
        One line: what was refused and why.
    source
        Who refused, e.g. the PVGroup's prefix ``qd:pot:`` (for the console line).
    """

    def __init__(self, reason: str, *, source: str = "") -> None:
        super().__init__(reason)
        self.source = source


def text_pv(value: str = "", *, read_only: bool = True, **kwargs) -> pvproperty:
    """A long-string PV: a CHAR array, read it with ``EpicsSignal(..., string=True)``.

    (``report_as_string`` would truncate to the 40 characters of a DBR_STRING.)
    """
    return pvproperty(
        value=value,
        dtype=ChannelType.CHAR,
        max_length=TEXT_LENGTH,
        read_only=read_only,
        **kwargs,
    )


#: Alarm group of the status PVs: their alarm is the instrument's fault, which the group's
#: numeric writes (each resets the alarm of its group) must not clear.
FAULT_ALARM_GROUP = "fault"


def status_pv(value: str = "", **kwargs) -> pvproperty:
    """A read-only long-string status PV whose alarm says an instrument fault (MAJOR)."""
    return text_pv(value, alarm_group=FAULT_ALARM_GROUP, **kwargs)


async def raise_alarm(pv, text: str) -> None:
    """Write ``text`` to the status PV ``pv`` with a MAJOR alarm (an instrument fault)."""
    await pv.write(text, status=AlarmStatus.STATE, severity=AlarmSeverity.MAJOR_ALARM)


async def clear_alarm(pv) -> None:
    """Take the alarm of ``pv`` back to NO_ALARM (a new request starts from a clean state)."""
    if pv.alarm.severity != AlarmSeverity.NO_ALARM:
        await pv.alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)


class _OneLineRefusals(logging.Filter):
    """caproto logs every failed put with its traceback; a refusal is expected: one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RefusedError):
            record.msg = "%sput refused: %s"
            record.args = (f"{exc.source} " if exc.source else "", exc)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@functools.cache
def log_refusals_in_one_line() -> None:
    """Make caproto's server log a refused put as one warning line instead of a traceback."""
    logging.getLogger("caproto.circ").addFilter(_OneLineRefusals())
