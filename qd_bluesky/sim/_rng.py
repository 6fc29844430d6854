"""A small random generator whose whole state is a ``uint64[4]`` array (xoshiro256**).

numba's built-in generator hides its state, so a stream cannot be saved between chunks or kept
apart from the other streams. Each physical process (a dot's charge chain, its photons, the
background, the dark counts) owns one of these states, seeded by splitmix64 from the user seed and
a stream number: the draws of one process never depend on another, nor on chunk boundaries.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> tuple[int, int]:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return x, z ^ (z >> 31)


def new_stream(seed: int, *stream: int) -> NDArray[np.uint64]:
    """The generator state for stream ``(seed, *stream)``; equal keys give equal streams."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    x = seed & _MASK
    for s in stream:
        x, z = _splitmix64(x ^ ((s * 0xD1342543DE82EF95) & _MASK))
        x ^= z
    state = []
    for _ in range(4):
        x, z = _splitmix64(x)
        state.append(z)
    if not any(state):  # the all-zero state is the one fixed point of xoshiro
        state[0] = 1
    return np.array(state, dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(cache=True)
def next_uint64(s: NDArray[np.uint64]) -> np.uint64:
    """xoshiro256** step (Blackman & Vigna)."""
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@numba.njit(cache=True)
def next_double(s: NDArray[np.uint64]) -> float:
    """Uniform on [0, 1) with 53 random bits."""
    return float(next_uint64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def next_exponential(s: NDArray[np.uint64]) -> float:
    """Exponential with mean 1."""
    return -np.log(1.0 - next_double(s))


@numba.njit(cache=True)
def next_normal(s: NDArray[np.uint64]) -> float:
    """Standard normal (Box-Muller, one value per call: simple and stateless)."""
    u1 = 1.0 - next_double(s)
    u2 = next_double(s)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@numba.njit(cache=True)
def next_geometric(s: NDArray[np.uint64], log1m_p: float) -> int:
    """Failures before the first success of Bernoulli trials, given ``log(1 - p)`` (< 0).

    ``log1m_p == 0`` (p = 0) gives a huge number: nothing ever happens.
    """
    if log1m_p >= 0.0:
        return 1 << 62
    g = np.log(1.0 - next_double(s)) / log1m_p
    if g >= 4.0e18:
        return 1 << 62
    return int(g)
