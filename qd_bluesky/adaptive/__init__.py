"""Adaptive bias mapping: where to measure the dot next (plain numpy, no EPICS, no Bluesky).

:class:`BiasRecommender` proposes the next bias from the points measured so far: it halves
the bias interval across which the dot's log-lifetime and log-intensity change and bend most,
until every real change is placed to within the tolerance. It satisfies
bluesky-adaptive's ``Optimizer`` and ``SupportsStoppingCriteria`` protocols structurally, so
:func:`qd_bluesky.plans.adaptive_bias_map` drives it with ``bluesky_adaptive.optimize_step``::

    rec = BiasRecommender(0.0, -2.0, tolerance_v=0.05)
    while not rec.should_stop()[0]:
        (s,) = rec.suggest(1)
        rec.ingest([{"_id": s["_id"], **measure(s["bias"])}])
    rec.changes()            # the intervals that hold the transitions
"""

from ._recommender import BiasPoint, BiasRecommender, Interval, level_crossings

__all__ = ["BiasPoint", "BiasRecommender", "Interval", "level_crossings"]
