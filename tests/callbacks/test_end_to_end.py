"""End to end over real Channel Access and a real catalog: the simulated instrument (IOCs in a
subprocess), helper plans ``bias_steps`` and ``cv_scan``, the live analyzer writing derived
runs into an embedded Tiled catalog, and replays of them.

Tolerances come from the simulator's calibration (tests/sim/test_calibration.py, the paper's
bands) and from the statistics of the short dwells used here; each is derived next to it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine

from qd_bluesky._errors import QdBlueskyError
from qd_bluesky.analysis import PhotonHdf5Reader, ScalingModel
from qd_bluesky.callbacks import _engine as engine_module
from qd_bluesky.callbacks import photon_file_path, replay, subscribe_live_analysis
from qd_bluesky.catalog import iter_documents, list_runs
from qd_bluesky.devices import IocLostError
from qd_bluesky.sim import steady_state

_INSTRUMENT_CONFTEST = Path(__file__).parents[1] / "instrument" / "conftest.py"


def _instrument_helpers():
    """``SimIoc`` from tests/instrument/conftest.py (a conftest cannot be imported by name)."""
    name = "qd_tests_instrument_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _INSTRUMENT_CONFTEST)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


SimIoc = _instrument_helpers().SimIoc
PRESET, SEED = "qd1", 1
#: Dwell per bias: 4 s at -2 V (~1.4 kc/s) give ~5600 photons, a mono-exponential lifetime
#: with a fit error of ~0.03 ns, below a third of the paper's 0.2 ns band.
DWELL_S = 8.0
#: X- takes ~2 % of the time at 0 V (power-law blinking, qd1): 45 s hold enough X- bins for the
#: X0/X- clusters of the FLID (30 of 30 seeds of the bare simulator; 5 of 6 at 30 s).
ZERO_BIAS_DWELL_S = 45.0


class Bench:
    def __init__(self, ioc, catalog) -> None:
        from qd_bluesky.sim import Sample

        self.ioc = ioc
        self.catalog = catalog
        self.inst = ioc.connect()
        self.RE = RunEngine({})
        self.analyzer = subscribe_live_analysis(self.RE, catalog.writer)
        # the stage on the sample's dot (the IOC's sample: same preset and seed)
        home = Sample(preset=ioc.preset, seed=ioc.seed).home_um
        self.inst.stage.x.set(float(home[0])).wait(10)
        self.inst.stage.y.set(float(home[1])).wait(10)

    def run(self, plan) -> str:
        (uid,) = self.RE(plan)
        assert self.analyzer.wait(60)
        return uid

    def close(self) -> None:
        self.analyzer.close()
        for device in self.inst:
            device.destroy()


def _new_bench(catalog):
    """A simulated instrument of its own, connected, writing into ``catalog``."""
    ioc = SimIoc(catalog.photon_dir, seed=SEED, preset=PRESET).start()
    b = Bench(ioc, catalog)
    yield b
    b.close()
    ioc.stop()


@pytest.fixture(scope="module")
def bench(catalog):
    yield from _new_bench(catalog)


@pytest.fixture(scope="module")
def steps_uid(bench):
    from qd_bluesky.plans import bias_steps

    inst = bench.inst
    return bench.run(bias_steps(inst.tcspc, inst.pot, [0.0, -2.0], [ZERO_BIAS_DWELL_S, DWELL_S]))


@pytest.fixture(scope="module")
def cv_bench(catalog):
    """The CV scan's own instrument: a pristine dot, neutral at 0 V.

    After the -2 V steps on the shared instrument the dot keeps electrons for seconds at
    0 V and the ITO is damaged (slower exchange), so the first FLID bins of a sweep from 0 V
    could read X7-..X9- there (seen in CI, on idle and on loaded machines alike).
    """
    yield from _new_bench(catalog)


@pytest.fixture(scope="module")
def cv_uid(cv_bench):
    from qd_bluesky.plans import cv_scan

    inst = cv_bench.inst
    inst.pot.set(0.0).wait(10)
    # 0 -> -2 -> 0 V at 0.5 V/s (the paper: 0.2 V/s; faster here to keep the suite short):
    # ~2 s within 0.5 V of 0 V, ~100 FLID bins for gammaA/gamma0.
    return cv_bench.run(cv_scan(inst.tcspc, inst.pot, 0.0, -2.0, 0.0, 0.5, 1))


def derived_of(bench, uid):
    outcome = bench.analyzer.outcomes[uid]
    assert outcome.exit_status == "success", outcome.reason
    return bench.catalog.client[outcome.derived_uid]


def test_bias_steps_derived_run(bench, steps_uid):
    runs = {r["uid"]: r for r in list_runs(bench.catalog)}
    assert runs[steps_uid]["kind"] == "raw" and runs[steps_uid]["exit_status"] == "success"
    derived = derived_of(bench, steps_uid)
    entry = runs[derived.metadata["start"]["uid"]]
    assert entry["kind"] == "derived" and entry["raw_uid"] == steps_uid
    assert entry["exit_status"] == "success"

    decay = derived["decay"].read()
    assert decay["bias_v"].values.tolist() == pytest.approx([0.0, -2.0], abs=0.01)
    # -2 V: tau(V) = 0.9 +- 0.2 ns, the mono-exponential whole-decay fit (calibration).
    tau, err = decay["mono_lifetime_ns"].values[1], decay["mono_lifetime_stderr_ns"].values[1]
    assert err < 0.2 / 3
    assert abs(tau - 0.9) <= 0.2
    # 0 V: the decay mixes X0 (125 +- 6 ns), X- (42 +- 3 ns) and X+ (a few ns), so its
    # dominant lifetime lies between tau(X-) and tau(X0) (fit error ~1 ns on >10^5 photons).
    assert 42.0 < decay["lifetime_ns"].values[0] < 125.0 + 6.0
    # and between this run's own X- and X0 (the FLID clusters below), each widened by 4 of
    # the decay fit's standard errors; X0's FLID lifetime may read up to 10 % low (its flat
    # background calibration, see below: CI saw 123.3 ns against the decay's 125.2 +- 0.4).
    scaling = derived["scaling"].read()
    fit_err = decay["lifetime_stderr_ns"].values[0]
    tau_xm, tau_x0 = scaling["tau_xm_ns"].values[0], scaling["tau_x0_ns"].values[0]
    assert tau_xm - 4 * fit_err < decay["lifetime_ns"].values[0] < tau_x0 / 0.9 + 4 * fit_err
    # X0 itself, from the FLID of the 0 V segment (the scaling stream), as the calibration
    # measures it (tests/sim/test_calibration.py): gammaA/gamma0 = 0.5 +- 0.1; I(X0) = 35 kc/s
    # +- 10 %; tau(X0) = 125 +- 6 ns, the band widened by 10 % below. Not statistics: the FLID's
    # flat background is calibrated by a decay fit of the first 50 000 rows, which at 0 V mix
    # X0, X- and X+, and a "background" read too high pulls the X0 lifetimes low (6-8 % with the
    # Markov dot's 17 % X-; with qd1's ~2 % X- tau(X0) read 125.9-127.0 ns in 4 runs).
    r, r_err = scaling["gamma_ratio"].values[0], scaling["gamma_ratio_stderr"].values[0]
    # The stated error is itself a random variable, set by the number of X- visits in the
    # 45 s (Poisson, ~17): 0.017-0.053 in 4 runs here (0.013-0.033 over 12 seeds of the bare
    # simulator). Bounded by the band's half-width: the measurement must resolve the band.
    assert r_err < 0.1 and abs(r - 0.5) <= 0.1
    assert abs(scaling["intensity_x0_cps"].values[0] / 35e3 - 1) <= 0.1
    assert 125.0 * 0.9 - 6.0 <= scaling["tau_x0_ns"].values[0] <= 125.0 + 6.0

    flid = derived["flid"].read()
    seg = flid["segment"].values
    assert set(np.unique(seg)) <= {-1, 0, 1}
    life = flid["lifetime_ns"].values
    # The 0 V bins resolve their lifetimes (>= 400 photons per 20 ms bin).
    assert np.isfinite(life[seg == 0]).mean() > 0.9


def test_cv_scan_derived_run(cv_bench, cv_uid):
    derived = derived_of(cv_bench, cv_uid)
    assert derived.metadata["start"]["raw_plan_name"] == "cv_scan"
    # The FLID bins carry the bias of the sweep (the file's markers), 0 V down to -2 V. A
    # 20 ms bin spans 10 mV of the 0.5 V/s sweep, so the bins reach -2 V within 10 mV.
    sweep = derived["flid"].read()["bias_v"].values
    assert sweep.max() > -0.01 and sweep.min() < -1.99
    # The tomography keeps the bins that resolve a lifetime. Around -2 V they hold ~30
    # photons each, so whether one of the few bins below -1.9 V resolves is chance (CI saw
    # -1.895); the 40 bins below -1.8 V, which the state check uses, always give some.
    tomo = derived["tomography"].read()
    bias, state = tomo["bias_v"].values, tomo["charge_state"].values
    assert bias.max() > -0.05 and (bias < -1.8).sum() >= 10
    # gammaA/gamma0 from the sweep's FLID: 0.5 +- 0.1 (the paper's band); the 8 s sweep
    # gives a standard error of 0.01-0.045 (12 simulated sweeps), so asserted below 0.05.
    scaling = derived["scaling"].read()
    r, r_err = scaling["gamma_ratio"].values[0], scaling["gamma_ratio_stderr"].values[0]
    assert r_err < 0.05 and abs(r - 0.5) <= 0.1
    # Charge-state tomography: every point with a lifetime gets a state. Near 0 V the dot is
    # mostly X0 or X- (X+ bins, short and dim, are few); below -1.8 V it decays at least as
    # fast as in the steady state at -1.8 V, which Eq. 1 with the measured r and tau(X0)
    # maps to the state below which the median may not fall.
    assert (state >= 0).all()
    assert np.median(state[bias > -0.3]) <= 1
    model = ScalingModel(r, scaling["tau_x0_ns"].values[0] * 1e-9, 35e3)
    floor = int(model.n_extra_from_lifetime(steady_state("qd1", -1.8).mean_lifetime_s))
    assert np.median(state[bias < -1.8]) >= floor


@pytest.mark.parametrize("which", ["steps", "cv"])
def test_replay_equals_live(bench, cv_bench, which, steps_uid, cv_uid):
    live, uid = {"steps": (bench, steps_uid), "cv": (cv_bench, cv_uid)}[which]
    result = replay(live.catalog, uid)
    assert result.matches_live is True, result.differences
    assert result.live_uid == live.analyzer.outcomes[uid].derived_uid


def test_analysis_failure_does_not_stop_acquisition(bench, monkeypatch):
    """A bug in the analysis (injected: reading rows raises) fails the derived run only."""
    from qd_bluesky.plans import bias_steps

    def broken(self, target):
        raise RuntimeError("injected analysis bug")

    monkeypatch.setattr(engine_module.RunAnalysis, "_advance", broken)
    inst = bench.inst
    uid = bench.run(bias_steps(inst.tcspc, inst.pot, [0.0], 1.0))
    raw = bench.catalog.client[uid]
    assert raw.metadata["stop"]["exit_status"] == "success"
    n = raw.metadata["stop"]["num_events"]["photons"]
    assert n > 10_000  # ~30 kc/s over the 1 s dwell, and the photons of the move
    outcome = bench.analyzer.outcomes[uid]
    assert outcome.exit_status == "fail"
    assert outcome.reason == "RuntimeError: injected analysis bug"
    stop = bench.catalog.client[outcome.derived_uid].metadata["stop"]
    assert stop["exit_status"] == "fail" and stop["reason"] == outcome.reason


def test_ioc_lost_mid_run(catalog, tmp_path):
    """SIGKILL of the IOC process during a dwell: the raw run ends with "fail"; the photons
    announced before are in the catalog, identical to the file; the derived run analyses
    exactly those photons."""
    from qd_bluesky.plans import bias_steps

    ioc = SimIoc(catalog.photon_dir, seed=2, preset=PRESET).start()
    bench = Bench(ioc, catalog)
    try:
        inst = bench.inst
        # The kill comes 1.5 s after the first photons are announced, whatever the start-up
        # took (on a loaded machine it can exceed a fixed 3 s: "lost during kickoff").
        killer = threading.Timer(1.5, ioc.kill)

        def arm(value, **kwargs):
            if value and not killer.is_alive() and not killer.finished.is_set():
                killer.start()

        inst.tcspc.rates.num_photons.subscribe(arm, run=False)
        # The user's one-line error, raised by the collect during the dwell (a plan that sat out
        # its 30 s dwell would fail in the final complete instead).
        with pytest.raises(IocLostError) as info:
            bench.RE(bias_steps(inst.tcspc, inst.pot, [0.0, -1.0], 30.0))
        killer.join()
        message = str(info.value)
        assert isinstance(info.value, QdBlueskyError) and "\n" not in message
        assert re.fullmatch(
            rf"tcspc: the TCSPC IOC \({re.escape(ioc.prefix)}tcspc:\) was lost during collect; "
            r"photons written so far stay in (\S+\.h5)",
            message,
        ), message
        assert bench.analyzer.wait(60)
        (uid,) = bench.analyzer.outcomes  # this bench's analyzer saw one run
        raw = catalog.client[uid]
        assert raw.metadata["stop"]["exit_status"] == "fail"
        stamps = raw["photons"]["tcspc_timestamps"].read()
        # the first announcement and 1.5 s more at ~30 kc/s (~50 000): at least the first
        assert len(stamps) > 10_000
        (resource,) = [
            d
            for n, d in iter_documents(catalog, uid)
            if n == "stream_resource" and d["data_key"] == "tcspc_timestamps"
        ]
        assert message.endswith(photon_file_path(resource["uri"]))  # the file the run used
        with PhotonHdf5Reader(photon_file_path(resource["uri"])) as reader:
            np.testing.assert_array_equal(stamps, reader.read(0, len(stamps)).macrotime)
        outcome = bench.analyzer.outcomes[uid]
        assert outcome.exit_status == "success"
        assert outcome.photons == len(stamps)
        assert "exit_status 'fail'" in outcome.reason
    finally:
        bench.close()
        ioc.kill()
