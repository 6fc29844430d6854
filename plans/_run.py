"""The run around every photon plan: open, start the card, always stop it, close."""

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ._stubs import always, finish_photons, start_photons


def photon_run(
    tcspc: Flyable,
    body: MsgGenerator[Any],
    md: dict[str, Any],
    *,
    monitors: tuple[Readable, ...] = (),
) -> MsgGenerator[Any]:
    """Run ``body`` in a run with the photon stream around it.

    - the run cannot be rewound (``clear_checkpoint``): a photon file cannot be replayed, so a
      pause (Ctrl-C) aborts the run instead of resuming it;
    - ``monitors`` are monitored for the whole acquisition (their own streams);
    - the acquisition is started before ``body`` and, whatever happens in ``body`` (success,
      failure, abort), the monitors are stopped and the acquisition completed and its last
      rows announced, so every photon written is in the run's stream datums and the file is
      closed.
    """

    def finish() -> MsgGenerator[None]:
        # Monitors first: bluesky emits a monitor's event from the control layer's thread,
        # so an update already in flight at `unmonitor` can still arrive a moment later;
        # stopping them before the card gives it that moment before the stop document.
        for signal in monitors:
            yield from bps.unmonitor(signal)
        yield from finish_photons(tcspc)

    @bpp.run_decorator(md=md)
    def run() -> MsgGenerator[Any]:
        yield from bps.clear_checkpoint()
        for signal in monitors:
            yield from bps.monitor(signal, name=f"{signal.name}_monitor")
        yield from start_photons(tcspc)
        return (yield from always(body, finish, "stopping the photon acquisition"))

    return (yield from run())
