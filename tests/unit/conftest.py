"""The unit tier: analysis and callbacks on synthetic photons and documents, no IOC, no catalog.

Every test here takes well under a few seconds; the tier reuses the builders of the slower
tiers (``tests/callbacks/rawrun.py``, ``cycling.py``, ``tests/analysis/synthetic.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for helpers in (_TESTS / "callbacks", _TESTS / "analysis"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))
