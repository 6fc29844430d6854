"""A ready bluesky session for the single-dot set-up.

In IPython::

    %run -m qd_bluesky.startup

or load it in a profile (``qd-bluesky ipython-profile``), or give it to bluesky-queueserver as
its startup module (``start-re-manager --startup-module qd_bluesky.startup``). The namespace
holds ``RE`` (with the BestEffortCallback, progress bars in IPython, ``RE.md`` persisted in
``<data dir>/RE_md.json`` and a suspender on the laser interlock), ``catalog`` (the Tiled
catalog, written by TiledWriter), ``analyzer`` (the live photon analysis), ``live_plots``,
the devices ``pot``, ``tcspc``, ``laser``, ``stage``, ``bp``, ``bps`` and the qd plans.

Configuration comes from the environment: ``QD_BLUESKY_PREFIX`` (PV prefix, default ``qd:``),
``QD_BLUESKY_DATA`` (data directory) and ``QD_BLUESKY_CATALOG`` (a Tiled server URI).
"""

from qd_bluesky._session import build_session

globals().update(build_session())
