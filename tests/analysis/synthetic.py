"""Synthetic T3 photon streams with known truth, for tests and benchmarks.

Pure numpy and independent of ``qd_bluesky`` (apart from :meth:`Synthetic.table`), so that the
analysis is checked against physics written down separately from it.

The emitter is pumped once per laser pulse (period ``period_s``). In each state it emits on a
pulse with probability ``rate_cps * period_s`` (``rate_cps`` is the *detected* rate, both
detectors together), after a delay drawn from an exponential of the state's lifetime. The delay
can exceed the period: the photon then arrives after a later sync, which produces the periodic
tail of the decay histogram exactly as on real hardware. Each arrival is smeared by a Gaussian
IRF and offset by ``decay_start_s`` (the IRF centre), then goes to detector 0 or 1 with
probability 1/2 (a 50/50 splitter). A flat background of ``background_cps`` is added.

Antibunching: a fraction ``f`` of the emitted photons comes from a perfect single-photon source
(at most one photon per pulse) and ``1 - f`` from an independent Poissonian source with the same
decay (a stand-in for multi-photon emission). At the pulse level g2(0) = 1 - f**2;
``g2_zero`` sets f. :func:`expected_g2_zero` gives the value the paper's peak-area definition
must return, which also counts the tails of neighbouring peaks spilling into the +-T/2 windows and
the background coincidences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Synthetic:
    """A synthetic T3 photon stream and the truth it was drawn from."""

    macrotime: np.ndarray
    microtime: np.ndarray
    channel: np.ndarray
    period_s: float
    microtime_unit_s: float
    microtime_bins: int
    duration_s: float
    decay_start_s: float
    irf_fwhm_s: float
    background_cps: float
    g2_pulse: float
    #: (rate_cps, lifetime_s) of each state.
    states: list[tuple[float, float]]
    #: Start time of each dwell and the state it is in (the last dwell ends at ``duration_s``).
    dwell_start_s: np.ndarray = field(repr=False)
    dwell_state: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.macrotime)

    @property
    def macrotime_unit_s(self) -> float:
        return self.period_s

    def table(self):
        """The stream as a :class:`qd_bluesky.analysis.PhotonTable`."""
        from qd_bluesky.analysis import PhotonTable

        return PhotonTable(
            self.macrotime,
            self.microtime,
            self.channel,
            self.period_s,
            self.microtime_unit_s,
            self.microtime_bins,
            1.0 / self.period_s,
            "T3",
            format="synthetic",
        )

    def state_fraction(self, edges_s: np.ndarray) -> np.ndarray:
        """Fraction of each time bin (between consecutive ``edges_s``) spent in each state."""
        edges_s = np.asarray(edges_s, float)
        starts = self.dwell_start_s
        stops = np.append(starts[1:], self.duration_s)
        out = np.zeros((len(edges_s) - 1, len(self.states)))
        for a, b, s in zip(starts, stops, self.dwell_state, strict=True):
            lo = np.maximum(edges_s[:-1], a)
            hi = np.minimum(edges_s[1:], b)
            out[:, s] += np.clip(hi - lo, 0, None)
        return out / np.diff(edges_s)[:, None]

    def time_fraction(self) -> np.ndarray:
        """Fraction of the whole stream spent in each state."""
        return self.state_fraction(np.array([0.0, self.duration_s]))[0]


def generate(
    duration_s: float,
    states: list[tuple[float, float]] | tuple[tuple[float, float], ...] = ((35e3, 125e-9),),
    *,
    dwell_s: float | list[float] | None = None,
    period_s: float = 400e-9,
    microtime_unit_s: float = 25e-12,
    decay_start_s: float = 5e-9,
    irf_fwhm_s: float = 0.4e-9,
    background_cps: float = 0.0,
    g2_zero: float = 0.0,
    seed: int = 0,
    switches: tuple[np.ndarray, np.ndarray] | None = None,
) -> Synthetic:
    """Draw a photon stream.

    Parameters
    ----------
    duration_s
        Length of the recording.
    states
        ``(rate_cps, lifetime_s)`` per emitter state; ``rate_cps`` is the detected signal rate.
    dwell_s
        Mean dwell time per state (exponentially distributed; one value for all states, or one
        per state). The emitter jumps to a different state chosen at random. ``None``: no
        blinking, the first state throughout.
    period_s, microtime_unit_s
        Laser period and TCSPC bin. The period need not be a whole number of bins.
    decay_start_s, irf_fwhm_s
        Centre and FWHM of the Gaussian IRF (the time of zero delay in the microtime frame).
    background_cps
        Flat background (dark counts), both detectors together.
    g2_zero
        Pulse-level g2(0) of the signal, in [0, 1].
    seed
        Seed of the random generator.
    switches
        ``(start_s, state)`` of every dwell, the first starting at 0; replaces ``dwell_s``.
    """
    rng = np.random.default_rng(seed)
    if not 0.0 <= g2_zero <= 1.0:
        raise ValueError(f"g2_zero must be in [0, 1], got {g2_zero}")
    single_fraction = math.sqrt(1.0 - g2_zero)
    n_states = len(states)
    if switches is None:
        starts, which = _dwells(duration_s, n_states, dwell_s, rng)
    else:
        starts, which = np.asarray(switches[0], float), np.asarray(switches[1], np.int64)
    stops = np.append(starts[1:], duration_s)
    sigma = irf_fwhm_s / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    times = []
    for a, b, s in zip(starts, stops, which, strict=True):
        rate, tau = states[s]
        first = math.ceil(a / period_s)
        n_pulses = max(math.ceil(b / period_s) - first, 0)
        mu = rate * period_s
        if mu > 1.0:
            raise ValueError(f"rate {rate} cps exceeds one photon per pulse")
        n_poisson = rng.poisson((1.0 - single_fraction) * mu * n_pulses) if n_pulses else 0
        pulses = [
            _bernoulli_pulses(n_pulses, single_fraction * mu, rng),
            rng.integers(0, max(n_pulses, 1), n_poisson),
        ]
        pulse = np.concatenate(pulses).astype(np.float64) + first
        delay = rng.exponential(tau, len(pulse)) + rng.normal(0.0, sigma, len(pulse))
        times.append(pulse * period_s + decay_start_s + delay)
    times.append(rng.uniform(0.0, duration_s, rng.poisson(background_cps * duration_s)))
    t = np.concatenate(times)
    t = np.sort(t[(t >= 0.0) & (t < duration_s)])

    macrotime = np.floor(t / period_s).astype(np.int64)
    rest = t - macrotime * period_s
    microtime_bins = math.ceil(period_s / microtime_unit_s - 1e-9)
    microtime = np.clip(rest / microtime_unit_s, 0, microtime_bins - 1).astype(np.uint16)
    channel = rng.integers(0, 2, len(t)).astype(np.uint8)
    return Synthetic(
        macrotime,
        microtime,
        channel,
        period_s,
        microtime_unit_s,
        microtime_bins,
        duration_s,
        decay_start_s,
        irf_fwhm_s,
        background_cps,
        g2_zero,
        [tuple(map(float, st)) for st in states],
        starts,
        which,
    )


def expected_g2_zero(syn: Synthetic, n_side: int = 3, half_window: float = 0.5) -> float:
    """g2(0) as the paper defines it (peak areas in +-T/2 windows, no background subtraction).

    Pairs of photons from pulses j periods apart have a delay difference jT + D, where D, the
    difference of two independent exponential delays, is Laplace distributed (the IRF is far too
    narrow to matter against T/2). Pulse pairs at j != 0 coincide at rate mu**2 (independent
    pulses; the state does not change within a few periods), at j = 0 at g2_pulse * mu**2. The
    flat background adds 2*mu*beta + beta**2 per window (beta: background counts per period).
    ``half_window`` (in periods) gives the value of narrower windows [kT - hT, kT + hT), to
    show how much the window choice matters.
    """
    T = syn.period_s
    h = half_window
    weights = syn.time_fraction()
    beta = syn.background_cps * T

    def leak(m: int, tau: float) -> float:
        # P(D in [mT - hT, mT + hT)) for D ~ Laplace(0, tau)
        if m == 0:
            return 1.0 - math.exp(-h * T / tau)
        m = abs(m)
        return 0.5 * (math.exp(-(m - h) * T / tau) - math.exp(-(m + h) * T / tau))

    def area(k: int) -> float:
        total = 0.0
        for w, (rate, tau) in zip(weights, syn.states, strict=True):
            mu = rate * T
            # all pulse pairs j: sum_j L(k-j) (= 1 for h = 1/2); the j = 0 pair is reduced to
            # g2_pulse
            every = sum(leak(m, tau) for m in range(-int(60 * tau / T) - 2, int(60 * tau / T) + 3))
            total += w * mu**2 * (every - (1.0 - syn.g2_pulse) * leak(k, tau))
        mean_mu = sum(w * rate * T for w, (rate, _) in zip(weights, syn.states, strict=True))
        # flat in the delay: proportional to the window width 2hT
        return total + (2.0 * mean_mu * beta + beta**2) * 2.0 * h

    side = np.mean(
        [area(k) for k in range(1, n_side + 1)] + [area(-k) for k in range(1, n_side + 1)]
    )
    return area(0) / side


def random_chunks(n: int, rng: np.random.Generator, pieces: int) -> list[slice]:
    """``pieces`` random chunks of ``range(n)`` plus an empty and a one-photon chunk."""
    cuts = rng.integers(0, n + 1, max(pieces - 1, 0))
    k = int(rng.integers(0, n))
    cuts = np.sort(np.concatenate(([0, n, k, k, k + 1], cuts)))
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _dwells(duration_s, n_states, dwell_s, rng):
    """Dwell start times and states of a random telegraph between ``n_states`` states."""
    if dwell_s is None or n_states == 1:
        return np.zeros(1), np.zeros(1, dtype=np.int64)
    means = np.broadcast_to(np.asarray(dwell_s, float), (n_states,))
    starts, which = [0.0], [int(rng.integers(n_states))]
    t = 0.0
    while True:
        t += rng.exponential(means[which[-1]])
        if t >= duration_s:
            break
        nxt = int(rng.integers(n_states - 1))
        which.append(nxt + (nxt >= which[-1]))
        starts.append(t)
    return np.array(starts), np.array(which, dtype=np.int64)


def _bernoulli_pulses(n_pulses: int, p: float, rng) -> np.ndarray:
    """Indices of the pulses (each at most once) that emit, each with probability ``p``."""
    if p <= 0.0 or n_pulses == 0:
        return np.zeros(0, dtype=np.int64)
    if p >= 1.0:
        return np.arange(n_pulses)
    expected = n_pulses * p
    out = []
    last = -1
    while last < n_pulses:
        size = int(expected + 6 * math.sqrt(expected) + 100)
        idx = last + np.cumsum(rng.geometric(p, size))
        out.append(idx)
        last = int(idx[-1])
    idx = np.concatenate(out)
    return idx[idx < n_pulses]
