"""A caproto IOC that refuses like an EPICS-base record: alarm, old value, completed put.

Run as a script: ``python base_record_ioc.py --prefix P --interfaces 127.0.0.1``. It serves an
axis ``{P}val`` (setpoint, put completion after a short move), ``{P}rbv``, ``{P}abort`` and
``{P}run`` (an operation). A setpoint beyond ``HIGH_LIMIT`` is refused the base way: the
record keeps its value, goes to SEVR=INVALID STAT=HWLIMIT, and the put callback completes
with success. A value in the warning band above ``WARN`` is taken with a MINOR HIGH alarm.
"""

from __future__ import annotations

import asyncio

from caproto import AlarmSeverity, AlarmStatus, SkipWrite
from caproto.server import PVGroup, pvproperty

from qd_bluesky.iocs._server import ioc_parser, serve

HIGH_LIMIT = 10.0
WARN = 8.0
MOVE_S = 0.1


class BaseRecordAxis(PVGroup):
    val = pvproperty(value=0.0, precision=3)
    rbv = pvproperty(value=0.0, precision=3, read_only=True)
    abort = pvproperty(value=0)
    run = pvproperty(value=0.0, precision=3)

    @val.putter
    async def val(self, instance, value):
        return await self._base_put(instance, value, move=True)

    @run.putter
    async def run(self, instance, value):
        return await self._base_put(instance, value, move=False)

    async def _base_put(self, instance, value, *, move: bool):
        if abs(value) > HIGH_LIMIT:
            await instance.alarm.write(
                status=AlarmStatus.HWLIMIT, severity=AlarmSeverity.INVALID_ALARM
            )
            raise SkipWrite  # the old value stays; the put still completes
        if abs(value) > WARN:
            await instance.alarm.write(status=AlarmStatus.HIGH, severity=AlarmSeverity.MINOR_ALARM)
        else:
            await instance.alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)
        if move:
            await asyncio.sleep(MOVE_S)
            await self.rbv.write(value)
        return value


if __name__ == "__main__":
    parser, split_args = ioc_parser(desc="An axis that refuses like an EPICS-base record.")
    ioc_options, run_options = split_args(parser.parse_args())
    serve([BaseRecordAxis(prefix=ioc_options["prefix"])], **run_options)
