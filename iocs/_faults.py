"""A backend that fails on request: wraps any instrument backend of :mod:`._backends`.

For tests and drills: make the potentiostat trip on its compliance, the card stop delivering
photons, the stage controller time out, and see what the IOC and the clients do.
"""

from __future__ import annotations

import time
from typing import Any

from ._backends import BackendFault


class FaultInjectingBackend:
    """Wrap ``inner`` (any backend); operations named in :meth:`inject` fail.

    Everything else is passed through to ``inner``, so the wrapper implements whichever
    protocol ``inner`` does.

    Parameters
    ----------
    inner
        The backend to wrap (e.g. a :class:`~._sim_backends.SimulatedPotentiostat`).

    Examples
    --------
    >>> pot = FaultInjectingBackend(SimulatedPotentiostat(sample))  # doctest: +SKIP
    >>> pot.inject("apply_bias", "refuse", "compliance: 10 mA reached")  # doctest: +SKIP
    """

    #: What a faulty operation does: the instrument refuses (:class:`BackendFault`), the link
    #: breaks (``ConnectionError``), or it does not answer (blocks ``hang_s``, then
    #: ``TimeoutError``).
    FAULTS = ("refuse", "raise", "hang")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._faults: dict[str, tuple[str, str, float]] = {}

    def inject(self, operation: str, fault: str, message: str = "", *, hang_s: float = 1.0) -> None:
        """Make ``operation`` (a method or property of the backend) fail from now on.

        Parameters
        ----------
        operation
            Name of the method or property, e.g. ``"apply_bias"`` or ``"read_photons"``.
        fault
            One of :attr:`FAULTS`.
        message
            The failure's one-line message (default: says the fault was injected).
        hang_s
            For ``"hang"``: how long the call blocks before its ``TimeoutError``, as a driver
            that waits for an answer up to its timeout.

        Raises
        ------
        ValueError
            ``fault`` is not one of :attr:`FAULTS`, or the backend has no ``operation``.
        """
        if fault not in self.FAULTS:
            raise ValueError(f"fault must be one of {', '.join(self.FAULTS)}, not {fault!r}")
        if not hasattr(self._inner, operation):
            raise ValueError(f"{type(self._inner).__name__} has no operation {operation!r}")
        self._faults[operation] = (fault, message or f"{operation}: injected {fault}", hang_s)

    def clear(self, operation: str | None = None) -> None:
        """Let ``operation`` (default: every operation) work again."""
        if operation is None:
            self._faults.clear()
        else:
            self._faults.pop(operation, None)

    def _fail(self, operation: str) -> None:
        fault, message, hang_s = self._faults[operation]
        if fault == "refuse":
            raise BackendFault(message)
        if fault == "raise":
            raise ConnectionError(message)
        time.sleep(hang_s)
        raise TimeoutError(message)

    def __setattr__(self, name: str, value: Any) -> None:
        # A setting (e.g. a potentiostat's autorange) belongs to the wrapped instrument.
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper: the backend's operations.
        if name.startswith("_") or name not in self._faults:
            return getattr(self._inner, name)
        value = getattr(type(self._inner), name, None)
        if isinstance(value, property) or not callable(getattr(self._inner, name)):
            self._fail(name)  # a property: reading it fails

        def failing(*args: Any, **kwargs: Any) -> Any:
            self._fail(name)

        return failing
