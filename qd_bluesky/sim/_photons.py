"""The photon generator: numba kernels that turn charge-state segments into T3 time tags.

Per laser pulse a dot in state ``s`` is excited with Poisson statistics (mean ``x`` excitations:
``p(>=1) = 1 - exp(-x)``), emits its exciton photon with the state's yield and, after two or more
excitations, a cascade (biexciton) photon first. Each emitted photon is detected with the
collection x detector efficiency, goes to APD 0 or 1 at the 50/50 splitter, is delayed by the
state's exponential decay plus a Gaussian IRF, and lands ``k`` periods later when the decay outlasts
the period (macrotime + k, as on the real card).

Pulses that give nothing are skipped geometrically: the number of silent pulses before the next
pulse with at least one detected photon is drawn directly, so the cost is per photon, not per
pulse. The same skipping serves background (ITO/solvent, excited by the laser) and dark counts
(uniform in time). The pending "next pulse" of each process is carried between calls, so chunking
does not change the photons. Dead time is applied afterwards on the time-ordered stream.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from ._rng import next_double, next_exponential, next_geometric

#: Inverse CDF of the standard normal on a regular grid of probabilities: a Gaussian draw is one
#: uniform and a linear interpolation (the IRF needs no tails beyond ~4 sigma).
_NORMAL_TABLE_SIZE = 8192


def _normal_table() -> NDArray[np.float64]:
    from statistics import NormalDist

    nd = NormalDist()
    p = (np.arange(_NORMAL_TABLE_SIZE + 1) + 0.5) / (_NORMAL_TABLE_SIZE + 1)
    return np.array([nd.inv_cdf(float(x)) for x in p])


NORMAL_TABLE = _normal_table()


@numba.njit(cache=True, inline="always")
def _fast_normal(rng: NDArray[np.uint64], table: NDArray[np.float64]) -> float:
    u = next_double(rng) * (len(table) - 1)
    i = int(u)
    return table[i] + (u - i) * (table[i + 1] - table[i])


#: Kind of source, for the kernels: a dot with charge states, a pulsed background, dark counts.
KIND_DOT, KIND_PULSED, KIND_DARK = 0, 1, 2


def skip_tables(probs: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per state: ``log(1 - q)`` (q = P(something detected)) and cumulative outcome thresholds.

    ``probs`` is ``(n_states, 4)`` from :func:`~._dot.emission_probabilities`.
    """
    q = probs.sum(axis=1)
    log1m_q = np.log1p(-np.clip(q, 0.0, 1.0 - 1e-15))
    safe = np.where(q > 0, q, 1.0)
    cum = np.cumsum(probs[:, :3], axis=1) / safe[:, None]
    return log1m_q, np.ascontiguousarray(cum)


class StateTables(NamedTuple):
    """Per charge state of one source, what the generator draws from (arrays of ``n_states``).

    Attributes
    ----------
    log1m_q
        ``log(1 - P(something detected))`` per pulse (see :func:`skip_tables`).
    cum
        ``(n_states, 3)`` cumulative outcome thresholds (see :func:`skip_tables`).
    tau_bins, tau_xx_bins
        Exciton and biexciton lifetimes in microtime bins.
    charge
        The ground-truth charge label written with each photon (int8).
    """

    log1m_q: NDArray[np.float64]
    cum: NDArray[np.float64]
    tau_bins: NDArray[np.float64]
    tau_xx_bins: NDArray[np.float64]
    charge: NDArray[np.int8]


class DetectionBins(NamedTuple):
    """The detection path in microtime bins: splitter, IRF, laser period and card window.

    Attributes
    ----------
    split
        Probability of going to channel 0 at the beam splitter.
    irf_sigma_bins, offset_bins
        IRF standard deviation and IRF centre after the sync.
    period_bins
        Laser period.
    micro_range
        Number of microtime bins the card records.
    normal_table
        :data:`NORMAL_TABLE` (the IRF's Gaussian draws).
    """

    split: float
    irf_sigma_bins: float
    offset_bins: float
    period_bins: float
    micro_range: int
    normal_table: NDArray[np.float64]


class PhotonColumns(NamedTuple):
    """Output columns the generator fills (preallocated, one row per photon).

    Attributes
    ----------
    macro, micro
        Laser pulse (sync count) and microtime bin (int64 both: the sort packs them later).
    channel
        APD (uint8).
    charge
        Ground-truth charge state of the emitter (int8).
    """

    macro: NDArray[np.int64]
    micro: NDArray[np.int64]
    channel: NDArray[np.uint8]
    charge: NDArray[np.int8]


@numba.njit(cache=True, inline="always")
def _record(
    delay_bins: float,
    pulse: int,
    state_charge: np.int8,
    rng: NDArray[np.uint64],
    det: DetectionBins,
    out: PhotonColumns,
    n_out: int,
) -> int:
    """Detect one photon emitted ``delay_bins`` after ``pulse``: splitter, IRF, wrap, window."""
    ch = 0 if next_double(rng) < det.split else 1
    t = det.offset_bins + delay_bins
    if det.irf_sigma_bins > 0.0:
        t += det.irf_sigma_bins * _fast_normal(rng, det.normal_table)
    if t < 0.0:
        t = 0.0
    k = int(t / det.period_bins)  # whole periods: the photon lands k pulses later
    micro = int(t - k * det.period_bins)
    if micro >= det.micro_range:  # beyond the card's window (periods longer than its range)
        return n_out
    out.macro[n_out] = pulse + k
    out.micro[n_out] = micro
    out.channel[n_out] = ch
    out.charge[n_out] = state_charge
    return n_out + 1


@numba.njit(cache=True)
def generate(
    rng: NDArray[np.uint64],
    pending: NDArray[np.int64],
    kind: int,
    seg_start: NDArray[np.int64],
    seg_stop: NDArray[np.int64],
    seg_state: NDArray[np.int64],
    tables: StateTables,
    det: DetectionBins,
    out: PhotonColumns,
    n_out: int,
) -> int:
    """Append the photons of pulses in the segments ``[seg_start, seg_stop)`` to the outputs.

    Parameters
    ----------
    rng
        The source's generator state (advanced in place).
    pending
        ``pending[0]``: the next pulse with a detection drawn earlier, valid for the first
        segment only (-1: draw afresh). Updated in place: the pending pulse after the last
        segment, or -1 when the last segment is empty.
    kind
        :data:`KIND_DOT` (per-state outcome tables), :data:`KIND_PULSED` (one photon with the
        decay of ``tables.tau_bins[state]``) or :data:`KIND_DARK` (uniform over the period).
    seg_start, seg_stop, seg_state
        Consecutive pulse ranges with a constant state; a new segment means new odds, so the
        skip is drawn afresh at its start (exact for a memoryless geometric skip).
    tables
        The source's per-state tables.
    det
        The detection path in microtime bins.
    out, n_out
        Output columns and the photons already in them.

    Returns
    -------
    int
        New number of photons in the outputs, or -1 when they are full (the caller restores
        ``rng`` and ``pending`` and calls again with larger arrays).
    """
    log1m_q, cum, charge = tables.log1m_q, tables.cum, tables.charge
    cap = len(out.macro)
    nxt = pending[0]
    for i in range(len(seg_start)):
        a = seg_start[i]
        b = seg_stop[i]
        s = seg_state[i]
        if i > 0 or nxt < 0:
            if b <= a:
                nxt = -1
                continue
            nxt = a + next_geometric(rng, log1m_q[s])
        while nxt < b:
            if n_out + 2 > cap:
                return -1
            if kind == KIND_DARK:
                micro = int(next_double(rng) * det.period_bins)
                ch = 0 if next_double(rng) < det.split else 1
                if micro < det.micro_range:
                    out.macro[n_out] = nxt
                    out.micro[n_out] = micro
                    out.channel[n_out] = ch
                    out.charge[n_out] = charge[s]
                    n_out += 1
            elif kind == KIND_PULSED:
                delay = tables.tau_bins[s] * next_exponential(rng)
                n_out = _record(delay, nxt, charge[s], rng, det, out, n_out)
            else:
                u = next_double(rng)
                # 0: single exciton; 1: biexciton, exciton photon only; 2: cascade photon only;
                # 3: both. The exciton of a biexciton starts when the biexciton has decayed.
                if u < cum[s, 0]:
                    t_xx = 0.0
                    cascade, exciton = False, True
                else:
                    t_xx = tables.tau_xx_bins[s] * next_exponential(rng)
                    cascade = u >= cum[s, 1]
                    exciton = u < cum[s, 1] or u >= cum[s, 2]
                if cascade:
                    n_out = _record(t_xx, nxt, charge[s], rng, det, out, n_out)
                if exciton:
                    delay = t_xx + tables.tau_bins[s] * next_exponential(rng)
                    n_out = _record(delay, nxt, charge[s], rng, det, out, n_out)
            nxt = nxt + 1 + next_geometric(rng, log1m_q[s])
    pending[0] = nxt
    return n_out


@numba.njit(cache=True)
def sort_keys(
    macro: NDArray[np.int64],
    micro: NDArray[np.int64],
    chan: NDArray[np.uint8],
    src: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Sort key: arrival (macrotime, microtime), then channel, then source (6 bits).

    Ties keep the generation order under a stable sort, which does not depend on chunking.
    """
    n = len(macro)
    key = np.empty(n, dtype=np.int64)
    if n == 0:
        return key
    base = macro.min()
    for i in range(n):
        key[i] = ((macro[i] - base) << 23) | (micro[i] << 7) | (np.int64(chan[i]) << 6) | src[i]
    return key


@numba.njit(cache=True)
def gather_with_dead_time(
    order: NDArray[np.int64],
    n_out: int,
    macro: NDArray[np.int64],
    micro: NDArray[np.int64],
    chan: NDArray[np.uint8],
    charge: NDArray[np.int8],
    src: NDArray[np.int64],
    epoch_sync0: NDArray[np.int64],
    epoch_t0: NDArray[np.float64],
    epoch_rate: NDArray[np.float64],
    unit_s: float,
    dead_time_s: float,
    last_s: NDArray[np.float64],
) -> tuple:
    """Reorder the photons; the first ``n_out`` (in order) pass a per-channel dead time.

    Dead time is non-paralysable: a photon is recorded when it comes at least ``dead_time_s``
    after the last recorded photon of its channel (``last_s``, carried between chunks). Returns
    the recorded columns and the remaining (carried) columns, both in arrival order.
    """
    keep = np.zeros(n_out, dtype=np.bool_)
    e = 0
    n_keep = 0
    for k in range(n_out):
        i = order[k]
        m = macro[i]
        while e + 1 < len(epoch_sync0) and epoch_sync0[e + 1] <= m:
            e += 1
        t = epoch_t0[e] + (m - epoch_sync0[e]) / epoch_rate[e] + micro[i] * unit_s
        c = chan[i]
        if t - last_s[c] >= dead_time_s:
            keep[k] = True
            last_s[c] = t
            n_keep += 1
    o_macro = np.empty(n_keep, dtype=np.int64)
    o_micro = np.empty(n_keep, dtype=np.uint16)
    o_chan = np.empty(n_keep, dtype=np.uint8)
    o_charge = np.empty(n_keep, dtype=np.int8)
    o_src = np.empty(n_keep, dtype=np.int64)
    j = 0
    for k in range(n_out):
        if keep[k]:
            i = order[k]
            o_macro[j] = macro[i]
            o_micro[j] = micro[i]
            o_chan[j] = chan[i]
            o_charge[j] = charge[i]
            o_src[j] = src[i]
            j += 1
    n_rest = len(order) - n_out
    r_macro = np.empty(n_rest, dtype=np.int64)
    r_micro = np.empty(n_rest, dtype=np.int64)
    r_chan = np.empty(n_rest, dtype=np.uint8)
    r_charge = np.empty(n_rest, dtype=np.int8)
    r_src = np.empty(n_rest, dtype=np.int64)
    for k in range(n_rest):
        i = order[n_out + k]
        r_macro[k] = macro[i]
        r_micro[k] = micro[i]
        r_chan[k] = chan[i]
        r_charge[k] = charge[i]
        r_src[k] = src[i]
    return (
        (o_macro, o_micro, o_chan, o_charge, o_src),
        (r_macro, r_micro, r_chan, r_charge, r_src),
    )
