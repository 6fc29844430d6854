"""The one extra thread that the numba kernels (``nogil``) share to use a second core."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_POOL: ThreadPoolExecutor | None = None


def on_second_thread(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn(*args)`` on the shared second thread (created on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qd-photons")
    return _POOL.submit(fn, *args)
