"""Small pieces shared by the IOCs."""

from __future__ import annotations

from caproto import ChannelType
from caproto.server import pvproperty

#: Length of the long-string (CHAR array) PVs: status texts and file paths.
TEXT_LENGTH = 1024


class RefusedError(ValueError):
    """A put the instrument refuses; the reason is also written to a status PV.

    caproto turns it into a failed put (ECA_PUTFAIL) for the client.
    """


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
