"""Small example files shipped with the package."""

from pathlib import Path

EXAMPLE_PTU = Path(__file__).with_name("example_hydraharp_t3.ptu")

__all__ = ["EXAMPLE_PTU"]
