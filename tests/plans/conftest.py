"""Fixtures: one simulated instrument and one real Tiled catalog for the whole plans suite.

The IOC helpers come from ``tests/instrument/conftest.py`` (loaded by path: a non-root
conftest cannot be shared through ``pytest_plugins``). The IOC writes its photon files into
the catalog's photon directory, so every run of the suite lands in a real embedded catalog
and its photons are readable through Tiled.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine

_INSTRUMENT_CONFTEST = Path(__file__).parents[1] / "instrument" / "conftest.py"


def _load_instrument_helpers():
    name = "qd_tests_instrument_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _INSTRUMENT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


instrument_helpers = _load_instrument_helpers()
SimIoc = instrument_helpers.SimIoc

#: Sample of the simulated instrument (``qd-bluesky sim --preset --seed``).
PRESET, SEED = "qd1", 1


@dataclass(eq=False)
class Recorder:
    """Every document the RunEngine emitted, by run (a RunEngine callback)."""

    runs: dict[str, list[tuple[str, dict]]] = field(default_factory=dict)
    current: list[tuple[str, dict]] | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.current = self.runs.setdefault(doc["uid"], [])
        if self.current is not None:
            self.current.append((name, doc))


@dataclass
class Bench:
    """What a plan test needs: the devices, a RunEngine writing to the catalog, the docs."""

    ioc: Any
    inst: Any
    RE: RunEngine
    catalog: Any
    recorder: Recorder
    truth: Any  # the simulator's own Sample: what the IOC serves

    @property
    def home_um(self) -> tuple[float, float, float]:
        """Where the stage starts: parked on the preset dot."""
        return tuple(float(v) for v in self.truth.home_um)

    def run(self, plan) -> tuple[str, list[tuple[str, dict]]]:
        """Run ``plan`` (one run) and return its uid and documents."""
        before = set(self.recorder.runs)
        self.RE(plan)
        (uid,) = set(self.recorder.runs) - before
        return uid, self.recorder.runs[uid]

    def park(self, bias: float = 0.0) -> None:
        """Stage on the preset dot and the bias at ``bias`` (other tests move them)."""
        pot, stage = self.inst.pot, self.inst.stage
        stage.x.set(self.home_um[0]).wait(10)
        stage.y.set(self.home_um[1]).wait(10)
        pot.set(bias).wait(10)


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    from qd_bluesky.catalog import open_catalog

    with open_catalog(tmp_path_factory.mktemp("qd-data")) as cat:
        yield cat


@pytest.fixture(scope="session")
def sim_ioc(catalog) -> Iterator[Any]:
    ioc = SimIoc(catalog.photon_dir, seed=SEED, preset=PRESET).start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="session")
def bench(sim_ioc, catalog) -> Iterator[Bench]:
    from qd_bluesky.sim import Sample

    inst = sim_ioc.connect()
    RE = RunEngine({})
    recorder = Recorder()
    RE.subscribe(recorder)
    RE.subscribe(catalog.writer)
    yield Bench(sim_ioc, inst, RE, catalog, recorder, Sample(preset=PRESET, seed=SEED))
    for device in inst:
        device.destroy()
