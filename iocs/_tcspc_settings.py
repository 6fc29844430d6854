"""The TCSPC card's input settings and status words, as PVs beside the TCSPC IOC's own.

:class:`TcspcSettingsGroup` is a subgroup of :class:`~._tcspc.TcspcIOC` with an empty prefix:
its PVs are ``{P}tcspc:sync_divider`` etc. A put goes to the backend's ``configure(name,
value)`` (the Harp backend calls TH260Lib, the simulated card applies what it can simulate) and
is refused while acquiring; the status words are refreshed by the IOC's photon loop.
"""

from __future__ import annotations

from typing import Any

from caproto.server import PVGroup, pvproperty

from . import _harp_codes as hc
from ._common import text_pv


async def _put_setting(self: Any, instance: Any, value: Any) -> Any:
    # ``self`` is the TcspcSettingsGroup (caproto's putter signature), its parent the IOC.
    name = hc.CARD_SETTINGS[instance.pvspec.attr][0]
    return await self.parent.configure_card(name, value, instance)


def _setting(pv: str, units: str, lo: float, hi: float, doc: str = "") -> pvproperty:
    value = hc.CARD_SETTINGS[pv][1]
    kwargs: dict[str, Any] = {"units": units} if units else {}
    if isinstance(value, float):
        kwargs["precision"] = 1
    return pvproperty(
        value=value,
        put=_put_setting,
        doc=doc,
        lower_ctrl_limit=lo,
        upper_ctrl_limit=hi,
        **kwargs,
    )


_LEVEL = hc.TRG_LEVEL_RANGE_MV
_OFFSET = hc.CHANNEL_OFFSET_RANGE_PS


class TcspcSettingsGroup(PVGroup):
    """Input settings of the card (puts refused while acquiring) and its status words.

    PVs (prefix ``{P}tcspc:``)
    --------------------------
    sync_divider
        Sync divider 1..8. In T3 the timestamps count divided syncs: their unit is
        ``sync_divider / sync_rate`` and the microtime spans the divided period.
    sync_level, sync_zero_cross
        Sync CFD level and zero cross (mV; TimeHarp 260 Pico), or the edge trigger level
        (``sync_level``, Nano).
    input_level0/1, input_zero_cross0/1
        The same for each detector input.
    sync_offset, input_offset0/1
        Channel offsets (ps, +-99999).
    input_enable0/1
        1: the input records photons.
    dead_time0/1
        Dead-time code 0..7 of each input (TimeHarp 260 Pico).
    marker_edges, marker_enable
        Bit ``k`` for marker input ``k + 1``: 1 = rising edge / enabled.
    marker_holdoff
        Marker hold-off (ns, 0..25500).
    binning
        T3 microtime bin = base resolution x 2^binning (``resolution`` follows); the T2 tick
        is fixed by the card.
    warnings, warnings_text
        The card's warning bits (``TH260_GetWarnings``) and their text.
    flags, flags_text
        The card's flags (``TH260_GetFlags``: FIFO full 0x2, sync lost 0x4, events dropped
        0x8, ...) and their text.
    fifo_full
        1 when the card's FIFO filled up and ended the last acquisition (reset at each start).
    """

    sync_divider = _setting("sync_divider", "", *hc.SYNCDIV_RANGE, doc="sync divider")
    sync_level = _setting("sync_level", "mV", *_LEVEL, doc="sync CFD/trigger level")
    sync_zero_cross = _setting("sync_zero_cross", "mV", *hc.CFD_ZC_RANGE_MV)
    sync_offset = _setting("sync_offset", "ps", *_OFFSET, doc="sync channel offset")
    input_level0 = _setting("input_level0", "mV", *_LEVEL)
    input_level1 = _setting("input_level1", "mV", *_LEVEL)
    input_zero_cross0 = _setting("input_zero_cross0", "mV", *hc.CFD_ZC_RANGE_MV)
    input_zero_cross1 = _setting("input_zero_cross1", "mV", *hc.CFD_ZC_RANGE_MV)
    input_offset0 = _setting("input_offset0", "ps", *_OFFSET)
    input_offset1 = _setting("input_offset1", "ps", *_OFFSET)
    input_enable0 = _setting("input_enable0", "", 0, 1)
    input_enable1 = _setting("input_enable1", "", 0, 1)
    dead_time0 = _setting("dead_time0", "", *hc.DEAD_TIME_CODE_RANGE)
    dead_time1 = _setting("dead_time1", "", *hc.DEAD_TIME_CODE_RANGE)
    marker_edges = _setting("marker_edges", "", 0, 0xF, doc="bit k: rising edge")
    marker_enable = _setting("marker_enable", "", 0, 0xF, doc="bit k: marker k+1 on")
    marker_holdoff = _setting("marker_holdoff", "ns", *hc.HOLDOFF_RANGE_NS)
    binning = _setting("binning", "", 0, 15, doc="T3 microtime bin = base x 2^binning")
    warnings = pvproperty(value=0, read_only=True, doc="the card's warning bits")
    warnings_text = text_pv("", doc="the card's warnings")
    flags = pvproperty(value=0, read_only=True, doc="the card's flag bits")
    flags_text = text_pv("", doc="the card's flags")
    fifo_full = pvproperty(value=0, read_only=True, doc="1: a full FIFO ended the acquisition")

    async def show_status(self, warnings: int, flags: int) -> None:
        """Write the status words (only on change: the loop calls this every tick)."""
        if warnings != self.warnings.value:
            await self.warnings.write(warnings)
            await self.warnings_text.write(hc.bits_text(warnings, hc.WARNING_TEXTS))
        if flags != self.flags.value:
            await self.flags.write(flags)
            await self.flags_text.write(hc.bits_text(flags, hc.FLAG_TEXTS))
