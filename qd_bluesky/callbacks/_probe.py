"""A soft detector: the dot's intensity and lifetime since the last segment marker.

Adaptive plans need, right after a dwell, what the dot did at that bias. The live analyzer
reports a segment only once the next marker is known (too late to choose that marker's
bias), so this probe computes it itself: subscribed to the RunEngine it follows the raw run's
photon file (``stream_resource``), its announced rows (``stream_datum``) and its markers; when a
plan triggers it, it reads the rows from the last marker to the last announced row and fits
their decay (mono-exponential, the analysis's fit step). A plan then reads it like any
detector (``bps.trigger_and_read``), so plans keep yielding only messages.

Triggering blocks the RunEngine for the read and the fit (~0.1 s for 10^5 photons). A failure
(no photons yet, a fit that does not converge) never raises: the reading holds NaN and
``problem`` says why.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from event_model import DocumentRouter

from qd_bluesky.analysis import (
    DEFAULT_CHANNELS,
    PhotonHdf5Reader,
    PhotonSettings,
    StreamUnits,
    StretchAccumulator,
)

from ._live import photon_file_path

logger = logging.getLogger(__name__)

#: Fields of the probe's reading (data keys are ``{name}_{field}``).
PROBE_FIELDS = ("intensity_cps", "lifetime_ns", "photons")


class _Done:
    """A finished status (bluesky's ``Status`` protocol): the work is done in ``trigger``."""

    done = True
    success = True

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    def exception(self, timeout: float | None = 0.0) -> BaseException | None:
        return None


class PhotonProbe(DocumentRouter):
    """Intensity and lifetime of the photons since the last marker of the running qd run.

    Subscribe it to the RunEngine (``RE.subscribe(probe)``) and pass it to a plan as a
    detector; :func:`qd_bluesky.plans.adaptive_bias_map` triggers and reads it after each
    dwell. Its reading: ``{name}_intensity_cps`` (photons over the time between the first and
    last photon), ``{name}_lifetime_ns`` (mono-exponential fit), ``{name}_photons``.

    Parameters
    ----------
    name : str
        Device name (prefix of the data keys).
    irf_fwhm_s : float
        IRF width of the decay fit.
    """

    def __init__(self, name: str = "dot_probe", *, irf_fwhm_s: float | None = None) -> None:
        super().__init__()
        self.name = name
        self.parent = None
        self.irf_fwhm_s = PhotonSettings().irf_fwhm_s if irf_fwhm_s is None else irf_fwhm_s
        #: Why the last reading is NaN, or None.
        self.problem: str | None = None
        self._reset()
        self._reading = self._values(math.nan, math.nan, 0)

    def _reset(self) -> None:
        self._contract: dict[str, Any] | None = None
        self._marker_descriptors: set[str] = set()
        self._photon_resources: set[str] = set()
        self._path: str | None = None
        self._announced = 0
        self._marker_row: int | None = None
        reader: PhotonHdf5Reader | None = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
        self._reader: PhotonHdf5Reader | None = None

    # -- documents ------------------------------------------------------------------------

    def __call__(self, name: str, doc: dict, validate: bool = False) -> tuple[str, dict]:
        """Take one document; never raises (an exception would abort the raw run)."""
        try:
            return super().__call__(name, doc, validate)
        except Exception:  # noqa: BLE001 - must not reach the RunEngine
            logger.exception("%s could not take a %r document", self.name, name)
            return name, doc

    def start(self, doc: dict) -> None:
        self._reset()
        qd = doc.get("qd")
        self._contract = qd if isinstance(qd, dict) else None

    def descriptor(self, doc: dict) -> None:
        if self._contract and doc.get("name") == self._contract.get("marker_stream"):
            self._marker_descriptors.add(doc["uid"])

    def stream_resource(self, doc: dict) -> None:
        keys = (self._contract or {}).get("photon_keys") or {}
        if doc.get("data_key") == keys.get("timestamps"):
            self._photon_resources.add(doc["uid"])
            self._path = photon_file_path(doc["uri"])

    def stream_datum(self, doc: dict) -> None:
        if doc.get("stream_resource") in self._photon_resources:
            self._announced = max(self._announced, int(doc["indices"]["stop"]))

    def event(self, doc: dict) -> None:
        if doc.get("descriptor") in self._marker_descriptors and self._contract:
            row = doc["data"].get(self._contract.get("photon_index_key"))
            if row is not None:
                self._marker_row = int(row)

    def stop(self, doc: dict) -> None:
        self._reset()

    # -- the detector -----------------------------------------------------------------------

    def trigger(self) -> _Done:
        """Analyse the rows since the last marker (blocks for the read and the fit)."""
        try:
            self._reading = self._measure()
            self.problem = None
        except Exception as exc:  # noqa: BLE001 - an analysis failure never stops the plan
            self.problem = str(exc) or type(exc).__name__
            logger.warning("%s: no reading (%s)", self.name, self.problem)
            self._reading = self._values(math.nan, math.nan, 0)
        return _Done()

    def _measure(self) -> dict[str, dict[str, Any]]:
        if self._path is None or self._marker_row is None:
            raise RuntimeError("no qd run with photons and a segment marker is running")
        start, stop = self._marker_row, self._announced
        if stop <= start:
            raise RuntimeError(f"no photon rows announced after row {start}")
        if self._reader is None:
            self._reader = PhotonHdf5Reader(self._path)
        reader = self._reader
        if reader.rows < stop:
            reader.refresh()
        table = reader.read(start, min(stop, reader.rows))
        units = StreamUnits(
            reader.macrotime_unit_s,
            reader.microtime_unit_s,
            reader.microtime_bins,
            reader.rep_rate_hz,
            reader.mode,
        )
        acc = StretchAccumulator(units, DEFAULT_CHANNELS, with_g2=False)
        acc.add(table.macrotime, table.microtime, table.channel)
        rate = acc.photons / acc.duration_s if acc.duration_s > 0 else math.nan
        fit = acc.results(irf_fwhm_s=self.irf_fwhm_s).mono
        tau_ns = float(fit.tau_s[0]) * 1e9 if fit is not None else math.nan
        return self._values(rate, tau_ns, acc.photons)

    def _values(self, rate: float, tau_ns: float, photons: int) -> dict[str, dict[str, Any]]:
        now = time.time()
        values = (float(rate), float(tau_ns), int(photons))
        return {
            f"{self.name}_{field}": {"value": v, "timestamp": now}
            for field, v in zip(PROBE_FIELDS, values, strict=True)
        }

    def read(self) -> dict[str, dict[str, Any]]:
        return dict(self._reading)

    def describe(self) -> dict[str, dict[str, Any]]:
        units = {"intensity_cps": "cps", "lifetime_ns": "ns", "photons": ""}
        return {
            f"{self.name}_{field}": {
                "source": f"analysis:{self.name}",
                "dtype": "integer" if field == "photons" else "number",
                "shape": [],
                "units": units[field],
            }
            for field in PROBE_FIELDS
        }

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        return {}

    def describe_configuration(self) -> dict[str, dict[str, Any]]:
        return {}

    def __repr__(self) -> str:
        return f"PhotonProbe(name={self.name!r})"
