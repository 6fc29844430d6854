"""Time-binned accumulators over consecutive windows, so that a long run keeps bounded memory.

A 20 ms FLID keeps a coarse decay histogram per bin (3.2 kB at 400 ns and 0.5 ns): 10 MB per
minute, 1.7 GB for the paper's three-hour cycling run. The bins are therefore accumulated in
windows of a fixed number of bins, each by a fresh accumulator aligned to the window's first
bin. A window's bins are handed out once complete and the window is then dropped. Because the
window length is a whole number of bins and of ticks, every photon lands in the same global bin
as in one accumulator over the whole run: the result does not depend on the windows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from qd_bluesky.analysis import Binned, add_photons, per_bin_arrays

Arrays = tuple[NDArray, ...]


class WindowedBins:
    """Per-bin sums of one binned accumulator type (``IntensityTrace``, ``Flid``) in windows.

    Photons go in through the analysis's ``add_photons`` and bins come out through its
    ``per_bin_arrays``, whichever of the two types ``make`` builds.

    Parameters
    ----------
    make
        ``make(t0_ticks)`` returns a fresh accumulator whose bin 0 starts at ``t0_ticks``.
    t0_ticks
        Alignment of the global bins (their width is the accumulator's ``ticks_per_bin``).
    window_bins
        Bins per window; None for a single window over the whole run (used when the bin width
        is not a whole number of ticks, so that windows could not align exactly).
    """

    def __init__(
        self,
        make: Callable[[int], Binned],
        *,
        t0_ticks: int,
        window_bins: int | None,
    ) -> None:
        self._make = make
        self._acc = make(int(t0_ticks))
        self.ticks_per_bin = float(self._acc.ticks_per_bin)
        self.t0_ticks = int(t0_ticks)
        if window_bins is not None:
            ticks = window_bins * self.ticks_per_bin
            if not (self.ticks_per_bin.is_integer() and ticks.is_integer()):
                window_bins = None
        self.window_bins = window_bins
        self._window_ticks = None if window_bins is None else int(window_bins * self.ticks_per_bin)
        self._window = 0
        template = per_bin_arrays(self._acc)
        self._tails = [(a.shape[1:], a.dtype) for a in template]
        #: Windows that ended but whose bins were not all handed out: (first global bin, arrays).
        self._closed: list[tuple[int, Arrays]] = []
        #: Global bins handed out so far.
        self.taken = 0
        #: Global bin of the latest photon (-1 before any).
        self.last_bin = -1

    @property
    def accumulator(self) -> Binned:
        """The open window's accumulator (all windows share its settings)."""
        return self._acc

    def bin_of(self, macrotime: int) -> int:
        """Global bin of a macrotime, computed as the numba kernels do."""
        return int((int(macrotime) - self.t0_ticks) / self.ticks_per_bin)

    def add(self, macrotime: NDArray, microtime: NDArray, channel: NDArray) -> None:
        """Accumulate photons (in time order, after the previous ones)."""
        n = len(macrotime)
        if n == 0:
            return
        if self._window_ticks is None:
            add_photons(self._acc, macrotime, microtime, channel)
        else:
            pos = 0
            while pos < n:
                edge = self.t0_ticks + (self._window + 1) * self._window_ticks
                cut = pos + int(np.searchsorted(macrotime[pos:], edge, side="left"))
                if cut > pos:
                    add_photons(self._acc, macrotime[pos:cut], microtime[pos:cut], channel[pos:cut])
                if cut == n:
                    break
                # The window is complete: keep its bins until handed out, start the one that
                # holds the next photon (windows without photons hold only empty bins).
                self._closed.append((self._window * self.window_bins, per_bin_arrays(self._acc)))
                self._window = int(macrotime[cut] - self.t0_ticks) // self._window_ticks
                self._acc = self._make(self.t0_ticks + self._window * self._window_ticks)
                pos = cut
        self.last_bin = max(self.last_bin, self.bin_of(macrotime[-1]))

    @property
    def nbytes(self) -> int:
        """Bytes of the per-bin arrays held: windows not yet handed out and the open one."""
        held = [*self._closed, (0, per_bin_arrays(self._acc))]
        return sum(a.nbytes for _, arrays in held for a in arrays)

    def take(self, upto: int) -> Arrays:
        """The arrays of global bins ``[taken, upto)``, zeros where no photon fell."""
        first = self.taken
        upto = max(upto, first)
        out = tuple(np.zeros((upto - first, *tail), dtype=dt) for tail, dt in self._tails)
        current_first = 0 if self.window_bins is None else self._window * self.window_bins
        for start, arrays in [*self._closed, (current_first, per_bin_arrays(self._acc))]:
            lo, hi = max(first, start), min(upto, start + len(arrays[0]))
            if hi > lo:
                for o, a in zip(out, arrays, strict=True):
                    o[lo - first : hi - first] = a[lo - start : hi - start]
        self.taken = upto
        if self.window_bins is not None:
            self._closed = [(s, a) for s, a in self._closed if s + self.window_bins > upto]
        return out


class ColumnTable:
    """Equal-length numeric columns that grow by appending, in amortised O(1) and compactly.

    The per-bin results a run keeps until its stop (the FLID table for the scaling fit, the map
    and the tomography) are 8 bytes per field and bin, about 30 MB for three hours of 20 ms
    bins, instead of a list of small arrays or of row dicts.
    """

    def __init__(self) -> None:
        self._data: dict[str, NDArray] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, columns: dict[str, NDArray]) -> None:
        """Append equal-length columns (the same fields every time)."""
        n = len(next(iter(columns.values())))
        need = self._n + n
        for key, values in columns.items():
            values = np.asarray(values)
            store = self._data.get(key)
            if store is None:
                store = np.empty(max(need, 1024), dtype=values.dtype)
            elif len(store) < need:
                grown = np.empty(max(need, 2 * len(store)), dtype=store.dtype)
                grown[: self._n] = store[: self._n]
                store = grown
            store[self._n : need] = values
            self._data[key] = store
        self._n = need

    def columns(self) -> dict[str, NDArray]:
        """Views of the filled part of every column."""
        return {k: v[: self._n] for k, v in self._data.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held (allocated), for memory checks."""
        return sum(v.nbytes for v in self._data.values())
