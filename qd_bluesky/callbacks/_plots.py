"""Live plots of a derived run: the 1 ms intensity trace, the FLID and the decay.

Documents may arrive on any thread (the analyzer emits from its worker), and matplotlib is not
thread-safe: the callback only files the numbers away under a lock, and a timer on the figure's
own event loop redraws from them. Without a GUI (tests, queueserver workers) nothing draws
until :meth:`LivePhotonPlots.refresh` is called.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Seconds of 1 ms trace kept on screen.
TRACE_WINDOW_S = 10.0
#: Redraw period (ms) of the GUI timer.
REDRAW_MS = 500


class LivePhotonPlots:
    """A callback for derived qd runs that keeps a live figure of trace, FLID and decay.

    Subscribe it where the derived documents go (e.g. beside the catalog writer); documents of
    other runs are ignored. Call :meth:`show` once in an interactive session to open the
    figure and start its redraw timer.
    """

    def __init__(self, *, trace_window_s: float = TRACE_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, str] = {}
        self._derived_run: str | None = None
        self._trace: deque[tuple[float, np.ndarray]] = deque(
            maxlen=max(1, int(round(trace_window_s)))
        )
        self._flid_i: list[float] = []
        self._flid_tau: list[float] = []
        self._decay: tuple[float, np.ndarray, float] | None = None
        self._dirty = False
        self.figure = None
        self._timer = None

    # ---- the callback: any thread --------------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            if name == "start":
                if "raw_uid" in doc:
                    self._derived_run = doc["uid"]
                    self._streams.clear()
                    self._trace.clear()
                    self._flid_i.clear()
                    self._flid_tau.clear()
                    self._decay = None
                    self._dirty = True
            elif name == "descriptor" and doc.get("run_start") == self._derived_run:
                self._streams[doc["uid"]] = doc["name"]
            elif name == "event":
                self._event(self._streams.get(doc["descriptor"]), doc["data"])
            elif name == "event_page":
                stream = self._streams.get(doc["descriptor"])
                data = doc["data"]
                for i in range(len(doc["seq_num"])):
                    self._event(stream, {k: v[i] for k, v in data.items()})

    def _event(self, stream: str | None, data: Mapping[str, Any]) -> None:
        if stream == "trace":
            self._trace.append((float(data["time_s"]), np.asarray(data["counts"], float)))
        elif stream == "flid":
            self._flid_i.append(float(data["intensity_cps"]))
            self._flid_tau.append(float(data["lifetime_ns"]))
        elif stream == "decay":
            self._decay = (
                float(data.get("bias_v", np.nan)),
                np.asarray(data["counts"], float),
                float(data.get("microtime_unit_ns", 0.025)),
            )
        else:
            return
        self._dirty = True

    # ---- drawing: the GUI thread ---------------------------------------------------------

    def show(self) -> None:
        """Open the figure and redraw it every 0.5 s (interactive sessions)."""
        import matplotlib.pyplot as plt

        if self.figure is None:
            self.figure = plt.figure("qd-bluesky live", figsize=(12, 3.6))
            self._timer = self.figure.canvas.new_timer(interval=REDRAW_MS)
            self._timer.add_callback(self.refresh)
            self._timer.start()
        plt.show(block=False)

    def refresh(self) -> bool:
        """Redraw if new data arrived; returns whether it drew."""
        with self._lock:
            if not self._dirty:
                return False
            trace = list(self._trace)
            flid = (np.array(self._flid_i), np.array(self._flid_tau))
            decay = self._decay
            self._dirty = False
        if self.figure is None:
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(12, 3.6))
        fig = self.figure
        fig.clf()
        ax_t, ax_f, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1]})
        if trace:
            t = np.concatenate([t0 + np.arange(len(c)) * 1e-3 for t0, c in trace])
            counts = np.concatenate([c for _, c in trace])
            ax_t.plot(t, counts, lw=0.4, color="0.2")
        ax_t.set(xlabel="time (s)", ylabel="counts / ms", title="intensity trace (1 ms)")
        intensity, tau = flid
        ok = np.isfinite(tau) & (tau > 0)
        if ok.any():
            ax_f.hist2d(tau[ok], intensity[ok] / 1e3, bins=40, cmin=1, cmap="magma_r")
        ax_f.set(xlabel="lifetime (ns)", ylabel="intensity (kc/s)", title="FLID (20 ms)")
        if decay is not None:
            bias, counts, unit_ns = decay
            ax_d.semilogy(np.arange(len(counts)) * unit_ns, np.maximum(counts, 0.5), lw=0.6)
            ax_d.set_title(f"decay at {bias:+.2f} V")
        ax_d.set(xlabel="delay (ns)", ylabel="counts")
        fig.tight_layout()
        if fig.canvas is not None:
            fig.canvas.draw_idle()
        return True

    # ---- for tests and scripts --------------------------------------------------------------

    @property
    def flid_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(intensity_cps, lifetime_ns) of the FLID points received so far."""
        with self._lock:
            return np.array(self._flid_i), np.array(self._flid_tau)

    @property
    def trace_seconds(self) -> int:
        """Seconds of 1 ms trace held for display."""
        with self._lock:
            return len(self._trace)
