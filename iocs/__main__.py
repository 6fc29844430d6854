"""Run the whole simulated instrument: ``python -m qd_bluesky.iocs --prefix qd:``.

The same as ``qd-bluesky sim`` but with caproto's options (``--interfaces``, ``-v``, ...).
"""

from ._simulated import main_instrument

if __name__ == "__main__":
    main_instrument()
