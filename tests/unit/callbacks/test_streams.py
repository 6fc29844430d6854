"""Every derived stream has exactly the fields ``_streams`` declares, from the engine's rows to
the live analyzer's descriptors, and the report reads only declared fields."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from cycling import CyclingDot, write_cycling
from rawrun import RawRun, simulate_steps

import qd_bluesky.report
from qd_bluesky.callbacks import DERIVED_STREAMS, STREAM_FIELDS, AnalysisSettings, LiveAnalyzer
from qd_bluesky.callbacks._engine import ColumnRows, RunAnalysis
from qd_bluesky.callbacks._streams import G2_PEAK_FIELDS, REPLAY_COMPARED, ROW_TYPES

SETTINGS = AnalysisSettings(calibration_photons=5_000, window_s=1.0)


def collect(rows, into: dict[str, list]) -> None:
    for stream, new in rows.items():
        if isinstance(new, ColumnRows):
            new = [row for page in new.pages(100) for row in page]
        into.setdefault(stream, []).extend(new)


def rows_of(engine: RunAnalysis, announcements) -> dict[str, list]:
    """Feed ``(markers, stop)`` pairs (markers before the rows they start, as live), finish."""
    rows: dict[str, list] = {}
    for markers, stop in announcements:
        for row, bias, seq in markers:
            engine.add_marker(row, bias, seq)
        engine.announce(stop)
        while engine.has_work:
            collect(engine.step(), rows)
    collect(engine.finish(), rows)
    engine.close()
    return rows


@pytest.fixture(scope="module")
def steps_rows(tmp_path_factory) -> dict[str, list]:
    """A two-step run (0 V, -2 V), fed to the engine in datums."""
    photons = simulate_steps([0.0, -2.0], 1.0, seed=11)
    path = tmp_path_factory.mktemp("steps") / "s.h5"
    cuts = list(range(0, len(photons), 5000)) + [len(photons)]
    for _ in RawRun(photons, path).live(cuts):
        pass
    engine = RunAnalysis(SETTINGS)
    engine.set_path(path)
    markers = [
        (row, bias, k + 1)
        for k, (row, bias) in enumerate(zip(photons.step_rows, photons.biases, strict=True))
    ]
    return rows_of(engine, [(markers, cuts[1]), *[((), stop) for stop in cuts[2:]]])


@pytest.fixture(scope="module")
def cycling_rows(tmp_path_factory) -> dict[str, list]:
    """A continuous run of three CV cycles (tomography and reversibility), written as read."""
    path = tmp_path_factory.mktemp("cycling") / "c.h5"
    engine = RunAnalysis(SETTINGS, continuous=True)
    engine.set_path(path)
    spans = write_cycling(path, 3, dot=CyclingDot(cycle_s=1.0))
    return rows_of(engine, ((((a, 0.0, k + 1),), b) for k, (a, b) in enumerate(spans)))


@pytest.fixture(scope="module")
def switching_rows(tmp_path_factory) -> dict[str, list]:
    """A short bias square wave with the card's marker records (the switching streams)."""
    from markerrun import analyse, write_switching

    run = write_switching(tmp_path_factory.mktemp("sw") / "s.h5", rise_time_s=2e-6, seconds=0.1)
    return analyse(run, -1.8, [run.rows], markers={"switching": {"period_s": 200e-6, "bin_s": 0.0}})


def test_stream_names_and_row_types_agree():
    assert DERIVED_STREAMS == tuple(ROW_TYPES) == tuple(STREAM_FIELDS)
    assert set(G2_PEAK_FIELDS) <= set(STREAM_FIELDS["g2"])
    for stream, fields in REPLAY_COMPARED.items():
        assert stream in STREAM_FIELDS and set(fields) <= set(STREAM_FIELDS[stream])


@pytest.mark.parametrize("run", ["steps_rows", "cycling_rows", "switching_rows"])
def test_engine_rows_have_exactly_the_declared_fields(run, request):
    rows = request.getfixturevalue(run)
    assert set(rows) <= set(DERIVED_STREAMS)
    for stream, stream_rows in rows.items():
        assert stream_rows, stream
        for row in stream_rows:
            assert tuple(row) == STREAM_FIELDS[stream], stream


def test_the_runs_cover_every_stream(steps_rows, cycling_rows, switching_rows):
    assert set(steps_rows) | set(cycling_rows) | set(switching_rows) == set(DERIVED_STREAMS)


def test_live_descriptors_declare_exactly_the_stream_fields(tmp_path):
    photons = simulate_steps([0.0, -1.0], 0.5, seed=3)
    raw = RawRun(photons, tmp_path / "r.h5")
    docs = list(raw.live(list(range(0, len(photons), 4000)) + [len(photons)]))
    out: list[tuple[str, dict]] = []
    analyzer = LiveAnalyzer(lambda name, doc: out.append((name, doc)), settings=SETTINGS)
    for name, doc in docs:
        analyzer(name, doc)
    assert analyzer.wait(30)
    analyzer.close()
    descriptors = [d for n, d in out if n == "descriptor"]
    assert {d["name"] for d in descriptors} >= {"trace", "flid", "decay", "g2"}
    for d in descriptors:
        assert tuple(d["data_keys"]) == STREAM_FIELDS[d["name"]], d["name"]
    stop = next(d for n, d in out if n == "stop")
    assert stop["exit_status"] == "success", stop["reason"]


def _field_literals(source: str) -> set[str]:
    """String constants read as ``x["field"]`` or ``x.get("field", ...)`` in ``source``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
    return found


def test_report_reads_only_declared_streams_and_fields():
    """A stream or field renamed in ``_streams`` must not leave the report reading the old one."""
    from qd_bluesky.plans import SURVEY_FIELDS  # the survey table's rows (report/_survey.py)

    declared = set(DERIVED_STREAMS).union(*STREAM_FIELDS.values(), SURVEY_FIELDS)
    # Not stream fields: the merged view's CV scaling, Tiled's time column, document keys and
    # the summary's own rows.
    other = {"cv_scaling", "time", "uid", "descriptor", "name", "data", "start", "per_bias"}
    report_dir = Path(qd_bluesky.report.__file__).parent
    for module in sorted(report_dir.glob("*.py")):
        unknown = _field_literals(module.read_text()) - declared - other
        assert not unknown, f"{module.name} reads undeclared fields {sorted(unknown)}"
