"""qd-bluesky: single-quantum-dot spectroscopy under electrochemical bias, the Bluesky way."""

__version__ = "0.1.0"
