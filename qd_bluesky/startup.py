"""A ready bluesky session for the single-dot set-up.

In IPython::

    %run -m qd_bluesky.startup

or load it in a profile (``qd-bluesky ipython-profile``). It is also the startup module of
bluesky-queueserver (``qd-bluesky queueserver`` runs the RE Manager with it). The namespace
holds ``RE`` (``RE.md`` persisted in ``<data dir>/RE_md.json`` with an increasing ``scan_id``,
a suspender on the laser interlock, and in IPython the BestEffortCallback and progress bars),
``catalog`` (the Tiled catalog, written by TiledWriter), ``analyzer`` (the live photon
analysis), ``session``, the devices ``pot``, ``tcspc``, ``laser``, ``stage``, ``bp``, ``bps``
and the qd plans and plan stubs.

Configuration comes from the environment: ``QD_BLUESKY_PREFIX`` (PV prefix, default ``qd:``),
``QD_BLUESKY_DATA`` (data directory), ``QD_BLUESKY_CATALOG`` (a Tiled server URI) and
``QD_BLUESKY_CA_PORT`` (IOCs on 127.0.0.1 at that port, as ``qd-bluesky sim --port`` serves
them; otherwise ``EPICS_CA_ADDR_LIST``) and ``QD_BLUESKY_STAGE_MOTORS`` (the stage's three motor
records, x y z, if they are not ``{prefix}stage:x`` ...).
"""

from qd_bluesky._session import one_line_errors_in_ipython, open_session

globals().update(open_session().namespace())
one_line_errors_in_ipython()
